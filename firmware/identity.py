"""The device's identity: an Ed25519 key made here (file 0600, never sent), its enrollment and its fleet CA."""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from firmware.transport import CredentialFile, FleetClient, UnreachableError, post_jws
from wardsight import tls, wire
from wardsight.bundle import Bundle
from wardsight.errors import WardSightError
from wardsight.paths import write_file_atomically

log = logging.getLogger("wardsight.device.identity")


class EnrollmentRefusedError(WardSightError):
    """The server refused the enrollment for good (token invalid, used, expired or revoked; room or key refused):
    trying again with this bundle cannot work. ``status`` is the HTTP status, ``reason`` the server's words."""

    def __init__(self, url: str, status: int, reason: str) -> None:
        super().__init__(f"enrollment refused by {url}: {reason}")
        self.status, self.reason = status, reason


RETRY_STATUSES = frozenset({408, 425, 429})  # "later": not a refusal


@dataclass(frozen=True)
class Identity:
    device_id: str
    room: str
    server_url: str
    name: str
    site: str | None = None
    ward: str | None = None
    job_key: str | None = None  # the server's public key for maintenance jobs (base64url Ed25519)


def tls_context(server_url: str, ca_pem: str | None) -> ssl.SSLContext | None:
    """Trust only the fleet CA; certificate dates are not judged by this device's clock (it may have no RTC)."""
    if not server_url.startswith("https://"):
        return None
    if not ca_pem:
        raise WardSightError("https needs the fleet CA from the enrollment bundle")
    return tls.pinned_context(ca_pem, ignore_clock=True)


class IdentityStore:
    """``<dir>/key.pem`` (0600), ``<dir>/identity.json``, ``<dir>/fleet-ca.pem`` and ``<dir>/credential.json``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.key_path = directory / "key.pem"
        self.identity_path = directory / "identity.json"
        self.ca_path = directory / "fleet-ca.pem"
        self.credential_path = directory / "credential.json"

    def load_or_create_key(self) -> Ed25519PrivateKey:
        if self.key_path.exists():
            return wire.load_private_key(self.key_path)
        key = wire.generate_key()
        wire.write_private_key(key, self.key_path)
        log.info("created a new device key at %s", self.key_path)
        return key

    def load(self) -> tuple[Identity, Ed25519PrivateKey]:
        if not self.identity_path.exists():
            raise WardSightError(
                f"this device is not enrolled (no {self.identity_path}); run 'wardsight device enroll'"
            )
        try:
            identity = Identity(**json.loads(self.identity_path.read_text()))
        except (ValueError, TypeError) as exc:
            raise WardSightError(f"{self.identity_path} is damaged ({exc}); enroll again") from None
        return identity, wire.load_private_key(self.key_path)

    def ca_pem(self) -> str | None:
        return self.ca_path.read_text() if self.ca_path.exists() else None

    def client(self, *, clock: Callable[[], float] = time.time, timeout: float = 10.0) -> tuple[Identity, FleetClient]:
        """The enrolled identity and an authenticated client for its server."""
        identity, key = self.load()
        context = tls_context(identity.server_url, self.ca_pem())
        client = FleetClient(
            identity.server_url,
            identity.device_id,
            key,
            CredentialFile(self.credential_path),
            context=context,
            clock=clock,
            timeout=timeout,
        )
        return identity, client

    def _write(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomically(path, text.encode(), mode=0o644)  # public material: identity, CA, TUF root

    def enroll(
        self, bundle: Bundle, name: str, *, room: str | None = None, timeout: float = 15.0
    ) -> tuple[Identity, str]:
        """Prove possession of this device's key to the server; record the identity it assigns and its status.

        Raises :class:`EnrollmentRefusedError` when the server refuses for good and
        :class:`~firmware.transport.UnreachableError` when it cannot be reached or asks to try later."""
        if self.identity_path.exists():
            raise WardSightError(f"already enrolled ({self.identity_path}); remove it to enroll again")
        bundle.check()
        context = tls_context(bundle.server_url, bundle.ca_pem)
        key = self.load_or_create_key()
        try:
            request = wire.EnrollmentRequest(
                token=bundle.token, public_key=wire.encode_public_key(key.public_key()), name=name, room=room
            )
        except ValidationError as exc:
            raise WardSightError(f"cannot enroll: {exc.errors()[0]['loc'][0]} is malformed") from None
        url = bundle.server_url.rstrip("/")
        reply = post_jws(url + "/api/v1/enroll", wire.sign_enrollment(request, key), timeout, context)
        if reply.status in RETRY_STATUSES:
            raise UnreachableError(f"{url} asks to enroll later (HTTP {reply.status})")
        if reply.status != 201:
            raise EnrollmentRefusedError(url, reply.status, reply.error)
        answer = wire.EnrollmentResponse.model_validate(reply.body)
        identity = Identity(answer.device_id, answer.room, url, name, answer.site, answer.ward, answer.job_key)
        if bundle.ca_pem:
            self._write(self.ca_path, bundle.ca_pem)
        if bundle.tuf_root:  # the OTA repository's root of trust, for the TUF client
            self._write(self.dir / "ota" / "root.json", bundle.tuf_root)
        self._write(self.identity_path, json.dumps(asdict(identity), indent=2))
        log.info("enrolled as %s in room %s (%s)", identity.device_id, identity.room, answer.status)
        return identity, answer.status
