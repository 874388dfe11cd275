"""The device's authenticated channel to the fleet server. Thin I/O around ``wardsight.wire``.

:func:`http` does one HTTP(S) exchange (urllib, with the fleet CA pinned for https). :class:`FleetClient`
adds what every device request needs: a server nonce (taken from the last response, fetched when absent),
a fresh proof signed by the device key and bound to the full request target (method, path and query string)
and the body, and the device's short-lived credential, obtained after enrollment and renewed at two thirds
of its life. Time comes from the server (every response carries it), so a device whose clock is years off
still renews on time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from wardsight import wire
from wardsight.errors import WardSightError
from wardsight.paths import write_file_atomically

log = logging.getLogger("wardsight.device.transport")

JOSE = "application/jose"
MAX_REPLY_BYTES = 1024 * 1024  # a job poll may carry several jobs of up to 64 KiB each
# Refusals that say nothing about the message itself: keep it and try again later.
AUTH_CODES = frozenset(
    {
        "use_nonce",
        "replay",
        "credential_expired",
        "credential_revoked",
        "credential_issued",
        "quarantined",
        "pending",
        "revoked",
        "unauthorized",
    }
)


class UnreachableError(WardSightError):
    """The server could not be reached or answered with a server-side error; worth retrying."""


class NotAuthorizedError(WardSightError):
    """The server does not accept this device right now (pending, quarantined, revoked, credential lost).

    Nothing is wrong with the message: keep it and retry later; ``code`` says why.
    """

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def error(self) -> str:
        return str(self.body.get("error", f"HTTP {self.status}"))

    @property
    def code(self) -> str | None:
        code = self.body.get("code")
        return code if isinstance(code, str) else None


Body = bytes | Callable[[str], bytes]  # the body, or a function of the nonce the request's proof carries
Http = Callable[[str, str, bytes, Mapping[str, str], "ssl.SSLContext | None", float], Reply]


def http(
    method: str, url: str, body: bytes, headers: Mapping[str, str], context: ssl.SSLContext | None, timeout: float
) -> Reply:
    """One exchange; returns the reply for 2xx-4xx, raises UnreachableError for transport errors and 5xx."""
    if not url.startswith(("http://", "https://")):
        raise WardSightError(f"not an http(s) URL: {url}")
    if url.startswith("https://") and context is None:
        raise WardSightError("https needs the fleet CA (from the enrollment bundle) to verify the server")
    request = urllib.request.Request(url, data=body if method != "GET" else None, method=method, headers=dict(headers))  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:  # noqa: S310 - scheme checked
            status, raw, got = resp.status, resp.read(MAX_REPLY_BYTES), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        status, raw, got = exc.code, exc.read(MAX_REPLY_BYTES), dict(exc.headers or {})
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UnreachableError(f"cannot reach {url}: {reason}") from None
    if status >= 500:
        raise UnreachableError(f"{url} answered HTTP {status}")
    try:
        parsed = json.loads(raw or b"{}")
    except ValueError:
        parsed = {"error": f"HTTP {status} with a non-JSON body"}
    return Reply(status, parsed if isinstance(parsed, dict) else {}, got)


def post_jws(url: str, jws: str, timeout: float = 10.0, context: ssl.SSLContext | None = None) -> Reply:
    """POST a compact JWS without device authentication (enrollment)."""
    return http("POST", url, jws.encode("ascii"), {"Content-Type": JOSE}, context, timeout)


class CredentialFile:
    """The device's current credential, kept 0600 beside its key, with its expiry by the server's clock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> tuple[str, float] | None:
        try:
            data = json.loads(self.path.read_text())
            return str(data["credential"]), float(data["expires_at"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("credential file %s is damaged; a new credential will be requested", self.path)
            return None

    def store(self, credential: str, expires_at: float) -> None:
        write_file_atomically(self.path, json.dumps({"credential": credential, "expires_at": expires_at}).encode())

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class FleetClient:
    """Authenticated requests for one enrolled device; safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        device_id: str,
        key: Ed25519PrivateKey,
        credentials: CredentialFile,
        *,
        context: ssl.SSLContext | None,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
        transport: Http = http,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.device_id = device_id
        self._key = key
        self._credentials = credentials
        self._context = context
        self._clock = clock
        self._timeout = timeout
        self._http = transport
        self._lock = threading.RLock()
        self._nonce: str | None = None
        self._offset: float | None = None  # server time minus device time, from the last response
        stored = credentials.load()
        self._credential: str | None = stored[0] if stored else None
        self._expires_at = stored[1] if stored else 0.0
        self._lifetime = 0.0
        self._renew_due = False  # the server said the credential is due for renewal

    # ---- time ---------------------------------------------------------------------------------------

    @property
    def clock_offset(self) -> float | None:
        """Server time minus this device's time (seconds), once a response has told us."""
        return self._offset

    @property
    def key(self) -> Ed25519PrivateKey:
        """The device key requests (and events) are signed with; replaced by :meth:`adopt_key`."""
        return self._key

    def server_now(self) -> float:
        return self._clock() + (self._offset or 0.0)

    def _learn(self, reply: Reply) -> None:
        nonce = reply.headers.get(wire.NONCE_HEADER)
        if nonce:
            self._nonce = nonce
        if reply.headers.get(wire.RENEW_HEADER) == "1":
            self._renew_due = True
        stamp = reply.headers.get(wire.TIME_HEADER)
        if stamp:
            with contextlib.suppress(ValueError):
                self._offset = float(stamp) - self._clock()

    # ---- one exchange -------------------------------------------------------------------------------

    def _fetch_nonce(self) -> None:
        """Ask for a nonce (the reply also tells the server's time); under the lock."""
        self._learn(self._http("GET", self.base_url + wire.NONCE_PATH, b"", {}, self._context, self._timeout))

    def _exchange(
        self,
        method: str,
        path: str,
        body: Body,
        content_type: str | None,
        credential: str | None,
        query: str = "",
        timeout: float | None = None,
    ) -> Reply:
        target_query = wire.canonical_query(query)  # sent in the form the proof binds (same parameters, one spelling)
        for _ in range(2):  # a second time only when our nonce went stale (401 use_nonce), with the new one
            with self._lock:  # signing under the lock; the exchange itself without it (a long poll may take 30 s)
                if self._nonce is None:
                    self._fetch_nonce()
                    if self._nonce is None:
                        raise UnreachableError("the server gave no nonce")
                nonce = self._nonce
                data = body(nonce) if callable(body) else body
                proof = wire.sign_proof(
                    self._key,
                    self.device_id,
                    method=method,
                    path=path,
                    query=target_query,  # bound as sent: the server checks it against the query it decoded
                    body=data,
                    nonce=nonce,
                    credential=credential,
                    now=self._clock(),
                )
                self._nonce = None  # one proof per nonce on our side; the reply brings the next one
            headers = {wire.PROOF_HEADER: proof}
            if content_type is not None:
                headers["Content-Type"] = content_type
            if credential is not None:
                headers["Authorization"] = f"{wire.AUTH_SCHEME} {credential}"
            url = self.base_url + path + (f"?{target_query}" if target_query else "")
            reply = self._http(method, url, data, headers, self._context, timeout or self._timeout)
            with self._lock:
                self._learn(reply)
            if not (reply.status == 401 and reply.code == "use_nonce"):
                break
        return reply

    # ---- credential ---------------------------------------------------------------------------------

    def _grant(self, reply: Reply) -> None:
        try:
            grant = wire.CredentialGrant.model_validate(reply.body)
        except ValidationError:
            raise UnreachableError("the server's credential reply is malformed") from None
        self._offset = grant.server_time - self._clock()
        self._credential = grant.credential
        self._expires_at = grant.server_time + grant.expires_in
        self._lifetime = grant.expires_in
        self._credentials.store(grant.credential, self._expires_at)

    def _ensure_credential(self) -> str:
        path = wire.CREDENTIAL_PATH
        if self._credential is None:
            reply = self._exchange("POST", path, b"", None, None)
            if reply.status != 200:
                raise NotAuthorizedError(f"no credential: {reply.error}", reply.code or "unauthorized")
            self._grant(reply)
            log.info("obtained a device credential (valid %.0f s)", self._lifetime)
        elif self._renew_due or (
            self._offset is not None and self.server_now() >= self._expires_at - self._renew_margin()
        ):
            reply = self._exchange("POST", path, b"", None, self._credential)
            if reply.status == 200:
                self._renew_due = False
                self._grant(reply)
                log.info("renewed the device credential (valid %.0f s)", self._lifetime)
            elif reply.code in ("credential_expired", "credential_revoked"):
                self._drop_credential(reply)
                raise NotAuthorizedError(f"credential lost: {reply.error}", reply.code or "unauthorized")
            else:
                log.warning("credential renewal refused (HTTP %d): %s; will retry", reply.status, reply.error)
        assert self._credential is not None
        return self._credential

    def _renew_margin(self) -> float:
        lifetime = self._lifetime or max(0.0, self._expires_at - self.server_now())
        return lifetime / 3  # renew at two thirds of the life, as step-ca does

    def _drop_credential(self, reply: Reply) -> None:
        log.error(
            "the server no longer accepts this device's credential (%s); an operator must reissue it", reply.error
        )
        self._credential = None
        self._credentials.clear()

    def request(
        self,
        method: str,
        path: str,
        body: Body = b"",
        content_type: str | None = None,
        *,
        query: str = "",
        timeout: float | None = None,
    ) -> Reply:
        """An authenticated request. Raises NotAuthorizedError when the device is not accepted right now.

        ``query`` (``wait=25``, raw as ``urllib.parse.urlencode`` makes it) is bound by the proof with ``path``
        and sent in :func:`wardsight.wire.canonical_query` form (the same parameters, in the same order);
        ``timeout`` overrides the client's for this request (a long poll). ``body`` may be a function of the
        nonce the proof carries.
        """
        with self._lock:
            if self._offset is None:  # learn the server's time (and a nonce) before judging the credential
                self._fetch_nonce()
            credential = self._ensure_credential()
        reply = self._exchange(method, path, body, content_type, credential, query, timeout)
        if reply.status in (401, 403) and reply.code in AUTH_CODES:
            if reply.code in ("credential_expired", "credential_revoked"):
                with self._lock:
                    if self._credential == credential:  # not one renewed meanwhile by another thread
                        self._drop_credential(reply)
            raise NotAuthorizedError(reply.error, reply.code or "unauthorized")
        return reply

    def request_bound(
        self, method: str, path: str, make_body: Callable[[str], bytes], content_type: str | None
    ) -> Reply:
        """A request whose body is made from the nonce its proof carries (e.g. a key rotation's possession JWS)."""
        return self.request(method, path, make_body, content_type)

    def adopt_key(self, key: Ed25519PrivateKey, reply: Reply) -> None:
        """After the server accepted a key rotation: sign with ``key`` from now on, with the credential in
        ``reply`` (a CredentialGrant, saved to the credential file)."""
        with self._lock:
            self._grant(reply)
            self._key = key

    def post_event(self, url: str, jws: str) -> Reply:
        """The sender's ``post``: ``url`` is ignored (the client knows its server)."""
        return self.request("POST", wire.EVENTS_PATH, jws.encode("ascii"), JOSE)

    def heartbeat(self, report: wire.Health) -> Reply:
        body = report.model_dump_json(exclude_none=True).encode()
        return self.request("POST", wire.HEARTBEAT_PATH, body, "application/json")
