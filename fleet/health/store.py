"""The health tables (keyed by device and removed with it): heartbeats, their samples, and presence.

- ``health_latest``: the last heartbeat of each device, flattened, with the clock skew it showed
  (device ``sent_at`` minus server ``received_at``; positive means the device clock is ahead), the privacy
  mode it reported and the system it runs (``system_slot``, ``system_version``, ``system_sbom_sha256``; NULL: an
  agent that does not say).
- ``health_samples``: a few numbers per heartbeat for charts, at most :data:`SAMPLES_PER_DEVICE` per
  device (the oldest are trimmed on insert).
- ``presence``: when each device was last heard from, and whether (since when) it is offline.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fleet.health import presence
from fleet.store.connection import Connection, Database, greatest
from fleet.store.schema import transaction
from wardsight import wire

SAMPLES_PER_DEVICE = 1440  # one day at one heartbeat a minute
HOT_C = 80.0  # a CPU or accelerator temperature at or above this marks the device degraded
# The lowest rate of frames analysed per second at which the apps are known to work: the fall rule was evaluated on
# the labelled clips at 5 fps and holds there (README, "Measured fall figures": every fall to the floor alerted,
# no false alert; tests/device/test_fall_postures.py scripts each posture at 10 and 5 fps). Below it the device
# counts as degraded ("slow"): falls may be alerted late or missed.
MIN_APP_FPS = 5.0
# The agent's fps is its average since it started, and its first heartbeat goes out before the first frame: a
# heartbeat from the agent's first seconds says nothing about its rate yet.
FPS_SETTLE_S = 10.0
# Warnings that have a degraded reason of their own (the agent also lists them among its warnings).
OWN_REASON_WARNINGS = frozenset({"accelerator_fallback"})
POSE_STAGES = ("pose", "inference")  # the stage_ms key charted as pose time: the first one present

LATEST_COLUMNS = (
    "device_id",
    "received_at",
    "clock_skew_s",
    "sent_at",
    "uptime_s",
    "agent_version",
    "accelerator",
    "accelerator_configured",
    "cpu_temp_c",
    "accelerator_temp_c",
    "mem_used_mb",
    "mem_total_mb",
    "fps",
    "frames_processed",
    "frames_dropped",
    "frames_dropped_delta",
    "outbox_pending",
    "stage_ms",
    "models",
    "warnings",
    "updates",
    "privacy_mode",
    "system_slot",
    "system_version",
    "system_sbom_sha256",
    "system_compatible",
)
SAMPLE_COLUMNS = (
    "received_at",
    "fps",
    "cpu_temp_c",
    "mem_used_mb",
    "frames_processed",
    "frames_dropped",
    "pose_ms",
)


class UnknownDeviceError(LookupError):
    """The device id names no enrolled device."""


# ---- heartbeats ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _known_device(device_id: str) -> Iterator[None]:
    """The block's writes name ``device_id``; the foreign keys to ``devices`` refuse an unknown one: then
    :class:`UnknownDeviceError` (no statement of its own: this runs on every device request)."""
    try:
        yield
    except sqlite3.IntegrityError as exc:  # (PostgreSQL's is a subclass: fleet.store.pg)
        if "foreign key" not in str(exc).lower():  # SQLite: "FOREIGN KEY constraint failed"; PostgreSQL: "violates
            raise  # foreign key constraint ..."; any other constraint is not about the device
        raise UnknownDeviceError(f"no device {device_id!r}") from None


def _mark_heard(conn: Connection, device_id: str, now: float) -> None:
    # While a device is offline, the first contact is kept as returned_at for the monitor to announce.
    conn.execute(
        "INSERT INTO presence (device_id, last_heard_at) VALUES (?, ?) ON CONFLICT (device_id) DO UPDATE SET"
        " last_heard_at = excluded.last_heard_at,"
        " returned_at = CASE WHEN presence.offline_since IS NULL THEN NULL"
        " ELSE COALESCE(presence.returned_at, excluded.last_heard_at) END",
        [device_id, now],
    )


def mark_heard(db: Database, device_id: str, now: float) -> None:
    """Record that an authenticated request from ``device_id`` arrived at ``now`` (server clock)."""
    conn = db.conn
    with transaction(conn), _known_device(device_id):
        _mark_heard(conn, device_id, now)


def _dropped_since_previous(previous: tuple[Any, ...] | None, health: wire.Health) -> int:
    """Frames dropped since the previous heartbeat (0 for a first heartbeat: no baseline yet)."""
    if previous is None:
        return 0
    prev_uptime, prev_dropped = previous
    if health.uptime_s < prev_uptime or health.frames_dropped < prev_dropped:  # the agent restarted
        return health.frames_dropped
    return int(health.frames_dropped - prev_dropped)


def _heartbeat_row(health: wire.Health, now: float, previous: tuple[Any, ...] | None) -> dict[str, Any]:
    """The ``health_latest`` row of ``health`` received at ``now`` (with ``pose_ms`` for its sample)."""
    return {
        "device_id": health.device_id,
        "received_at": now,
        "clock_skew_s": health.sent_at - now,
        "sent_at": health.sent_at,
        "uptime_s": health.uptime_s,
        "agent_version": health.agent_version,
        "accelerator": health.accelerator,
        "accelerator_configured": health.accelerator_configured,
        "cpu_temp_c": health.cpu_temp_c,
        "accelerator_temp_c": health.accelerator_temp_c,
        "mem_used_mb": health.mem_used_mb,
        "mem_total_mb": health.mem_total_mb,
        "fps": health.fps,
        "frames_processed": health.frames_processed,
        "frames_dropped": health.frames_dropped,
        "frames_dropped_delta": _dropped_since_previous(previous, health),
        "outbox_pending": health.outbox_pending,
        "stage_ms": json.dumps(health.stage_ms, sort_keys=True),
        "models": json.dumps(health.models, sort_keys=True),
        "warnings": json.dumps(health.warnings),
        "updates": health.updates,
        "privacy_mode": health.privacy_mode,
        "system_slot": health.system.slot if health.system else None,
        "system_version": health.system.version if health.system else None,
        "system_sbom_sha256": health.system.sbom_sha256 if health.system else None,
        "system_compatible": health.system.compatible if health.system else None,
        "pose_ms": next((health.stage_ms[k] for k in POSE_STAGES if k in health.stage_ms), None),
    }


def record_heartbeat(
    db: Database,
    device_id: str,
    health: wire.Health,
    now: float,
    *,
    keep: int = SAMPLES_PER_DEVICE,
    heard: bool = False,
) -> None:
    """Store an authenticated device's heartbeat received at ``now``: latest state, a sample, and presence
    (``heard``: the caller's transaction has already recorded this request as a sign of life, :func:`mark_heard`).

    Raises ``ValueError`` if the heartbeat names another device, :class:`UnknownDeviceError` if the device
    is not enrolled. A device that was offline is announced back online by the next presence check.
    """
    if health.device_id != device_id:
        raise ValueError(f"heartbeat for {health.device_id!r} sent by device {device_id!r}")
    if keep < 1:
        raise ValueError("keep must be at least 1")
    conn = db.conn
    with transaction(conn), _known_device(device_id):
        previous = conn.execute(
            "SELECT uptime_s, frames_dropped FROM health_latest WHERE device_id = ?", [device_id]
        ).fetchone()
        row = _heartbeat_row(health, now, previous)
        conn.execute(
            f"INSERT INTO health_latest ({', '.join(LATEST_COLUMNS)})"  # noqa: S608 - our constants
            f" VALUES ({', '.join(':' + c for c in LATEST_COLUMNS)}) ON CONFLICT (device_id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in LATEST_COLUMNS[1:]),
            row,
        )
        conn.execute(
            f"INSERT INTO health_samples (device_id, {', '.join(SAMPLE_COLUMNS)})"  # noqa: S608 - our constants
            f" VALUES (:device_id, {', '.join(':' + c for c in SAMPLE_COLUMNS)})",
            row,
        )
        # Keep the newest ``keep`` samples of this device, newest by arrival (not by a clock that may step).
        conn.execute(
            "DELETE FROM health_samples WHERE device_id = ? AND id <= ("
            " SELECT id FROM health_samples WHERE device_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            [device_id, device_id, keep],
        )
        if not heard:
            _mark_heard(conn, device_id, now)


def is_slow(latest: dict[str, Any]) -> bool:
    """Whether the apps analyse fewer than :data:`MIN_APP_FPS` frames a second (unknown rate, or an agent in
    its first :data:`FPS_SETTLE_S` seconds: not slow)."""
    fps = latest.get("fps")
    return fps is not None and fps < MIN_APP_FPS and (latest.get("uptime_s") or 0.0) >= FPS_SETTLE_S


def degraded_reasons(latest: dict[str, Any]) -> list[str]:
    """Why a device's latest heartbeat (a :func:`device_health` dict) counts as degraded; empty if it does not.

    - ``slow``: the apps analyse fewer than :data:`MIN_APP_FPS` frames a second (:func:`is_slow`);
    - ``warnings``: the agent reports warnings (other than those with a reason of their own);
    - ``accelerator_fallback``: the configured accelerator was lost and the CPU took over;
    - ``hot``: a CPU or accelerator temperature of :data:`HOT_C` or more.

    Dropped frames alone are not a reason: a camera or a file delivering faster than the agent analyses (a few
    frames of a 30 fps file on a 2-core machine) drops the surplus, which is harmless while the apps still get
    :data:`MIN_APP_FPS`. ``frames_dropped_delta`` stays in the heartbeat for the console and the charts.
    """
    reasons = []
    if is_slow(latest):
        reasons.append("slow")
    if any(w not in OWN_REASON_WARNINGS for w in latest.get("warnings") or ()):
        reasons.append("warnings")
    configured = latest.get("accelerator_configured")
    if configured and configured != latest.get("accelerator"):
        reasons.append("accelerator_fallback")
    temps = (latest.get("cpu_temp_c"), latest.get("accelerator_temp_c"))
    if any(t is not None and t >= HOT_C for t in temps):
        reasons.append("hot")
    return reasons


def decode_latest(row: dict[str, Any]) -> dict[str, Any]:
    """A ``health_latest`` row with its JSON columns decoded, its ``degraded`` reasons and the limits they were
    judged against (``min_app_fps``, ``hot_c``: for the console to say them) added (in place)."""
    for key in ("stage_ms", "models", "warnings"):
        row[key] = json.loads(row[key])
    row["degraded"] = degraded_reasons(row)
    row["min_app_fps"], row["hot_c"] = MIN_APP_FPS, HOT_C
    return row


def device_health(db: Database, device_id: str) -> dict[str, Any] | None:
    """The device's latest heartbeat with its presence; None if it has never sent one."""
    cur = db.conn.execute(
        f"SELECT {', '.join('h.' + c for c in LATEST_COLUMNS)}, p.last_heard_at, p.offline_since"  # noqa: S608
        " FROM health_latest h LEFT JOIN presence p ON p.device_id = h.device_id WHERE h.device_id = ?",
        [device_id],
    )
    row = cur.fetchone()
    if row is None:
        return None
    return decode_latest(dict(zip([d[0] for d in cur.description], row, strict=True)))


def latest_rows(db: Database) -> dict[str, dict[str, Any]]:
    """Every device's ``health_latest`` row (JSON columns not decoded), by device id."""
    cur = db.conn.execute(f"SELECT {', '.join(LATEST_COLUMNS)} FROM health_latest")  # noqa: S608
    return {r["device_id"]: r for r in (dict(zip(LATEST_COLUMNS, row, strict=True)) for row in cur)}


def privacy_modes(db: Database) -> dict[str, str | None]:
    """Each device's privacy mode as its latest heartbeat said, by device id; devices never heard from are absent,
    and None is an agent that does not say."""
    return dict(db.conn.execute("SELECT device_id, privacy_mode FROM health_latest").fetchall())


SYSTEM_COLUMNS = ("system_slot", "system_version", "system_sbom_sha256", "system_compatible")


def system_of(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """The system a ``health_latest`` row reports, as ``{"slot", "version", "sbom_sha256"}``; None when it does not
    say (or there is no row)."""
    if row is None or row.get("system_version") is None:
        return None
    return {
        "slot": row["system_slot"],
        "version": row["system_version"],
        "sbom_sha256": row["system_sbom_sha256"],
        "compatible": row.get("system_compatible"),
    }


def systems(db: Database, device_id: str | None = None) -> dict[str, dict[str, Any] | None]:
    """Each device's system (:func:`system_of`) as its latest heartbeat said (only ``device_id``'s when given), by
    device id; devices never heard from are absent."""
    sql = f"SELECT device_id, {', '.join(SYSTEM_COLUMNS)} FROM health_latest"  # noqa: S608 - our constants
    cur = db.conn.execute(sql, []) if device_id is None else db.conn.execute(sql + " WHERE device_id = ?", [device_id])
    return {row[0]: system_of(dict(zip(SYSTEM_COLUMNS, row[1:], strict=True))) for row in cur.fetchall()}


def privacy_mode(db: Database, device_id: str) -> str | None:
    """The device's privacy mode as its latest heartbeat said; None if it did not say or never sent one."""
    row = db.conn.execute("SELECT privacy_mode FROM health_latest WHERE device_id = ?", [device_id]).fetchone()
    return row[0] if row is not None else None


def health_history(db: Database, device_id: str, since: float, limit: int = 500) -> list[dict[str, Any]]:
    """The device's newest ``limit`` samples received at or after ``since``, oldest first."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    cur = db.conn.execute(
        f"SELECT {', '.join(SAMPLE_COLUMNS)} FROM health_samples"  # noqa: S608 - our constants
        " WHERE device_id = ? AND received_at >= ? ORDER BY id DESC LIMIT ?",
        [device_id, since, limit],
    )
    rows = [dict(zip(SAMPLE_COLUMNS, r, strict=True)) for r in cur.fetchall()]
    rows.reverse()
    return rows


# ---- presence -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceRow:
    record: presence.PresenceRecord
    room: str


def device_rows(db: Database) -> list[DeviceRow]:
    """Every enrolled device's presence record and room, ordered by device id."""
    # Silence counts from enrollment, or from the last status change (an approval, a release) if later.
    since = greatest(db, "d.enrolled_at", "COALESCE(d.status_changed_at, d.enrolled_at)")
    cur = db.conn.execute(
        f"SELECT d.id, d.room, {since},"  # noqa: S608 - our constants
        " COALESCE(d.status, 'active'), p.last_heard_at, p.offline_since, p.returned_at"
        " FROM devices d LEFT JOIN presence p ON p.device_id = d.id ORDER BY d.id"
    )
    return [
        DeviceRow(presence.PresenceRecord(dev, enrolled, heard, offline, back, stat), room)
        for dev, room, enrolled, stat, heard, offline, back in cur.fetchall()
    ]


def presence_rows(db: Database) -> dict[str, dict[str, Any]]:
    """The ``presence`` table by device id (devices never heard from and never offline have no row)."""
    cur = db.conn.execute("SELECT device_id, last_heard_at, offline_since, returned_at FROM presence")
    return {row[0]: {"last_heard_at": row[1], "offline_since": row[2], "returned_at": row[3]} for row in cur}


def apply_transition(conn: Connection, t: presence.Transition) -> None:
    """Record an announced transition: the device is offline since ``t.silent_since``, or back online."""
    with transaction(conn):
        if t.kind == "offline":
            conn.execute(
                "INSERT INTO presence (device_id, last_heard_at, offline_since) VALUES (?, NULL, ?)"
                " ON CONFLICT (device_id) DO UPDATE SET offline_since = excluded.offline_since, returned_at = NULL"
                " WHERE presence.offline_since IS NULL",
                [t.device_id, t.silent_since],
            )
        else:
            conn.execute(
                "UPDATE presence SET offline_since = NULL, returned_at = NULL WHERE device_id = ?"
                " AND offline_since = ? AND returned_at = ?",
                [t.device_id, t.silent_since, t.at],
            )
