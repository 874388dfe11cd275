"""The hospital's offline keys: Ed25519, PKCS#8 PEM files (0600; encrypted with a passphrase on request).

A keys directory holds ``root.key`` and ``targets.key``; a rotation keeps the replaced key under
``retired/``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, SSlibKey

from signing.errors import OtaCliError
from wardsight.paths import write_file_atomically

ROOT_KEY = "root.key"
TARGETS_KEY = "targets.key"
RETIRED_DIR = "retired"

Passphrase = bytes | Callable[[Path], bytes] | None


def generate_key(path: Path, passphrase: bytes | None = None) -> str:
    """Write a new Ed25519 key (PKCS#8 PEM, 0600; encrypted when ``passphrase``); return its TUF key id."""
    if path.exists():
        raise OtaCliError(f"{path} exists: refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    write_file_atomically(path, pem)
    return SSlibKey.from_crypto(key.public_key()).keyid


def generate_keys(out: Path, passphrase: bytes | None = None) -> dict[str, str]:
    """Make ``root.key`` and ``targets.key`` in ``out``; return {role: key id}."""
    for name in (ROOT_KEY, TARGETS_KEY):
        if (out / name).exists():
            raise OtaCliError(f"{out / name} exists: refusing to overwrite a key")
    return {role: generate_key(out / name, passphrase) for role, name in (("root", ROOT_KEY), ("targets", TARGETS_KEY))}


def load_signer(path: Path, passphrase: Passphrase = None) -> CryptoSigner:
    """A signer for the Ed25519 key in ``path``; ``passphrase`` (bytes, or a function asked only when the
    key is encrypted) unlocks an encrypted one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OtaCliError(f"cannot read key {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted
        if passphrase is None:
            raise OtaCliError(f"{path} is encrypted: a passphrase is needed") from None
        secret = passphrase(path) if callable(passphrase) else passphrase
        try:
            key = serialization.load_pem_private_key(data, password=secret)
        except (TypeError, ValueError):
            raise OtaCliError(f"cannot unlock {path}: wrong passphrase or damaged key") from None
    except ValueError as exc:
        raise OtaCliError(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise OtaCliError(f"{path} is not an Ed25519 key")
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))


def retire_key(keys: Path, name: str, version: int, new_key: Path) -> None:
    """Keep the replaced key under retired/ and make the new one the directory's current key."""
    current = keys / name
    retired = keys / RETIRED_DIR / f"{Path(name).stem}-until-root-v{version}.key"
    write_file_atomically(retired, current.read_bytes())
    write_file_atomically(current, new_key.read_bytes())
