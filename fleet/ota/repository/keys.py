"""The server's **online** TUF keys: snapshot and timestamp signers kept in its keys directory.

``tuf-snapshot.key`` and ``tuf-timestamp.key`` (Ed25519, 0600) are made on first use. The offline root and
targets keys never reach the server (see :mod:`fleet.ota.repository`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, SSlibKey

from fleet.keys import load_or_create_key

SNAPSHOT_KEY_FILE = "tuf-snapshot.key"
TIMESTAMP_KEY_FILE = "tuf-timestamp.key"


def signer_for(key: Ed25519PrivateKey) -> CryptoSigner:
    """A securesystemslib signer (scheme ed25519, default key id) for a cryptography Ed25519 key."""
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))


@dataclass(frozen=True)
class OnlineKeys:
    """The server's snapshot and timestamp signers."""

    snapshot: CryptoSigner
    timestamp: CryptoSigner

    def public(self) -> dict[str, dict[str, Any]]:
        """``{"snapshot": {"keyid": ..., "key": <TUF key dict>}, "timestamp": {...}}``."""
        return {
            role: {"keyid": signer.public_key.keyid, "key": signer.public_key.to_dict()}
            for role, signer in (("snapshot", self.snapshot), ("timestamp", self.timestamp))
        }


def load_online_keys(keys_dir: Path) -> OnlineKeys:
    """Load the online keys from the server's keys directory, making them (0600) on first use."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return OnlineKeys(
        snapshot=signer_for(load_or_create_key(keys_dir / SNAPSHOT_KEY_FILE)),
        timestamp=signer_for(load_or_create_key(keys_dir / TIMESTAMP_KEY_FILE)),
    )
