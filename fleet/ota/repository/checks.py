"""What the repository checks before it accepts metadata from the hospital (each refusal an :class:`OtaError`).

The hospital's offline keys sign root and targets; these checks make sure a change is signed by them, moves
forward, has not expired, keeps the online keys to snapshot and timestamp, and lists only packages the
server holds byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from tuf.api.exceptions import LengthOrHashMismatchError, UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, T, TargetFile, Targets
from tuf.api.serialization import DeserializationError

from wardsight import modelpkg, wire


class OtaError(Exception):
    """A refused repository change; ``status`` is the HTTP status, ``str(exc)`` says why (one line, short: it
    goes into the response and the log line)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(modelpkg.short(message))
        self.status = status


def parse_metadata(data: bytes, kind: type[T]) -> Metadata[T]:
    """Deserialize ``data`` as TUF metadata of ``kind`` (OtaError 400 otherwise)."""
    try:
        md = Metadata[T].from_bytes(data)
    except DeserializationError as exc:
        raise OtaError(400, f"not valid TUF metadata: {exc}") from None
    if not isinstance(md.signed, kind):
        raise OtaError(400, f"expected {kind.type} metadata, got {md.signed.type}")
    return md


def check_new_root(new: Metadata[Root], current: Metadata[Root] | None, with_targets: bool, now: datetime) -> None:
    """The first root is version 1 and comes with targets; a later one is version N+1 signed by the current
    root's keys. Either is signed by its own root keys, unexpired, and without consistent snapshots."""
    if current is None:
        if new.signed.version != 1:
            raise OtaError(409, "the repository is not initialized: its first root must be version 1")
        if not with_targets:
            raise OtaError(400, "initializing needs the first targets metadata too")
    else:
        if new.signed.version != current.signed.version + 1:
            raise OtaError(409, f"root version must be {current.signed.version + 1}, got {new.signed.version}")
        try:
            current.signed.verify_delegate("root", new.signed_bytes, new.signatures)
        except UnsignedMetadataError:
            raise OtaError(403, "the new root is not signed by the current root key(s)") from None
    try:
        new.signed.verify_delegate("root", new.signed_bytes, new.signatures)
    except UnsignedMetadataError:
        raise OtaError(403, "the new root is not signed by its own root key(s)") from None
    if new.signed.is_expired(now):
        raise OtaError(400, f"root metadata expired at {new.signed.expires.isoformat()}")
    if new.signed.consistent_snapshot:
        raise OtaError(400, "this server does not use consistent snapshots (consistent_snapshot: false)")


def check_online_roles(root: Root, online: dict[str, dict[str, Any]]) -> None:
    """The root must give snapshot and timestamp to exactly this server's keys (``online``: ``OnlineKeys.public()``),
    and never let an online key sign root or targets (else a compromised server could publish)."""
    for role in ("snapshot", "timestamp"):
        spec = root.roles[role]
        if spec.keyids != [online[role]["keyid"]] or spec.threshold != 1:
            raise OtaError(
                400,
                f"the root's {role} role must be this server's {role} key {online[role]['keyid']} "
                "(threshold 1): fetch GET /api/v1/ota/online-keys",
            )
    online_ids = {entry["keyid"] for entry in online.values()}
    for role in ("root", "targets"):
        spec = root.roles[role]
        if online_ids & set(spec.keyids):
            raise OtaError(400, f"an online key may not sign {role}: {role} keys must be offline keys")
        if spec.threshold < 1 or len(spec.keyids) < spec.threshold:
            raise OtaError(400, f"the root's {role} role has fewer keys than its threshold")


def check_targets_key_kept(root: Root, served: Metadata[Targets]) -> None:
    """A new root sent without targets must keep the targets key: the served targets still verify under it."""
    try:
        root.verify_delegate("targets", served.signed_bytes, served.signatures)
    except UnsignedMetadataError:
        raise OtaError(409, "the new root changes the targets key: send targets re-signed with the new key") from None


def check_targets(
    md: Metadata[Targets],
    root: Root,
    current: Metadata[Targets] | None,
    target_file: Callable[[str], Path | None],
    now: datetime,
) -> None:
    """Signed per ``root``, newer than the ``current`` targets, unexpired, no delegations, and every target a
    model package the server holds (``target_file``) with exactly that length and those hashes."""
    try:
        root.verify_delegate("targets", md.signed_bytes, md.signatures)
    except UnsignedMetadataError:
        raise OtaError(403, "targets metadata is not signed by the root's targets key(s)") from None
    targets = md.signed
    if current is not None and targets.version <= current.signed.version:
        raise OtaError(409, f"targets version {targets.version} is not above the current {current.signed.version}")
    if targets.is_expired(now):
        raise OtaError(400, f"targets metadata expired at {targets.expires.isoformat()}")
    if targets.delegations is not None:
        raise OtaError(400, "delegated targets roles are not supported")
    old = current.signed.targets if current is not None else {}
    for path, info in targets.targets.items():
        _check_target(path, info, target_file(path), unchanged=old.get(path) == info)


def _check_system_custom(path: str, info: TargetFile) -> None:
    """A bundle's signed custom metadata must say what its path says: devices trust the signed compatible."""
    match = wire.SYSTEM_TARGET_PATH.match(path)
    if match is None:
        return
    custom = info.custom if isinstance(info.custom, dict) else {}
    said = (custom.get("kind"), custom.get("compatible"), custom.get("version"))
    if said != ("system", match.group(1), match.group(2)):
        raise OtaError(400, f"target {path}: its custom metadata must say kind system, compatible {match.group(1)}"
                            f" and version {match.group(2)}")  # fmt: skip


def _check_target(path: str, info: TargetFile, file: Path | None, *, unchanged: bool) -> None:
    if file is None:
        raise OtaError(
            400, f"target '{path[:100]}' is not models/<name>/<version>.wsm or system/<compatible>/<version>.raucb"
        )
    _check_system_custom(path, info)
    if "sha256" not in info.hashes:
        raise OtaError(400, f"target {path} has no sha256 hash")
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        raise OtaError(400, f"target {path} is not on the server: upload the package first") from None
    if size != info.length:
        raise OtaError(400, f"target {path} is {size} bytes on the server, the metadata says {info.length}")
    if unchanged:
        return  # checked when it was first listed
    with open(file, "rb") as fh:
        try:
            info.verify_length_and_hashes(fh)
        except LengthOrHashMismatchError:
            raise OtaError(400, f"target {path} does not match the package the server holds") from None
