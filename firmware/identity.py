"""The device's identity: an Ed25519 key made here (file 0600, never sent) and its enrollment."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from firmware.transport import post_jws
from wardsight import wire
from wardsight.errors import WardSightError

log = logging.getLogger("wardsight.device.identity")


@dataclass(frozen=True)
class Identity:
    device_id: str
    room: str
    server_url: str
    name: str


class IdentityStore:
    """``<dir>/key.pem`` (0600) and ``<dir>/identity.json``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.key_path = directory / "key.pem"
        self.identity_path = directory / "identity.json"

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

    def write_identity(self, identity: Identity) -> None:
        tmp = self.identity_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(identity), indent=2))
        os.replace(tmp, self.identity_path)

    def enroll(self, server_url: str, token: str, name: str, timeout: float = 15.0) -> Identity:
        """Prove possession of this device's key to the server and record the identity it assigns."""
        if self.identity_path.exists():
            raise WardSightError(f"already enrolled ({self.identity_path}); remove it to enroll again")
        key = self.load_or_create_key()
        try:
            request = wire.EnrollmentRequest(
                token=token, public_key=wire.encode_public_key(key.public_key()), name=name
            )
        except ValidationError as exc:
            raise WardSightError(f"cannot enroll: {exc.errors()[0]['loc'][0]} is malformed") from None
        reply = post_jws(server_url.rstrip("/") + "/api/v1/enroll", wire.sign_enrollment(request, key), timeout)
        if reply.status != 201:
            raise WardSightError(f"enrollment refused by {server_url}: {reply.error}")
        answer = wire.EnrollmentResponse.model_validate(reply.body)
        identity = Identity(answer.device_id, answer.room, server_url.rstrip("/"), name)
        self.write_identity(identity)
        log.info("enrolled as %s in room %s", identity.device_id, identity.room)
        return identity
