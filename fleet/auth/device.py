"""Device authentication, decided per request: server nonces, DPoP-style proofs and short-lived credentials.

Pure decision logic (bytes, keys and a clock reading in; a verdict or an :class:`AuthError` out); the
request side in :mod:`fleet.auth.device_requests` does the I/O, including the one stateful check, the replay table.

- A **nonce** is issued by the server and checked statelessly: ``base64url(ms timestamp || HMAC(key, ts))``,
  valid for ``nonce_ttl`` seconds *by the server's clock*. A proof carries one, so freshness never depends on
  the device's clock (a Pi 4 has no RTC and may boot years off).
- A **proof** is a JWS by the device's enrolled key over the full request target (method, path and the query
  string in :func:`wardsight.wire.canonical_query` form), body hash, nonce, the credential's hash and a unique
  ``jti`` (remembered for the nonce lifetime, so a replay is refused). A proof without ``htq`` (an agent from
  before query binding) stands for "no query": it verifies on a request without one and is refused on a
  request that carries one.
- A **credential** is a JWT signed by the server's credentials key for one device (``sub``), bound to that
  device's key (``cnf.jkt``, RFC 7638 thumbprint), expiring after ``credential_ttl``. Only the device's
  current credential is accepted: renewal supersedes the old one, revocation and quarantine end it at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fleet.auth.cache import Verified
from wardsight import wire

CREDENTIAL_TYP = "wardsight-credential+jwt"
ISSUER = "wardsight-fleet"
FUTURE_SKEW = 5.0  # seconds a nonce may appear to come from the future (server clock steps)


class AuthError(Exception):
    """A device request that cannot be authenticated. ``str(exc)`` is safe to return to the device."""

    def __init__(self, status: int, reason: str, *, code: str = "unauthorized") -> None:
        super().__init__(reason)
        self.status = status
        self.code = code


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class NonceIssuer:
    """Stateless server nonces: anyone can hold one, only this server can make one, each expires."""

    def __init__(self, secret: bytes, ttl: float) -> None:
        self._secret = secret
        self.ttl = ttl

    @classmethod
    def from_key(cls, key: Ed25519PrivateKey, ttl: float) -> NonceIssuer:
        """Derive the MAC key from a server key, so nonces stay valid across a restart."""
        raw = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return cls(hashlib.sha256(b"wardsight nonce v1\0" + raw).digest(), ttl)

    def _mac(self, stamp: bytes) -> bytes:
        return hmac.new(self._secret, stamp, hashlib.sha256).digest()[:16]

    def issue(self, now: float) -> str:
        stamp = int(now * 1000).to_bytes(8, "big")
        return _b64(stamp + self._mac(stamp))

    def valid(self, nonce: str, now: float) -> bool:
        try:
            raw = _unb64(nonce)
        except ValueError:
            return False
        if len(raw) != 24:
            return False
        stamp, mac = raw[:8], raw[8:]
        if not hmac.compare_digest(mac, self._mac(stamp)):
            return False
        issued = int.from_bytes(stamp, "big") / 1000
        return issued - FUTURE_SKEW <= now <= issued + self.ttl


@dataclass(frozen=True)
class Credential:
    token: str
    credential_id: str
    expires_at: float


def issue_credential(
    key: Ed25519PrivateKey, device_id: str, device_key: Ed25519PublicKey, now: float, ttl: float
) -> Credential:
    credential_id = secrets.token_hex(12)
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": device_id,
        "jti": credential_id,
        "iat": int(now),
        "exp": int(now + ttl),
        "cnf": {"jkt": wire.thumbprint(device_key)},
    }
    token = jwt.encode(claims, key, algorithm="EdDSA", headers={"typ": CREDENTIAL_TYP})
    return Credential(token, credential_id, float(claims["exp"]))


def read_credential(token: str, server_key: Ed25519PublicKey) -> dict[str, Any]:
    """The verified claims of a credential, not yet judged for expiry or currency."""
    if len(token) > 4096:
        raise AuthError(401, "credential too large")
    try:
        header = jwt.get_unverified_header(token)
        if header.get("typ") != CREDENTIAL_TYP or header.get("alg") != "EdDSA":
            raise AuthError(401, "not a device credential")
        claims: dict[str, Any] = jwt.decode(
            token,
            server_key,
            algorithms=["EdDSA"],
            issuer=ISSUER,
            options={"verify_exp": False, "verify_iat": False, "require": ["sub", "jti", "exp", "cnf"]},
        )
    except jwt.InvalidTokenError as exc:
        raise AuthError(401, f"invalid credential: {exc}") from None
    return claims


@dataclass(frozen=True)
class DeviceRecord:
    id: str
    public_key: str
    status: str
    credential_id: str | None


@dataclass(frozen=True)
class Verdict:
    device_id: str
    proof: wire.Proof
    credential_id: str | None


def credential_from_header(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme != wire.AUTH_SCHEME or not value.strip():
        raise AuthError(401, f"Authorization must be '{wire.AUTH_SCHEME} <credential>'")
    return value.strip()


def authenticate(
    *,
    method: str,
    path: str,
    query: str | Iterable[tuple[str, str]],  # the decoded parameters as received (or the raw query string)
    body: bytes,
    proof: wire.Signed | None,  # the proof header, parsed once (wire.parse_proof)
    authorization: str | None,
    device: DeviceRecord | None,
    claimed_device: str,
    nonces: NonceIssuer,
    verified: Verified,  # the server's credentials key, with what was verified before
    now: float,
    credential: str = "required",  # "required" | "none" (first issuance after approval)
) -> Verdict:
    """Decide whether a device request is authentic; raise :class:`AuthError` (401/403) if not.

    ``claimed_device`` is the signer ``proof`` names (its ``kid``) and ``device`` its record (None: unknown).
    A credential's server signature is verified once in its lifetime (``verified`` keeps its claims); everything
    else, currency and expiry included, is judged here on every request.
    The caller must still record ``verdict.proof.jti`` in the replay table and refuse a repeat.
    """
    if proof is None:
        raise AuthError(401, f"missing {wire.PROOF_HEADER} header")
    if device is None:
        raise AuthError(401, f"unknown device '{claimed_device}'")
    try:
        device_key, device_thumbprint = verified.device_key(device.public_key)
        checked = wire.check_proof(proof, device_key)
    except wire.SignatureError:
        raise AuthError(401, "proof signature does not verify with this device's key") from None
    except wire.MalformedError as exc:
        raise AuthError(401, f"malformed proof: {exc}") from None
    if checked.htm != method or checked.htu != path:
        raise AuthError(401, f"proof is for {checked.htm} {checked.htu}, not {method} {path}")
    _check_query(checked, wire.canonical_query(query))
    if not hmac.compare_digest(checked.bh, wire.b64url_sha256(body)):
        raise AuthError(401, "proof does not match the request body")
    if not nonces.valid(checked.nonce, now):
        raise AuthError(
            401, "nonce missing, expired or not ours: use the one in the WardSight-Nonce header", code="use_nonce"
        )
    if device.status == "revoked":
        raise AuthError(401, "device revoked", code="revoked")
    if device.status == "quarantined":
        raise AuthError(403, "device quarantined by an operator", code="quarantined")
    if device.status == "pending":
        raise AuthError(403, "device awaiting operator approval", code="pending")
    token = credential_from_header(authorization)
    if credential == "none":
        if token is not None or device.credential_id is not None:
            raise AuthError(401, "a credential was already issued: renew it instead", code="credential_issued")
        return Verdict(device.id, checked, None)
    if token is None:
        raise AuthError(401, "missing credential (Authorization header)")
    claims = verified.credential_claims(token, now, read_credential)  # verified by the server key, once
    _check_credential(claims, token, checked, device, device_thumbprint, now)
    return Verdict(device.id, checked, device.credential_id)


def _check_query(checked: wire.Proof, received: str) -> None:
    """The proof binds the query string the server received (canonical form; no ``htq``: no query)."""
    if (checked.htq or "") == received:
        return
    if checked.htq is None:
        raise AuthError(401, "proof does not cover the query string (an agent from before query binding: update it)")
    raise AuthError(401, "proof does not match the request's query string")


def _check_credential(
    claims: dict[str, Any], token: str, checked: wire.Proof, device: DeviceRecord, device_thumbprint: str, now: float
) -> None:
    """The credential (``token``, whose server signature gave ``claims``) is for this device and its key
    (``device_thumbprint``), the proof's, current and unexpired."""
    if claims["sub"] != device.id:
        raise AuthError(401, "credential belongs to another device")
    if claims["cnf"] != {"jkt": device_thumbprint}:
        raise AuthError(401, "credential is bound to another key")
    if checked.ath is None or not hmac.compare_digest(checked.ath, wire.b64url_sha256(token.encode("ascii"))):
        raise AuthError(401, "proof is not bound to this credential")
    if device.credential_id is None or not hmac.compare_digest(str(claims["jti"]), device.credential_id):
        raise AuthError(401, "credential superseded or revoked", code="credential_revoked")
    if now >= float(claims["exp"]):
        raise AuthError(401, "credential expired", code="credential_expired")
