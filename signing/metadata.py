"""TUF metadata only the offline keys may sign: the first root and targets (:func:`init_repository`) and
targets versions that add or remove a model package (:func:`publish`, :func:`withdraw`).

Before signing on top of the server's targets metadata the signer checks that it carries a valid signature
by its own targets key and is not older than what these keys signed last (:mod:`signing.state`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict, Unpack

from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, TargetFile, Targets
from tuf.api.serialization import DeserializationError

from signing.client import Server, online_keys, upload_package
from signing.errors import OtaCliError
from signing.keys import ROOT_KEY, TARGETS_KEY, Passphrase, load_signer
from signing.state import check_not_older, save_state
from wardsight import modelpkg
from wardsight.wire import target_path

DEFAULT_ROOT_DAYS = 365
DEFAULT_TARGETS_DAYS = 365


class Signing(TypedDict, total=False):
    """How :func:`resign_targets` signs (its defaults for what is not given): at ``now``, valid ``targets_days``."""

    now: datetime | None
    targets_days: int
    passphrase: Passphrase


def utc_now(now: datetime | None) -> datetime:
    """``now`` (or the current time) in UTC."""
    return (now or datetime.now(UTC)).astimezone(UTC)


def parse_metadata(raw: bytes, kind: type[Root] | type[Targets], what: str) -> Metadata[Any]:
    """``raw`` as TUF metadata of role ``kind``, or an :class:`OtaCliError` naming ``what``."""
    try:
        md: Metadata[Any] = Metadata.from_bytes(raw)
    except DeserializationError as exc:
        raise OtaCliError(f"{what} is not TUF metadata: {exc}") from None
    if not isinstance(md.signed, kind):
        raise OtaCliError(f"{what} is {md.signed.type} metadata, not {kind.type}")
    return md


def served_targets(server: Server) -> Metadata[Targets]:
    """The targets metadata the server serves to devices (not yet checked)."""
    md: Metadata[Targets] = parse_metadata(server.request("GET", "/tuf/metadata/targets.json"), Targets, "targets.json")
    return md


def init_repository(
    keys: Path,
    server: Server,
    *,
    now: datetime | None = None,
    root_days: int = DEFAULT_ROOT_DAYS,
    targets_days: int = DEFAULT_TARGETS_DAYS,
    passphrase: Passphrase = None,
) -> dict[str, Any]:
    """Create the repository on the server: root v1 and an empty targets v1, signed here."""
    at = utc_now(now)
    root_signer = load_signer(keys / ROOT_KEY, passphrase)
    targets_signer = load_signer(keys / TARGETS_KEY, passphrase)
    online = online_keys(server)
    offline_ids = {root_signer.public_key.keyid, targets_signer.public_key.keyid}
    if offline_ids & {key.keyid for key in online.values()}:
        raise OtaCliError("the server's online keys are the same as an offline key")
    root = Root(version=1, expires=at + timedelta(days=root_days), consistent_snapshot=False)
    root.add_key(root_signer.public_key, "root")
    root.add_key(targets_signer.public_key, "targets")
    for role, key in online.items():
        root.add_key(key, role)
    root_md = Metadata(root)
    root_md.sign(root_signer)
    targets_md = Metadata(Targets(version=1, expires=at + timedelta(days=targets_days)))
    targets_md.sign(targets_signer)
    summary: dict[str, Any] = server.post_json(
        "/api/v1/ota/root", {"root": root_md.to_dict(), "targets": targets_md.to_dict()}
    )
    save_state(keys, root_version=1, targets_version=1)
    return summary


def target_info(package: Path) -> TargetFile:
    """The TargetFile for a package, computed from the local file: path, length, sha256, and a ``custom``
    description (name, version, task, minimum agent version, builds) devices can read before downloading."""
    manifest = modelpkg.read_manifest(package)
    info = TargetFile.from_file(target_path(manifest.name, manifest.version), str(package), ["sha256"])
    info.unrecognized_fields["custom"] = {
        "name": manifest.name,
        "version": manifest.version,
        "task": manifest.task,
        "min_agent_version": manifest.min_agent_version,
        "builds": [_build_description(b) for b in manifest.builds],
    }
    return info


def _build_description(build: modelpkg.Build) -> dict[str, str | None]:
    """What a device reads of a build before downloading: backend, runtime, chip and (when named) runtime version."""
    described = {"backend": build.backend, "runtime": build.runtime, "hardware": build.hardware}
    if build.runtime_version is not None:  # absent for CPU builds: older agents see what they always saw
        described["runtime_version"] = build.runtime_version
    return described


def _current_targets(keys: Path, server: Server, signer: CryptoSigner) -> Metadata[Targets]:
    """The served targets metadata, if these keys signed it and it is not older than what they signed."""
    current = served_targets(server)
    keyid = signer.public_key.keyid
    signature = current.signatures.get(keyid)
    try:
        if signature is None:
            raise UnverifiedSignatureError("no signature by this key")
        signer.public_key.verify_signature(signature, current.signed_bytes)
    except UnverifiedSignatureError:
        raise OtaCliError(
            f"the server's targets.json is not signed by this targets key ({keyid[:12]}): refusing to sign its "
            "contents (a rotated key, another repository, or a tampered server)"
        ) from None
    check_not_older(keys, "targets", current.signed.version)
    return current


def resign_targets(
    keys: Path,
    server: Server,
    change: Callable[[Targets], None],
    *,
    now: datetime | None = None,
    targets_days: int = DEFAULT_TARGETS_DAYS,
    passphrase: Passphrase = None,
) -> dict[str, Any]:
    """Fetch and check the served targets, apply ``change``, bump the version, sign, send."""
    signer = load_signer(keys / TARGETS_KEY, passphrase)
    current = _current_targets(keys, server, signer)
    targets = current.signed
    change(targets)
    targets.version += 1
    targets.expires = utc_now(now) + timedelta(days=targets_days)
    md = Metadata(targets)
    md.sign(signer)
    summary: dict[str, Any] = server.post_json("/api/v1/ota/targets", md.to_dict())
    save_state(keys, targets_version=targets.version)
    return summary


def publish(package: Path, keys: Path, server: Server, **signing: Unpack[Signing]) -> dict[str, Any]:
    """Upload ``package`` and publish it: targets metadata listing it, signed with the offline targets key."""
    info = target_info(package)
    return publish_staged(info, upload_package(package, server), keys, server, **signing)


def publish_staged(
    info: TargetFile,
    staged: dict[str, Any],
    keys: Path,
    server: Server,
    *,
    inspect: Callable[[Targets], None] | None = None,
    **signing: Unpack[Signing],
) -> dict[str, Any]:
    """List ``info`` (a file the server just ``staged``, as its upload answered) in the targets metadata, signed with
    the offline targets key; refused if the server stored other bytes or the path is already published.
    ``inspect`` is shown the checked targets metadata first (e.g. to warn of a system floor above the bundle)."""
    if (staged.get("length"), staged.get("sha256")) != (info.length, info.hashes["sha256"]):
        raise OtaCliError(f"the server stored {info.path} with another length/sha256 than the local file")

    def add(targets: Targets) -> None:
        if inspect is not None:
            inspect(targets)
        listed = targets.targets.get(info.path)
        if listed is not None:
            same = (listed.length, listed.hashes) == (info.length, info.hashes)
            raise OtaCliError(f"{info.path} is already published" + ("" if same else " with other contents"))
        targets.targets[info.path] = info

    return resign_targets(keys, server, add, **signing)


def withdraw(name: str, version: str, keys: Path, server: Server, **signing: Unpack[Signing]) -> dict[str, Any]:
    """Sign targets metadata that no longer lists ``name`` ``version`` (devices will not install it)."""
    path = target_path(name, version)

    def remove(targets: Targets) -> None:
        if targets.targets.pop(path, None) is None:
            raise OtaCliError(f"{path} is not published")

    return resign_targets(keys, server, remove, **signing)
