"""The device's HTTP client for the fleet server: compact JWS bodies out, JSON back. Thin I/O only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from wardsight.errors import WardSightError

JOSE = "application/jose"


class UnreachableError(WardSightError):
    """The server could not be reached or answered with a server-side error; worth retrying."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]

    @property
    def error(self) -> str:
        return str(self.body.get("error", f"HTTP {self.status}"))


def post_jws(url: str, jws: str, timeout: float = 10.0) -> Reply:
    """POST ``jws``; returns the reply for 2xx and 4xx, raises UnreachableError otherwise."""
    if not url.startswith(("http://", "https://")):
        raise WardSightError(f"not an http(s) URL: {url}")
    headers = {"Content-Type": JOSE}
    request = urllib.request.Request(url, data=jws.encode("ascii"), method="POST", headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - scheme checked
            status, raw = resp.status, resp.read(64 * 1024)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read(64 * 1024)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UnreachableError(f"cannot reach {url}: {reason}") from None
    if status >= 500:
        raise UnreachableError(f"{url} answered HTTP {status}")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {"error": f"HTTP {status} with a non-JSON body"}
    return Reply(status, body if isinstance(body, dict) else {})
