"""The model library's table (``ota_models``) and where each version runs (from the devices' heartbeats).

A library entry is *staged* once uploaded, *published* while the signed targets metadata lists it with the
same contents, and *withdrawn* when it was published once and no longer is.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

from tuf.api.metadata import TargetFile

from fleet.audit import log as audit
from fleet.ota.library.package import PackageInfo
from fleet.store.connection import Database
from fleet.store.schema import transaction
from wardsight import modelpkg

MAX_DEVICES_LISTED = 100  # device ids per running version in the listing (the count is always complete)


def find(db: Database, name: str, version: str) -> dict[str, Any] | None:
    """The library entry of ``name`` ``version``, if any."""
    rows = list(db.query("SELECT * FROM ota_models WHERE name = ? AND version = ?", [name, version]))
    return rows[0] if rows else None


def record_upload(db: Database, info: PackageInfo, actor: str, now: float, *, replaced: bool) -> None:
    """Store (or replace, for a staged version) the library entry and audit it, in one transaction."""
    m = info.manifest
    with transaction(db.conn) as conn:
        conn.execute(
            "INSERT INTO ota_models (name, version, target, length, sha256, task, license, manifest,"
            " uploaded_by, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name, version) DO UPDATE"
            " SET target = excluded.target, length = excluded.length, sha256 = excluded.sha256, task = excluded.task,"
            " license = excluded.license, manifest = excluded.manifest, uploaded_by = excluded.uploaded_by,"
            " uploaded_at = excluded.uploaded_at",
            [m.name, m.version, info.target, info.length, info.sha256, m.task, m.license, m.model_dump_json(),
             actor, now],
        )  # fmt: skip
        details = {"target": info.target, "length": info.length, "sha256": info.sha256, "replaced": replaced}
        audit.record(db, actor=actor, action="model.upload", target=f"model:{m.name}/{m.version}", details=details,
                     now=now)  # fmt: skip


def mark_published(db: Database, published: dict[str, TargetFile], actor: str, now: float) -> None:
    """Note when (and by whom) each library entry first appeared in signed targets metadata."""
    with transaction(db.conn) as conn:
        for path, info in published.items():
            conn.execute(
                "UPDATE ota_models SET published_at = ?, published_by = ?"
                " WHERE target = ? AND sha256 = ? AND length = ? AND published_at IS NULL",
                [now, actor, path, info.hashes.get("sha256"), info.length],
            )


# ---- listing --------------------------------------------------------------------------------------------


def heartbeat_key(name: str) -> str:
    """A model name as the device agent reports it in heartbeats (firmware.heartbeat's data-key form)."""
    key = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    return (key if key[:1].isalpha() else "k_" + key)[:32] or "unknown"


def running_versions(db: Database) -> dict[str, dict[str, list[str]]]:
    """heartbeat model key -> version -> device ids, from each non-revoked device's latest heartbeat."""
    running: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    rows = db.conn.execute(
        "SELECT h.device_id, h.models FROM health_latest h JOIN devices d ON d.id = h.device_id"
        " WHERE COALESCE(d.status, 'active') != 'revoked' ORDER BY h.device_id"
    )
    for device_id, models in rows:
        try:
            reported = json.loads(models)
        except ValueError:
            continue
        if isinstance(reported, dict):
            for key, version in reported.items():
                running[str(key)][str(version)].append(device_id)
    return running


def _version_order(version: str) -> tuple[int, ...]:
    try:
        return modelpkg.version_key(version)
    except modelpkg.PackageError:
        return ()


def _status(row: dict[str, Any], published: dict[str, TargetFile]) -> str:
    listed = published.get(row["target"])
    if listed is not None and (listed.length, listed.hashes.get("sha256")) == (row["length"], row["sha256"]):
        return "published"
    if row["published_at"] is not None:
        return "withdrawn"
    return "staged"  # uploaded, awaiting the offline signature


def _version_entry(row: dict[str, Any], status: str, devices: int) -> dict[str, Any]:
    manifest = json.loads(row["manifest"])
    return {
        "version": row["version"],
        "status": status,
        "target": row["target"],
        "length": row["length"],
        "sha256": row["sha256"],
        "license": row["license"],
        "min_agent_version": manifest.get("min_agent_version"),
        "builds": [
            {"backend": b["backend"], "runtime": b["runtime"], "hardware": b.get("hardware")}
            for b in manifest["builds"]
        ],
        "uploaded_by": row["uploaded_by"],
        "uploaded_at": row["uploaded_at"],
        "published_by": row["published_by"],
        "published_at": row["published_at"],
        "devices": devices,
    }


def list_models(db: Database, published: dict[str, TargetFile]) -> list[dict[str, Any]]:
    """Every model in the library or seen running, with its versions and where each runs."""
    running = running_versions(db)
    models: dict[str, dict[str, Any]] = {}
    for row in db.query("SELECT * FROM ota_models ORDER BY name"):
        devices = running.get(heartbeat_key(row["name"]), {}).get(row["version"], [])
        blank = {"name": row["name"], "task": row["task"], "versions": [], "running": {}}
        entry = models.setdefault(row["name"], blank)
        entry["versions"].append(_version_entry(row, _status(row, published), len(devices)))
    by_key = {heartbeat_key(name): name for name in models}
    for key, versions in running.items():
        name = by_key.get(key, key)
        entry = models.setdefault(name, {"name": name, "task": None, "versions": [], "running": {}})
        entry["running"] = {
            version: {"devices": len(ids), "device_ids": ids[:MAX_DEVICES_LISTED]}
            for version, ids in sorted(versions.items(), key=lambda item: _version_order(item[0]), reverse=True)
        }
    for entry in models.values():
        entry["versions"].sort(key=lambda v: _version_order(v["version"]), reverse=True)
    return [models[name] for name in sorted(models)]
