"""The few fleet API calls provisioning needs, as an operator: create and revoke enrollment tokens, read the
OTA root for bundles. https is pinned to the fleet CA (:func:`wardsight.tls.pinned_context`); plain http only
with the explicit development flag. Tokens (the API token and the enrollment tokens) never appear in errors.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from provisioning.errors import ProvisionError
from wardsight.tls import pinned_context

MAX_REPLY_BYTES = 2_000_000


@dataclass(frozen=True)
class IssuedToken:
    id: str
    token: str  # the plaintext wst.<id>.<secret>: goes into one bundle file, nowhere else
    expires_at: float


@dataclass(frozen=True)
class FleetApi:
    url: str
    api_token: str | None = None
    ca_pem: str | None = None  # the fleet CA (PEM) for https
    insecure_http: bool = False
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.url.startswith("https://"):
            if not self.ca_pem:
                raise ProvisionError("an https server needs the fleet CA certificate (--ca or $WARDSIGHT_FLEET_CA)")
        elif self.url.startswith("http://"):
            if not self.insecure_http:
                raise ProvisionError(f"{self.url} is plain HTTP; allowed only with --insecure-http (development)")
        else:
            raise ProvisionError(f"server URL must start with https:// (or http:// for development), got '{self.url}'")

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, JSON answer) for a 2xx, (404, None) for a 404; other answers and network failures raise."""
        status, raw = self.call(method, path, body)
        return status, (None if status == 404 else _json(raw, method, path))

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """(status, raw answer) for a 2xx or 404; other answers and network failures raise."""
        headers = {"Accept": "application/json"}
        if self.api_token:
            headers["Authorization"] = f"Bearer {self.api_token}"
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        url = self.url.rstrip("/") + path
        req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - scheme checked
        context = pinned_context(self.ca_pem) if self.url.startswith("https://") and self.ca_pem else None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=context) as resp:  # noqa: S310
                return resp.status, bytes(resp.read(MAX_REPLY_BYTES))
        except urllib.error.HTTPError as exc:
            raw = exc.read(64 * 1024)
            if exc.code == 404:
                return 404, raw
            raise ProvisionError(f"{method} {path}: HTTP {exc.code}: {_reason(raw, exc.code)}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ProvisionError(f"cannot reach {self.url}: {getattr(exc, 'reason', exc)}") from None

    def create_token(
        self,
        room: str,
        *,
        site: str | None,
        ward: str | None,
        ttl_seconds: int | None,
        require_approval: bool,
    ) -> IssuedToken:
        """``POST /api/v1/tokens`` (operator role): a one-time enrollment token scoped to the room."""
        body: dict[str, Any] = {"room": room, "site": site, "ward": ward, "require_approval": require_approval}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        status, answer = self.request("POST", "/api/v1/tokens", body)
        if status == 404:
            raise ProvisionError(f"{self.url} has no /api/v1/tokens: is it a WardSight fleet server?")
        try:
            issued = IssuedToken(str(answer["id"]), str(answer["token"]), float(answer["expires_at"]))
        except (KeyError, TypeError, ValueError):
            raise ProvisionError("the server's answer to POST /api/v1/tokens is not a token") from None
        if not issued.token.startswith(f"wst.{issued.id}."):
            raise ProvisionError("the server's answer to POST /api/v1/tokens is not a token")
        return issued

    def revoke_token(self, token_id: str) -> bool:
        """``DELETE /api/v1/tokens/{id}``; False when the server no longer has it unused."""
        status, _ = self.request("DELETE", f"/api/v1/tokens/{token_id}")
        return status != 404

    def tuf_root(self) -> str | None:
        """The OTA repository's root.json for bundles, None before the hospital ran 'wardsight ota init'."""
        status, raw = self.call("GET", "/api/v1/ota/root")
        if status == 404:
            return None
        try:
            text = raw.decode("utf-8")
            json.loads(text)
        except ValueError:
            raise ProvisionError("GET /api/v1/ota/root: the server's answer is not JSON") from None
        return text


def _json(raw: bytes, method: str, path: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise ProvisionError(f"{method} {path}: the server's answer is not JSON") from None


def _reason(raw: bytes, code: int) -> str:
    try:
        reason = str(json.loads(raw).get("error", ""))
    except (ValueError, AttributeError):
        reason = raw[:200].decode("utf-8", "replace")
    if code == 401:
        return f"{reason} (check the API token: --api-token or $WARDSIGHT_API_TOKEN)"
    if code == 403:
        return f"{reason} (the API token needs the operator role)"
    return reason
