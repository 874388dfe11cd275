"""The server's own Ed25519 signing keys, one per purpose, made on first use (files 0600, never logged or sent).

- ``credentials``: signs the short-lived device credentials.
- ``webhooks``: signs webhook deliveries (Standard Webhooks ``v1a``); receivers pin its ``whpk_`` public key.
- ``jobs``: signs maintenance jobs sent to devices.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wardsight import wire

Purpose = Literal["credentials", "webhooks", "jobs"]


@dataclass(frozen=True)
class ServerKeys:
    credentials: Ed25519PrivateKey
    webhooks: Ed25519PrivateKey
    jobs: Ed25519PrivateKey

    @property
    def webhook_signing_key(self) -> str:
        """The ``whsk_`` form wardsight.webhooks.sign takes."""
        seed = self.webhooks.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return "whsk_" + base64.b64encode(seed).decode("ascii")

    @property
    def webhook_public_key(self) -> str:
        """The ``whpk_`` public key receivers pin."""
        raw = self.webhooks.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "whpk_" + base64.b64encode(raw).decode("ascii")


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 key in ``path``, made and written there (0600) on first use."""
    if path.exists():
        return wire.load_private_key(path)
    key = wire.generate_key()
    wire.write_private_key(key, path)
    return key


def load_server_keys(directory: Path) -> ServerKeys:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return ServerKeys(
        credentials=load_or_create_key(directory / "credentials.key"),
        webhooks=load_or_create_key(directory / "webhooks.key"),
        jobs=load_or_create_key(directory / "jobs.key"),
    )
