"""The rollouts' tables, and what the rollouts read of the devices' own.

- ``rollouts``: one row per rollout: the spec and state (JSON, :mod:`fleet.ota.rollouts.codec`), the validated
  request, who created it and when, the status (a copy of the state's, for listing), ``settled`` (1 when only
  an operator or a report can change it) and ``last_report_id`` (the last report its state includes).
- ``rollout_devices``: which devices each rollout targets, for the device's poll.
- ``rollout_reports``: every accepted device report, append-only (triggers refuse UPDATE and DELETE).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from fleet.jobs.wakeup import DeviceWaiters
from fleet.ota.rollouts.codec import spec_from_dict, spec_to_dict, state_from_dict, state_to_dict
from fleet.ota.rollouts.explain import DeviceFacts
from fleet.ota.rollouts.selection import DeviceInfo
from fleet.ota.rollouts.spec import RolloutSpec
from fleet.ota.rollouts.state import Report, RolloutState, is_settled
from fleet.store.connection import Database
from wardsight import modelpkg, wire

# ---- rollouts -------------------------------------------------------------------------------------------


def load(db: Database, rollout_id: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM rollouts WHERE id = ?", [rollout_id]))
    return rows[0] if rows else None


def decode(row: dict[str, Any]) -> tuple[RolloutSpec, RolloutState]:
    return spec_from_dict(json.loads(row["spec"])), state_from_dict(json.loads(row["state"]))


def all_rows(db: Database) -> Iterable[dict[str, Any]]:
    """Every rollout, newest first."""
    return db.query("SELECT * FROM rollouts ORDER BY created_at DESC, id")


def insert(
    db: Database,
    spec: RolloutSpec,
    state: RolloutState,
    *,
    request: str,
    target_checked: bool,
    actor: str,
    now: float,
) -> None:
    """A new rollout (settled 0 until :func:`save` says otherwise) and the devices it targets."""
    db.conn.execute(
        "INSERT INTO rollouts (id, model, version, status, settled, spec, state, request, target_checked,"
        " created_by, created_at, updated_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)",
        [
            spec.rollout_id,
            spec.model,
            spec.version,
            state.status,
            json.dumps(spec_to_dict(spec), sort_keys=True),
            json.dumps(state_to_dict(state), sort_keys=True),
            request,
            int(target_checked),
            actor,
            now,
            now,
        ],
    )
    db.conn.executemany(
        "INSERT INTO rollout_devices (rollout_id, device_id) VALUES (?, ?)",
        [(spec.rollout_id, d) for d in spec.group_of],
    )


def save(
    db: Database,
    rollout_id: str,
    spec: RolloutSpec,
    state: RolloutState,
    now: float,
    last_report_id: int | None = None,
) -> None:
    db.conn.execute(
        "UPDATE rollouts SET status = ?, settled = ?, state = ?, updated_at = ?,"
        " last_report_id = COALESCE(?, last_report_id) WHERE id = ?",
        [
            state.status,
            int(is_settled(spec, state)),
            json.dumps(state_to_dict(state), sort_keys=True),
            now,
            last_report_id,
            rollout_id,
        ],
    )


def to_tick(db: Database) -> list[str]:
    """The rollouts a tick must look at: not settled, or with reports their state does not include yet."""
    return [
        r["id"]
        for r in db.query(
            "SELECT id FROM rollouts r WHERE settled = 0 OR EXISTS (SELECT 1 FROM rollout_reports p"
            " WHERE p.rollout_id = r.id AND p.id > r.last_report_id) ORDER BY created_at, id"
        )
    ]


def open_for_device(db: Database, device_id: str) -> Iterable[dict[str, Any]]:
    """The unsettled rollouts that target the device, oldest first."""
    return db.query(
        "SELECT r.* FROM rollouts r JOIN rollout_devices d ON d.rollout_id = r.id"
        " WHERE d.device_id = ? AND r.settled = 0 ORDER BY r.created_at, r.id",
        [device_id],
    )


def targets(db: Database, rollout_id: str, device_id: str) -> bool:
    """Whether the rollout targets the device."""
    return bool(
        db.execute(
            "SELECT 1 FROM rollout_devices WHERE rollout_id = ? AND device_id = ?", [rollout_id, device_id]
        ).fetchone()
    )


# ---- reports --------------------------------------------------------------------------------------------


def new_reports(db: Database, row: dict[str, Any]) -> list[dict[str, Any]]:
    """The rollout's reports its state (``row``) does not include yet, in order of arrival."""
    return list(
        db.query(
            "SELECT * FROM rollout_reports WHERE rollout_id = ? AND id > ? ORDER BY id",
            [row["id"], row["last_report_id"]],
        )
    )


