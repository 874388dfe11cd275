"""System bundles in the library: RAUC bundles (``.raucb``) operators upload, stored as the TUF targets
``system/<compatible>/<version>.raucb`` (``ota_system_bundles``), staged until signed targets metadata lists them.

The server cannot read a bundle's manifest without RAUC (a SquashFS with the manifest inside, a CMS signature after
it) and does not hold the devices' RAUC keyring: the uploader names the compatible and version, and the hospital's
offline signing tool reads them from the bundle (``rauc info``) and signs them into the target's custom metadata,
which is what devices trust. Here a file must only look like a bundle (a signature size in its last 8 bytes, as
RAUC's bundle.c reads it) and is streamed, never read into memory whole.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuf.api.metadata import TargetFile

from fleet.audit import log as audit
from fleet.ota.repository.metadata import Repository
from fleet.store.connection import Database
from fleet.store.schema import transaction
from wardsight import sysversion, wire
from wardsight.modelpkg import file_sha256 as sha256_file

MAX_BUNDLE_BYTES = 8 * 1024**3  # a whole system slot (RAUC's own limit is the slot's size)
MAX_DEVICES_LISTED = 100


class BundleError(ValueError):
    """Not a RAUC bundle this library takes (the message names no server path)."""


@dataclass(frozen=True)
class BundleInfo:
    compatible: str
    version: str
    target: str
    length: int
    sha256: str


def inspect_bundle(path: Path, compatible: str, version: str) -> BundleInfo:
    """Check that ``path`` looks like a signed RAUC bundle (its last 8 bytes: the signature's size, big-endian,
    non-zero and within the file) and describe it as the target for ``compatible`` ``version``."""
    try:
        sysversion.refuse_ambiguous(version)
        target = wire.system_target_path(compatible, version)
    except ValueError as exc:
        raise BundleError(str(exc)) from None
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 8))
        tail = fh.read(8)
    signature = int.from_bytes(tail, "big") if len(tail) == 8 else 0
    if not 0 < signature <= size - 8:
        raise BundleError("it is not signed (no signature size at its end; make bundles with 'rauc bundle')")
    return BundleInfo(compatible, version, target, size, sha256_file(path))


def install_bundle(repo: Repository, tmp: Path, info: BundleInfo) -> bool:
    """Move a checked upload to its target path; False if an identical file was there already. Refuses
    (FileExistsError) a different bundle for a version the current targets.json publishes."""
    dest = repo.targets_dir / info.target
    with repo.lock():
        listed = repo.published().get(info.target)
        if listed is not None and (listed.length, listed.hashes.get("sha256")) != (info.length, info.sha256):
            raise FileExistsError(info.target)
        if dest.is_file() and dest.stat().st_size == info.length and sha256_file(dest) == info.sha256:
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    return True


# ---- the table ------------------------------------------------------------------------------------------------


def find_bundle(db: Database, compatible: str, version: str) -> dict[str, Any] | None:
    rows = list(
        db.query("SELECT * FROM ota_system_bundles WHERE compatible = ? AND version = ?", [compatible, version])
    )
    return rows[0] if rows else None


def same_version(db: Database, compatible: str, version: str) -> str | None:
    """Another name in the library for ``version`` of ``compatible``: one that orders the same (``1.2`` and ``1.2.0``,
    ``v1.2.0``; :func:`wardsight.sysversion.version_key`), so a device would take either for the other."""
    key = sysversion.version_key(version)
    for row in db.query("SELECT version FROM ota_system_bundles WHERE compatible = ?", [compatible]):
        other = str(row["version"])
        if other != version and sysversion.version_key(other) == key:
            return other
    return None


def record_bundle(db: Database, info: BundleInfo, actor: str, now: float, *, replaced: bool) -> None:
    """Store (or replace, for a staged version) the library entry and audit it, in one transaction."""
    with transaction(db.conn) as conn:
        conn.execute(
            "INSERT INTO ota_system_bundles (compatible, version, target, length, sha256, uploaded_by, uploaded_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (compatible, version) DO UPDATE SET target = excluded.target,"
            " length = excluded.length, sha256 = excluded.sha256, uploaded_by = excluded.uploaded_by,"
            " uploaded_at = excluded.uploaded_at",
            [info.compatible, info.version, info.target, info.length, info.sha256, actor, now],
        )
        details = {"target": info.target, "length": info.length, "sha256": info.sha256, "replaced": replaced}
        audit.record(db, actor=actor, action="system.upload", target=f"system:{info.compatible}/{info.version}",
                     details=details, now=now)  # fmt: skip


def mark_bundles_published(db: Database, published: dict[str, TargetFile], actor: str, now: float) -> None:
    """Note when (and by whom) each bundle first appeared in signed targets metadata."""
    with transaction(db.conn) as conn:
        for path, info in published.items():
            if wire.SYSTEM_TARGET_PATH.match(path):
                conn.execute(
                    "UPDATE ota_system_bundles SET published_at = ?, published_by = ?"
                    " WHERE target = ? AND sha256 = ? AND length = ? AND published_at IS NULL",
                    [now, actor, path, info.hashes.get("sha256"), info.length],
                )


# ---- listing --------------------------------------------------------------------------------------------------


def running_systems(db: Database) -> dict[tuple[str | None, str], list[str]]:
    """(RAUC compatible, system version) -> device ids, from each non-revoked device's latest heartbeat; the
    compatible is None for an agent that does not report it."""
    running: dict[tuple[str | None, str], list[str]] = defaultdict(list)
    rows = db.conn.execute(
        "SELECT h.device_id, h.system_compatible, h.system_version FROM health_latest h JOIN devices d"
        " ON d.id = h.device_id WHERE COALESCE(d.status, 'active') != 'revoked' AND h.system_version IS NOT NULL"
        " ORDER BY h.device_id"
    )
    for device_id, compatible, version in rows:
        running[(compatible, str(version))].append(device_id)
    return running


def _status(row: dict[str, Any], published: dict[str, TargetFile]) -> str:
    listed = published.get(row["target"])
    if listed is not None and (listed.length, listed.hashes.get("sha256")) == (row["length"], row["sha256"]):
        return "published"
    return "withdrawn" if row["published_at"] is not None else "staged"


def _custom(published: dict[str, TargetFile], target: str) -> dict[str, Any]:
    listed = published.get(target)
    custom = listed.custom if listed is not None else None
    return custom if isinstance(custom, dict) else {}


def list_systems(db: Database, published: dict[str, TargetFile]) -> list[dict[str, Any]]:
    """Every RAUC compatible in the library with its bundles (staged / published / withdrawn, the SBOM digest the
    signature carries) and how many devices of that board report each version (a device whose agent does not say
    its board counts for every board with its version)."""
    running = running_systems(db)
    systems: dict[str, dict[str, Any]] = {}
    for row in db.query("SELECT * FROM ota_system_bundles ORDER BY compatible, uploaded_at DESC, version"):
        entry = systems.setdefault(row["compatible"], {"kind": "system", "compatible": row["compatible"],
                                                       "versions": []})  # fmt: skip
        devices = sorted(running.get((row["compatible"], row["version"]), []) + running.get((None, row["version"]), []))
        entry["versions"].append(
            {
                "version": row["version"],
                "status": _status(row, published),
                "target": row["target"],
                "length": row["length"],
                "sha256": row["sha256"],
                "sbom_sha256": _custom(published, row["target"]).get("sbom_sha256"),
                "uploaded_by": row["uploaded_by"],
                "uploaded_at": row["uploaded_at"],
                "published_by": row["published_by"],
                "published_at": row["published_at"],
                "devices": len(devices),
                "device_ids": devices[:MAX_DEVICES_LISTED],
            }
        )
    return [systems[name] for name in sorted(systems)]
