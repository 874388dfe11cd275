"""Standard Webhooks v1.0.0: signing and verifying deliveries to hospital systems.

The fleet server signs each delivery; a receiver checks it. Pure functions, no I/O (the
``verify-webhook`` command at the bottom reads a file and the clock). The signed content is
``{webhook-id}.{webhook-timestamp}.{body}`` over the exact body bytes sent, never re-serialized JSON.

Two signature versions, told apart by the key format:

- ``v1``: HMAC-SHA256 with a shared secret ``whsec_<base64 of 24-64 random bytes>``;
- ``v1a``: Ed25519 with ``whsk_<base64 of the 32-byte private seed>`` (the sender's) and
  ``whpk_<base64 of the 32-byte public key>`` (pinned by the receiver, never read from a request).

Signatures travel as ``<version>,<base64>`` in the space-separated ``webhook-signature`` header, so a
sender can sign with an old and a new key during rotation; any one valid signature suffices.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from typing import BinaryIO

import click
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from wardsight.errors import WardSightError

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
DEFAULT_TOLERANCE = 300  # seconds, either direction
HMAC_SECRET_BYTES = (24, 64)  # allowed decoded length of a whsec_ secret, inclusive

_ID_PATTERN = re.compile(r"[A-Za-z0-9_:-]{1,128}")  # no ".": it delimits the signed content
_TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,12}")
_RAW = serialization.Encoding.Raw


class WebhookVerificationError(WardSightError):
    """A delivery does not verify: missing header, stale or future timestamp, or no matching signature."""


class WebhookKeyError(WebhookVerificationError):
    """A ``whsec_``/``whsk_``/``whpk_`` string is malformed (wrong prefix, bad base64, wrong length)."""


# ---- keys -------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _decode_key(text: str, prefix: str, what: str) -> bytes:
    if not text.startswith(prefix):
        raise WebhookKeyError(f"{what} must start with {prefix!r}")
    try:
        return base64.b64decode(text[len(prefix) :], validate=True)
    except (binascii.Error, ValueError):
        raise WebhookKeyError(f"{what} is not valid base64 after {prefix!r}") from None


def _hmac_key(secret: str) -> bytes:
    key = _decode_key(secret, "whsec_", "HMAC secret")
    low, high = HMAC_SECRET_BYTES
    if not low <= len(key) <= high:
        raise WebhookKeyError(f"HMAC secret must decode to {low}-{high} bytes, not {len(key)}")
    return key


def _private_key(whsk: str) -> Ed25519PrivateKey:
    raw = _decode_key(whsk, "whsk_", "Ed25519 private key")
    if len(raw) != 32:
        raise WebhookKeyError(f"Ed25519 private key must decode to a 32-byte seed, not {len(raw)} bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)


def _public_key(whpk: str) -> Ed25519PublicKey:
    raw = _decode_key(whpk, "whpk_", "Ed25519 public key")
    if len(raw) != 32:
        raise WebhookKeyError(f"Ed25519 public key must decode to 32 bytes, not {len(raw)}")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise WebhookKeyError("Ed25519 public key is not a valid curve point") from None


def new_hmac_secret(nbytes: int = 32) -> str:
    """A fresh random ``whsec_`` secret of ``nbytes`` bytes (24-64)."""
    low, high = HMAC_SECRET_BYTES
    if not low <= nbytes <= high:
        raise ValueError(f"nbytes must be {low}-{high}")
    return "whsec_" + _b64(secrets.token_bytes(nbytes))


def new_ed25519_keypair() -> tuple[str, str]:
    """A fresh ``(whsk_..., whpk_...)`` pair. The sender keeps the first; receivers pin the second."""
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
    return "whsk_" + _b64(seed), "whpk_" + _b64(public)


# ---- signing and verifying --------------------------------------------------------------------------


def _signed_content(msg_id: str, timestamp: str, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def sign(
    msg_id: str,
    timestamp: int,
    body: bytes,
    *,
    hmac_secret: str | None = None,
    ed25519_key: str | None = None,
) -> dict[str, str]:
    """The three ``webhook-*`` headers for one delivery attempt of ``body``.

    ``timestamp`` is the Unix time of this attempt. Give ``hmac_secret`` (``v1``), ``ed25519_key``
    (``whsk_``, ``v1a``) or both (both signatures are sent).

    Raises:
        ValueError: no key given, or an id/timestamp that cannot be signed unambiguously.
        WebhookKeyError: a malformed secret or key.
    """
    if hmac_secret is None and ed25519_key is None:
        raise ValueError("sign() needs hmac_secret or ed25519_key")
    if not _ID_PATTERN.fullmatch(msg_id):
        raise ValueError(f"message id {msg_id!r} must be 1-128 characters of [A-Za-z0-9_:-]")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError("timestamp must be a non-negative integer (Unix seconds)")
    content = _signed_content(msg_id, str(timestamp), body)
    signatures = []
    if hmac_secret is not None:
        signatures.append("v1," + _b64(hmac.new(_hmac_key(hmac_secret), content, hashlib.sha256).digest()))
    if ed25519_key is not None:
        signatures.append("v1a," + _b64(_private_key(ed25519_key).sign(content)))
    return {ID_HEADER: msg_id, TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: " ".join(signatures)}


def verify(
    headers: Mapping[str, str],
    body: bytes,
    *,
    hmac_secret: str | None = None,
    public_key: str | None = None,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE,
) -> None:
    """Check one delivery; return nothing if it is authentic, raise otherwise.

    ``headers`` are looked up case-insensitively. ``body`` must be the raw request bytes. Only the
    versions of the keys given are accepted (``v1`` for ``hmac_secret``, ``v1a`` for ``public_key``);
    other entries in ``webhook-signature`` are ignored. ``now`` is the receiver's Unix time; the
    timestamp may differ from it by at most ``tolerance`` seconds either way. Deduplicating on
    ``webhook-id`` is the caller's job.

    Raises:
        WebhookKeyError: no key given, or a malformed secret or key.
        WebhookVerificationError: a missing or malformed header, a timestamp outside the tolerance,
            or no signature of an accepted version that matches.
    """
    if hmac_secret is None and public_key is None:
        raise WebhookKeyError("no key to verify with: give an HMAC secret (whsec_) or a public key (whpk_)")
    hkey = _hmac_key(hmac_secret) if hmac_secret is not None else None
    pkey = _public_key(public_key) if public_key is not None else None

    lowered = {name.lower(): value for name, value in headers.items()}
    missing = [name for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER) if not lowered.get(name)]
    if missing:
        raise WebhookVerificationError(f"missing header {', '.join(missing)}")
    msg_id, timestamp, signature_list = lowered[ID_HEADER], lowered[TIMESTAMP_HEADER], lowered[SIGNATURE_HEADER]
    if not _ID_PATTERN.fullmatch(msg_id):
        raise WebhookVerificationError(f"malformed {ID_HEADER} {msg_id[:40]!r}")
    if not _TIMESTAMP_PATTERN.fullmatch(timestamp):
        raise WebhookVerificationError(f"malformed {TIMESTAMP_HEADER} {timestamp[:40]!r} (want integer Unix seconds)")
    age = now - int(timestamp)
    if age > tolerance:
        raise WebhookVerificationError(f"timestamp {timestamp} is {age:.0f} s old (tolerance {tolerance} s)")
    if -age > tolerance:
        raise WebhookVerificationError(f"timestamp {timestamp} is {-age:.0f} s in the future (tolerance {tolerance} s)")

    content = _signed_content(msg_id, timestamp, body)
    expected_mac = hmac.new(hkey, content, hashlib.sha256).digest() if hkey is not None else None
    for entry in signature_list.split():
        version, _, encoded = entry.partition(",")
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if version == "v1" and expected_mac is not None and hmac.compare_digest(signature, expected_mac):
            return
        if version == "v1a" and pkey is not None:
            try:
                pkey.verify(signature, content)
            except InvalidSignature:
                continue
            return
    accepted = " or ".join(v for v, k in (("v1", hkey), ("v1a", pkey)) if k is not None)
    raise WebhookVerificationError(f"no {accepted} signature matches this key and body")


# ---- CLI --------------------------------------------------------------------------------------------


@click.command("verify-webhook")
@click.argument("body_file", type=click.File("rb"), default="-")
@click.option("--id", "msg_id", required=True, help="The webhook-id header.")
@click.option("--timestamp", required=True, help="The webhook-timestamp header (Unix seconds).")
@click.option("--signature", required=True, help="The webhook-signature header (space-separated list).")
@click.option(
    "--secret", envvar="WARDSIGHT_WEBHOOK_SECRET", help="HMAC secret whsec_... (or $WARDSIGHT_WEBHOOK_SECRET)."
)
@click.option("--public-key", help="Pinned Ed25519 public key whpk_...")
@click.option("--tolerance", type=click.IntRange(min=0), default=DEFAULT_TOLERANCE, show_default=True, help="Seconds.")
@click.option("--now", type=int, default=None, help="Check against this Unix time instead of the clock.")
def verify_webhook(
    body_file: BinaryIO,
    msg_id: str,
    timestamp: str,
    signature: str,
    secret: str | None,
    public_key: str | None,
    tolerance: int,
    now: int | None,
) -> None:
    """Verify a Standard Webhooks delivery: BODY_FILE (default stdin) holds the raw body bytes.

    Prints "valid", or exits 1 with the reason.

    \b
    Example:
        wardsight verify-webhook body.json --id msg_p5jXN8AQM9LWM0D4loKWxJek \\
            --timestamp 1614265330 --signature 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' \\
            --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw --now 1614265330
        printf '%s' "$BODY" | wardsight verify-webhook --id "$ID" --timestamp "$TS" \\
            --signature "$SIG" --public-key whpk_...
    """
    if secret is None and public_key is None:
        raise click.UsageError("give --secret (whsec_...) or --public-key (whpk_...)")
    headers = {ID_HEADER: msg_id, TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature}
    try:
        verify(
            headers,
            body_file.read(),
            hmac_secret=secret,
            public_key=public_key,
            now=time.time() if now is None else now,
            tolerance=tolerance,
        )
    except WebhookVerificationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("valid")
