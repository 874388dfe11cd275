"""What device authentication remembers between requests: only what a signature check or a decoding proved.

:class:`Verified` keeps, per server process, the claims of each credential whose server signature verified (until
the credential expires) and each device key decoded from its text with its RFC 7638 thumbprint. Never a decision:
every request still checks that the credential is the device's current one (renewal, revocation and quarantine
take effect at once), that it has not expired, that it belongs to the device and its key and that the proof is
bound to it (:func:`fleet.auth.device.authenticate`). Entries are keyed by the exact token or key text, so a
token that differs in one byte is verified afresh; both caches are bounded (least recently used goes first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from wardsight import wire

K = TypeVar("K")
V = TypeVar("V")

MAX_CREDENTIALS = 16_384  # a fleet's devices each hold one current credential (two for a moment while renewing)
MAX_DEVICE_KEYS = 16_384


class Bounded(Generic[K, V]):
    """A least-recently-used map of at most ``size`` entries, each kept until a time (server clock)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, now: float) -> V | None:
        """The value kept for ``key`` if it is still valid at ``now`` (an expired one is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, until = entry
        if now >= until:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V, until: float) -> None:
        self._entries[key] = (value, until)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        """Forget ``key`` (if kept)."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


class Verified:
    """Verified credential claims and decoded device keys of one server (its credentials key ``server_key``)."""

    def __init__(
        self, server_key: Ed25519PublicKey, *, credentials: int = MAX_CREDENTIALS, device_keys: int = MAX_DEVICE_KEYS
    ) -> None:
        self.server_key = server_key
        self.credentials: Bounded[str, dict[str, Any]] = Bounded(credentials)
        self.device_keys: Bounded[str, tuple[Ed25519PublicKey, str]] = Bounded(device_keys)

    def credential_claims(
        self, token: str, now: float, verify: Callable[[str, Ed25519PublicKey], dict[str, Any]]
    ) -> dict[str, Any]:
        """The claims of ``token`` as ``verify(token, server_key)`` returns them (it raises if the token does not
        verify), verified once per credential lifetime: kept until ``exp`` (an expired one is not kept, so it is
        verified again and then refused by the caller's expiry check). Do not change the returned dict."""
        claims = self.credentials.get(token, now)
        if claims is None:
            claims = verify(token, self.server_key)
            expires = float(claims["exp"])
            if now < expires:
                self.credentials.put(token, claims, expires)
        return claims

    def device_key(self, public_key: str) -> tuple[Ed25519PublicKey, str]:
        """The key ``public_key`` encodes (:func:`wardsight.wire.decode_public_key`, which raises MalformedError)
        and its thumbprint, decoded once per key text."""
        hit = self.device_keys.get(public_key, 0.0)
        if hit is None:
            key = wire.decode_public_key(public_key)
            hit = (key, wire.thumbprint(key))
            self.device_keys.put(public_key, hit, float("inf"))
        return hit