def as_reports(rows: list[dict[str, Any]]) -> list[Report]:
    return [
        Report(r["device_id"], r["version"], r["state"], r["received_at"], r["reason"], r["progress"], r["done"],
               r["total"], r.get("detail"))
        for r in rows
    ]  # fmt: skip


def insert_report(db: Database, device_id: str, report: wire.UpdateReport, now: float) -> None:
    db.conn.execute(
        "INSERT INTO rollout_reports (rollout_id, device_id, model, version, state, reason, progress, received_at,"
        " done, total, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            report.rollout_id,
            device_id,
            report.model,
            report.version,
            report.state,
            report.reason,
            report.progress,
            now,
            report.done,
            report.total,
            report.detail,
        ],
    )


# ---- the devices ----------------------------------------------------------------------------------------


def device_infos(db: Database) -> list[DeviceInfo]:
    """Every device's room, site, ward, status, tags and the system (version, RAUC compatible) its latest heartbeat
    reports."""
    out = []
    for row in db.query(
        "SELECT d.id, d.site, d.ward, d.room, d.status, d.tags, h.system_version, h.system_compatible"
        " FROM devices d"
        " LEFT JOIN health_latest h ON h.device_id = d.id"
    ):
        try:
            tags = json.loads(row["tags"]) if row["tags"] else []
        except ValueError:
            tags = []
        out.append(
            DeviceInfo(
                id=row["id"],
                room=row["room"],
                site=row["site"],
                ward=row["ward"],
                status=row["status"] or "active",
                tags=tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
                system_version=row["system_version"],
                system_compatible=row["system_compatible"],
            )
        )
    return out


def running_versions(db: Database, devices: Iterable[str], model: str) -> dict[str, str]:
    """The version of ``model`` each device's latest heartbeat says it runs (where it says so)."""
    out: dict[str, str] = {}
    wanted = set(devices)
    for row in db.query("SELECT device_id, models FROM health_latest"):
        if row["device_id"] not in wanted:
            continue
        try:
            version = json.loads(row["models"]).get(wire.data_key(model))
        except (ValueError, AttributeError):
            continue
        if isinstance(version, str) and re.fullmatch(modelpkg.VERSION, version):
            out[row["device_id"]] = version
    return out


def device_facts(db: Database, waiting: DeviceWaiters | None = None, polls: dict[str, float] | None = None,
                 system_polls: dict[str, bool] | None = None) -> dict[str, DeviceFacts]:  # fmt: skip
    """What each device's latest heartbeat, presence and polls say, for :func:`fleet.ota.rollouts.explain.explain`."""
    out: dict[str, DeviceFacts] = {}
    rows = db.conn.execute(
        "SELECT d.id, h.updates, h.accelerator, p.offline_since FROM devices d"
        " LEFT JOIN health_latest h ON h.device_id = d.id LEFT JOIN presence p ON p.device_id = d.id"
    )
    for device_id, updates, accelerator, offline_since in rows:
        out[device_id] = DeviceFacts(
            updates=updates,
            accelerator=accelerator,
            offline_since=offline_since,
            connected=waiting.connected(device_id) if waiting is not None else False,
            last_update_poll=(polls or {}).get(device_id),
            system_updates=(system_polls or {}).get(device_id),
        )
    return out
