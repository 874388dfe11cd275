"""Root rotation: root v(N+1) signed by the current root key (and the new one), trusting the server's
current online keys and optionally a new root and/or targets key."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Key
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root

from signing.client import Server, online_keys
from signing.errors import OtaCliError
from signing.keys import ROOT_KEY, TARGETS_KEY, Passphrase, load_signer, retire_key
from signing.metadata import DEFAULT_ROOT_DAYS, DEFAULT_TARGETS_DAYS, parse_metadata, served_targets, utc_now
from signing.state import check_not_older, save_state


def rotate_root(
    keys: Path,
    server: Server,
    *,
    new_root_key: Path | None = None,
    new_targets_key: Path | None = None,
    now: datetime | None = None,
    root_days: int = DEFAULT_ROOT_DAYS,
    targets_days: int = DEFAULT_TARGETS_DAYS,
    passphrase: Passphrase = None,
) -> dict[str, Any]:
    """Sign root v(N+1) with the current root key (and the new one), trusting the server's current online
    keys and optionally a new root and/or targets key; with a new targets key the targets metadata is
    re-signed with it. Without new keys this renews the root's expiry. On success the keys directory's
    ``root.key``/``targets.key`` become the new keys (the old ones move to ``retired/``)."""
    at = utc_now(now)
    root_signer = load_signer(keys / ROOT_KEY, passphrase)
    current = _verified_root(keys, server, root_signer)
    new_root_signer = load_signer(new_root_key, passphrase) if new_root_key else None
    new_targets_signer = load_signer(new_targets_key, passphrase) if new_targets_key else None

    replacements: dict[str, Key] = dict(online_keys(server))
    if new_root_signer is not None:
        replacements["root"] = new_root_signer.public_key
    if new_targets_signer is not None:
        replacements["targets"] = new_targets_signer.public_key
    root = _next_root(current.signed, at + timedelta(days=root_days), replacements)
    md = Metadata(root)
    md.sign(root_signer)
    if new_root_signer is not None:
        md.sign(new_root_signer, append=True)
    body: dict[str, Any] = {"root": md.to_dict()}
    if new_targets_signer is not None:
        expires = at + timedelta(days=targets_days)
        body["targets"] = _resigned_targets(keys, server, current.signed, new_targets_signer, expires)
    summary: dict[str, Any] = server.post_json("/api/v1/ota/root", body)
    if new_root_key is not None:
        retire_key(keys, ROOT_KEY, root.version, new_root_key)
    if new_targets_key is not None:
        retire_key(keys, TARGETS_KEY, root.version, new_targets_key)
        save_state(keys, targets_version=summary.get("targets_version", 0))
    save_state(keys, root_version=root.version)
    return summary


def _verified_root(keys: Path, server: Server, root_signer: CryptoSigner) -> Metadata[Root]:
    """The server's root, if validly self-signed, trusting ``root_signer`` and not older than what these
    keys signed."""
    current: Metadata[Root] = parse_metadata(server.request("GET", "/api/v1/ota/root"), Root, "the server's root")
    try:
        current.signed.verify_delegate("root", current.signed_bytes, current.signatures)
    except UnsignedMetadataError:
        raise OtaCliError("the server's root is not validly signed by its own root keys") from None
    if root_signer.public_key.keyid not in current.signed.roles["root"].keyids:
        raise OtaCliError(f"{keys / ROOT_KEY} is not a root key of the server's root v{current.signed.version}")
    check_not_older(keys, "root", current.signed.version)
    return current


def _next_root(current: Root, expires: datetime, replacements: dict[str, Key]) -> Root:
    """A copy of ``current`` one version up, expiring at ``expires``, with each role in ``replacements``
    trusting only its new key."""
    root = Root.from_dict(copy.deepcopy(current.to_dict()))
    root.version += 1
    root.expires = expires
    for role, key in replacements.items():
        for keyid in list(root.roles[role].keyids):
            root.revoke_key(keyid, role)
        root.add_key(key, role)
    return root


def _resigned_targets(
    keys: Path, server: Server, current_root: Root, signer: CryptoSigner, expires: datetime
) -> dict[str, Any]:
    """The served targets (checked against the current root's targets key), one version up, signed with the
    new targets key."""
    served = served_targets(server)
    try:
        current_root.verify_delegate("targets", served.signed_bytes, served.signatures)
    except UnsignedMetadataError:
        raise OtaCliError("the server's targets.json is not signed by the current root's targets key") from None
    check_not_older(keys, "targets", served.signed.version)
    targets = served.signed
    targets.version += 1
    targets.expires = expires
    targets_md = Metadata(targets)
    targets_md.sign(signer)
    return targets_md.to_dict()
