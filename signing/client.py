"""The fleet server's API as an admin sees it: :class:`Server` (https pinned to the fleet CA, an API token)
and the calls that need no offline key: the server's online keys, staging a package, starting a rollout."""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from securesystemslib.signer import Key

from signing.errors import OtaCliError
from wardsight import modelpkg
from wardsight.tls import pinned_context

MAX_REPLY_BYTES = 6_000_000


@dataclass(frozen=True)
class Server:
    """The fleet server's API as an admin sees it."""

    url: str
    api_token: str | None = None
    ca_pem: str | None = None  # the fleet CA (PEM) for https
    insecure_http: bool = False
    timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.url.startswith("https://"):
            if not self.ca_pem:
                raise OtaCliError("an https server needs the fleet CA certificate (--ca)")
        elif self.url.startswith("http://"):
            if not self.insecure_http:
                raise OtaCliError(f"{self.url} is plain HTTP; allowed only with --insecure-http (development)")
        else:
            raise OtaCliError(f"server URL must start with https:// (or http:// for development), got '{self.url}'")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | BinaryIO | None = None,
        content_type: str | None = None,
        length: int | None = None,
    ) -> bytes:
        headers = {"Accept": "application/json"}
        if self.api_token:
            headers["Authorization"] = f"Bearer {self.api_token}"
        if content_type:
            headers["Content-Type"] = content_type
        if length is not None:
            headers["Content-Length"] = str(length)
        url = self.url.rstrip("/") + path
        req = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 - scheme checked
        context = pinned_context(self.ca_pem) if self.url.startswith("https://") and self.ca_pem else None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=context) as resp:  # noqa: S310
                return bytes(resp.read(MAX_REPLY_BYTES))
        except urllib.error.HTTPError as exc:
            raw = exc.read(64 * 1024)
            try:
                reason = json.loads(raw).get("error", "")
            except (ValueError, AttributeError):
                reason = raw[:200].decode("utf-8", "replace")
            raise OtaCliError(f"{method} {path}: HTTP {exc.code}: {reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise OtaCliError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None

    def get_json(self, path: str) -> Any:
        return parse_json(self.request("GET", path), path)

    def post_json(self, path: str, body: Any) -> Any:
        return parse_json(self.request("POST", path, json.dumps(body).encode(), "application/json"), path)


def parse_json(raw: bytes, what: str) -> Any:
    """The server's answer as JSON, or an :class:`OtaCliError` naming ``what`` was asked."""
    try:
        return json.loads(raw)
    except ValueError:
        raise OtaCliError(f"{what}: the server's answer is not JSON") from None


def online_keys(server: Server) -> dict[str, Key]:
    """The server's snapshot and timestamp public keys."""
    body = server.get_json("/api/v1/ota/online-keys")
    try:
        return {
            role: Key.from_dict(body[role]["keyid"], copy.deepcopy(body[role]["key"]))
            for role in ("snapshot", "timestamp")
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise OtaCliError(f"the server's online keys are malformed: {exc}") from None


def upload_package(package: Path, server: Server) -> dict[str, Any]:
    """Stage a package in the server's library (no signature: not installable until published)."""
    modelpkg.read_manifest(package)  # refuse locally what the server would refuse
    size = package.stat().st_size
    with open(package, "rb") as fh:
        raw = server.request("POST", "/api/v1/models", fh, "application/octet-stream", size)
    result: dict[str, Any] = parse_json(raw, "/api/v1/models")
    return result


def start_rollout(
    server: Server,
    model: str,
    version: str,
    selector: dict[str, Any],
    *,
    groups: tuple[float, ...] = (100.0,),
    success_threshold: float = 1.0,
    max_failures: int = 0,
    timeout_s: int = 3600,
    kind: str = "model",
) -> dict[str, Any]:
    """``POST /api/v1/rollouts`` (operator role): offer a published version to the selected devices (``kind``
    "system": a system bundle, ``model`` its RAUC compatible)."""
    body = {
        "kind": kind,
        "model": model,
        "version": version,
        "selector": selector,
        "groups": [{"percent": p} for p in groups],
        "success_threshold": success_threshold,
        "error_threshold": {"count": max_failures},
        "in_progress_timeout_s": timeout_s,
    }
    view = server.post_json("/api/v1/rollouts", body)
    if not isinstance(view, dict):
        raise OtaCliError("the server's answer to the rollout is not an object")
    return view
