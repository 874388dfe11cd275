"""Device heartbeats, offline detection and Prometheus metrics.

Storage (this module's tables, keyed by device and removed with it):

- ``health_latest``: the last heartbeat of each device, flattened, with the clock skew it showed
  (device ``sent_at`` minus server ``received_at``; positive means the device clock is ahead).
- ``health_samples``: a few numbers per heartbeat for charts, at most :data:`SAMPLES_PER_DEVICE` per
  device (the oldest are trimmed on insert).
- ``presence``: when each device was last heard from, and whether (since when) it is offline.

The offline monitor (a background task started by :func:`setup`) runs :func:`check_presence` every
``offline_check_seconds``; each transition decided by :mod:`fleet.presence` is stored as a ``system``
event (``device_offline`` / ``device_online``) through :func:`fleet.intake.store`, so it reaches the
event list and the webhooks like any alert. Event ids are derived from the transition, so a check that
is interrupted and repeated stores each announcement once.

``GET /metrics`` serves the app's own Prometheus registry (never the process-global one) to API
tokens with the ``viewer`` role.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import sqlite_utils
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from pydantic import ValidationError

from fleet import intake, presence
from fleet.auth.operator import require
from fleet.store.db import FleetDB
from fleet.store.schema import transaction
from fleet.web import events
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY
from fleet.web.middleware import REJECTION_LISTENERS_KEY
from fleet.web.tasks import running
from wardsight import wire

log = logging.getLogger("wardsight.fleet.health")

SAMPLES_PER_DEVICE = 1440  # one day at one heartbeat a minute
HOT_C = 80.0  # a CPU or accelerator temperature at or above this marks the device degraded
DEFAULT_GRACE_S = 90.0
POSE_STAGES = ("pose", "inference")  # the stage_ms key charted as pose time: the first one present
DEVICE_STATUSES = ("pending", "active", "quarantined", "revoked")
_EVENT_NAMESPACE = uuid.UUID("5d0f6f1e-3c0b-4b8e-9a57-0c7f2f4f1a10")  # for deterministic announcement ids

_LATEST_COLUMNS = (
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
)
_SAMPLE_COLUMNS = (
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


# ---- storage ----------------------------------------------------------------------------------------


def _require_device(conn: sqlite3.Connection, device_id: str) -> None:
    if conn.execute("SELECT 1 FROM devices WHERE id = ?", [device_id]).fetchone() is None:
        raise UnknownDeviceError(f"no device {device_id!r}")


def _mark_heard(conn: sqlite3.Connection, device_id: str, now: float) -> None:
    # While a device is offline, the first contact is kept as returned_at for the monitor to announce.
    conn.execute(
        "INSERT INTO presence (device_id, last_heard_at) VALUES (?, ?) ON CONFLICT (device_id) DO UPDATE SET"
        " last_heard_at = excluded.last_heard_at,"
        " returned_at = CASE WHEN presence.offline_since IS NULL THEN NULL"
        " ELSE COALESCE(presence.returned_at, excluded.last_heard_at) END",
        [device_id, now],
    )


def mark_heard(db: sqlite_utils.Database, device_id: str, now: float) -> None:
    """Record that an authenticated request from ``device_id`` arrived at ``now`` (server clock)."""
    conn = db.conn
    with transaction(conn):
        _require_device(conn, device_id)
        _mark_heard(conn, device_id, now)


def _dropped_since_previous(previous: tuple[Any, ...] | None, health: wire.Health) -> int:
    """Frames dropped since the previous heartbeat (0 for a first heartbeat: no baseline yet)."""
    if previous is None:
        return 0
    prev_uptime, prev_dropped = previous
    if health.uptime_s < prev_uptime or health.frames_dropped < prev_dropped:  # the agent restarted
        return health.frames_dropped
    return int(health.frames_dropped - prev_dropped)


def record_heartbeat(
    db: sqlite_utils.Database, device_id: str, health: wire.Health, now: float, *, keep: int = SAMPLES_PER_DEVICE
) -> None:
    """Store an authenticated device's heartbeat received at ``now``: latest state, a sample, and presence.

    Raises ``ValueError`` if the heartbeat names another device, :class:`UnknownDeviceError` if the device
    is not enrolled. A device that was offline is announced back online by the next presence check.
    """
    if health.device_id != device_id:
        raise ValueError(f"heartbeat for {health.device_id!r} sent by device {device_id!r}")
    if keep < 1:
        raise ValueError("keep must be at least 1")
    pose_ms = next((health.stage_ms[k] for k in POSE_STAGES if k in health.stage_ms), None)
    conn = db.conn
    with transaction(conn):
        _require_device(conn, device_id)
        previous = conn.execute(
            "SELECT uptime_s, frames_dropped FROM health_latest WHERE device_id = ?", [device_id]
        ).fetchone()
        row: dict[str, Any] = {
            "device_id": device_id,
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
            "pose_ms": pose_ms,
        }
        conn.execute(
            f"INSERT OR REPLACE INTO health_latest ({', '.join(_LATEST_COLUMNS)})"  # noqa: S608 - our constants
            f" VALUES ({', '.join(':' + c for c in _LATEST_COLUMNS)})",
            row,
        )
        conn.execute(
            f"INSERT INTO health_samples (device_id, {', '.join(_SAMPLE_COLUMNS)})"  # noqa: S608 - our constants
            f" VALUES (:device_id, {', '.join(':' + c for c in _SAMPLE_COLUMNS)})",
            row,
        )
        # Keep the newest ``keep`` samples of this device, newest by arrival (not by a clock that may step).
        conn.execute(
            "DELETE FROM health_samples WHERE device_id = ? AND id <= ("
            " SELECT id FROM health_samples WHERE device_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            [device_id, device_id, keep],
        )
        _mark_heard(conn, device_id, now)


def degraded_reasons(latest: dict[str, Any]) -> list[str]:
    """Why a device's latest heartbeat (a :func:`device_health` dict) counts as degraded; empty if it does not."""
    reasons = []
    if latest.get("warnings"):
        reasons.append("warnings")
    configured = latest.get("accelerator_configured")
    if configured and configured != latest.get("accelerator"):
        reasons.append("accelerator_fallback")
    if (latest.get("frames_dropped_delta") or 0) > 0:
        reasons.append("frames_dropping")
    temps = (latest.get("cpu_temp_c"), latest.get("accelerator_temp_c"))
    if any(t is not None and t >= HOT_C for t in temps):
        reasons.append("hot")
    return reasons


def _decode_latest(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("stage_ms", "models", "warnings"):
        row[key] = json.loads(row[key])
    row["degraded"] = degraded_reasons(row)
    return row


def device_health(db: sqlite_utils.Database, device_id: str) -> dict[str, Any] | None:
    """The device's latest heartbeat with its presence; None if it has never sent one."""
    cur = db.conn.execute(
        f"SELECT {', '.join('h.' + c for c in _LATEST_COLUMNS)}, p.last_heard_at, p.offline_since"  # noqa: S608
        " FROM health_latest h LEFT JOIN presence p ON p.device_id = h.device_id WHERE h.device_id = ?",
        [device_id],
    )
    row = cur.fetchone()
    if row is None:
        return None
    return _decode_latest(dict(zip([d[0] for d in cur.description], row, strict=True)))


def health_history(db: sqlite_utils.Database, device_id: str, since: float, limit: int = 500) -> list[dict[str, Any]]:
    """The device's newest ``limit`` samples received at or after ``since``, oldest first."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    cur = db.conn.execute(
        f"SELECT {', '.join(_SAMPLE_COLUMNS)} FROM health_samples"  # noqa: S608 - our constants
        " WHERE device_id = ? AND received_at >= ? ORDER BY id DESC LIMIT ?",
        [device_id, since, limit],
    )
    rows = [dict(zip(_SAMPLE_COLUMNS, r, strict=True)) for r in cur.fetchall()]
    rows.reverse()
    return rows


# ---- presence -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _DeviceRow:
    record: presence.PresenceRecord
    room: str


def _device_rows(db: sqlite_utils.Database) -> list[_DeviceRow]:
    # Silence counts from enrollment, or from the last status change (an approval, a release) if later.
    cur = db.conn.execute(
        "SELECT d.id, d.room, MAX(d.enrolled_at, COALESCE(d.status_changed_at, d.enrolled_at)),"
        " COALESCE(d.status, 'active'), p.last_heard_at, p.offline_since, p.returned_at"
        " FROM devices d LEFT JOIN presence p ON p.device_id = d.id ORDER BY d.id"
    )
    return [
        _DeviceRow(presence.PresenceRecord(dev, enrolled, heard, offline, back, stat), room)
        for dev, room, enrolled, stat, heard, offline, back in cur.fetchall()
    ]


def _announcement_id(t: presence.Transition) -> str:
    """The same transition always gets the same event id (an offline episode starts at ``silent_since``)."""
    name = f"{t.device_id}|{t.kind}|{t.silent_since!r}" + (f"|{t.at!r}" if t.kind == "online" else "")
    return str(uuid.uuid5(_EVENT_NAMESPACE, name))


def _apply(conn: sqlite3.Connection, t: presence.Transition) -> None:
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


def _resolve_offline_alert(db: sqlite_utils.Database, t: presence.Transition, now: float) -> None:
    """The device is back: its open "device offline" alert for this silence is resolved by the system."""
    from fleet import alerts_api  # alerts_api reads health; import late to keep the graph acyclic

    offline_id = _announcement_id(dataclasses.replace(t, kind="offline"))
    alert = alerts_api.get_alert(db, offline_id)
    if alert is not None and alert["state"] != "resolved":
        alerts_api.change_state(db, offline_id, "resolved", actor="system", now=now, note="the device came back")


def check_presence(
    target: web.Application | FleetDB,
    now: float,
    *,
    grace_s: float | None = None,
    watch_start: float | None = None,
) -> list[presence.Transition]:
    """Announce every device that went offline or came back, as of ``now``; return what was announced.

    ``target`` is the app (grace period from its config, silence counted from when its monitor started,
    and the webhook worker woken) or a bare :class:`FleetDB` (grace ``grace_s`` or 90 s).
    """
    if isinstance(target, web.Application):
        fleet = target[DB_KEY]
        grace = target[CONFIG_KEY].offline_grace_seconds if grace_s is None else grace_s
        if watch_start is None:
            watch_start = _watch_start(target)
    else:
        fleet = target
        grace = DEFAULT_GRACE_S if grace_s is None else grace_s
    rows = {row.record.device_id: row for row in _device_rows(fleet.db)}
    due = presence.transitions((r.record for r in rows.values()), now, grace, watch_start=watch_start)
    announced: list[presence.Transition] = []
    for t in due:
        offline = t.kind == "offline"
        room = rows[t.device_id].room
        try:
            event = wire.Event(
                event_id=_announcement_id(t),
                device_id=t.device_id,
                room=room,
                app="system",
                type="device_offline" if offline else "device_online",
                severity="warning" if offline else "info",
                time=now,
                data={"silent_s": round(t.silent_s, 3)},
            )
        except ValidationError as exc:  # e.g. a room stored before rooms were validated: record, don't block others
            log.error("device %s is %s but cannot be announced: %s", t.device_id, t.kind, exc.errors()[0]["msg"])
            _apply(fleet.db.conn, t)
            continue
        # The event first: if we stop before the state is updated, the next check derives the same id again.
        intake.store(fleet, event, now)
        _apply(fleet.db.conn, t)
        if not offline:
            _resolve_offline_alert(fleet.db, t, now)
        announced.append(t)
        level = logging.WARNING if offline else logging.INFO
        log.log(level, "device %s (room %s) is %s after %.0f s of silence", t.device_id, room, t.kind, t.silent_s)
    if isinstance(target, web.Application) and announced:
        metrics = target.get(METRICS_KEY)
        if metrics is not None:
            for t in announced:
                metrics.presence_transitions.labels(kind=t.kind).inc()
        events.announce(target, None)
    return announced


def fleet_summary(
    db: sqlite_utils.Database, now: float, *, grace_s: float = DEFAULT_GRACE_S, watch_start: float | None = None
) -> dict[str, Any]:
    """Counts for the console and metrics: devices by status; active devices online, offline and degraded.

    Degraded counts online devices whose latest heartbeat shows warnings, an accelerator fallback, frames
    dropped since the previous heartbeat, or a temperature of :data:`HOT_C` or more.
    """
    rows = _device_rows(db)
    latest = {
        r["device_id"]: r
        for r in (
            dict(zip(_LATEST_COLUMNS, row, strict=True))
            for row in db.conn.execute(f"SELECT {', '.join(_LATEST_COLUMNS)} FROM health_latest")  # noqa: S608
        )
    }
    by_status = dict.fromkeys(DEVICE_STATUSES, 0)
    online = offline = 0
    degraded: list[dict[str, Any]] = []
    for row in rows:
        rec = row.record
        status = rec.status or "active"
        by_status[status] = by_status.get(status, 0) + 1
        if not rec.announced:
            continue
        if presence.is_offline(rec, now, grace_s, watch_start=watch_start):
            offline += 1
            continue
        online += 1
        if rec.device_id in latest:
            reasons = degraded_reasons(_decode_latest(latest[rec.device_id]))
            if reasons:
                degraded.append({"device_id": rec.device_id, "room": row.room, "reasons": reasons})
    return {
        "now": now,
        "devices": len(rows),
        "by_status": by_status,
        "online": online,
        "offline": offline,
        "degraded": len(degraded),
        "degraded_devices": degraded,
    }


# ---- metrics --------------------------------------------------------------------------------------------


class Metrics:
    """The app's Prometheus registry and the counters other modules increment."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_ingested = Counter(
            "wardsight_events_ingested", "Device events stored.", ["app", "severity"], registry=r
        )
        self.requests_rejected = Counter(
            "wardsight_requests_rejected", "Requests refused with a 4xx.", ["status"], registry=r
        )
        self.heartbeats = Counter("wardsight_heartbeats", "Device heartbeats stored.", registry=r)
        self.webhook_attempts = Counter(
            "wardsight_webhook_attempts", "Webhook delivery attempts.", ["outcome"], registry=r
        )
        self.presence_transitions = Counter(
            "wardsight_presence_transitions", "Devices announced offline or back online.", ["kind"], registry=r
        )

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (version 0.0.4)."""
        return generate_latest(self.registry)


METRICS_KEY = web.AppKey("health_metrics", Metrics)


class _FleetCollector:
    """Gauges read from the database at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterable[Metric]:
        app = self._app
        fleet = app.get(DB_KEY)
        if fleet is None:  # not started (or already closed)
            return []
        db = fleet.db
        summary = fleet_summary(
            db,
            app[CLOCK_KEY](),
            grace_s=app[CONFIG_KEY].offline_grace_seconds,
            watch_start=_watch_start(app),
        )
        devices = GaugeMetricFamily("wardsight_devices", "Enrolled devices by status.", labels=["status"])
        for status, count in sorted(summary["by_status"].items()):
            devices.add_metric([status], count)
        out: list[Metric] = [devices]
        for key, text in (
            ("online", "Active devices heard from within the grace period."),
            ("offline", "Active devices silent for longer than the grace period."),
            ("degraded", "Online devices whose latest heartbeat shows a problem."),
        ):
            out.append(GaugeMetricFamily(f"wardsight_devices_{key}", text, value=summary[key]))
        if "webhook_deliveries" in db.table_names() and "status" in db["webhook_deliveries"].columns_dict:
            queue = GaugeMetricFamily(
                "wardsight_webhook_deliveries",
                "Webhook deliveries waiting (pending) or given up (dead).",
                labels=["status"],
            )
            counts = {"pending": 0, "dead": 0}
            for status, count in db.conn.execute(
                "SELECT status, COUNT(*) FROM webhook_deliveries WHERE status IN ('pending', 'dead') GROUP BY status"
            ):
                counts[str(status)] = count
            for status, count in sorted(counts.items()):
                queue.add_metric([status], count)
            out.append(queue)
        return out


async def metrics_endpoint(request: web.Request) -> web.Response:
    await require(request, "viewer")
    body = request.config_dict[METRICS_KEY].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


# ---- app wiring -----------------------------------------------------------------------------------------


class _Monitor:
    started_at: float | None = None


_MONITOR_KEY = web.AppKey("health_monitor", _Monitor)


def _watch_start(app: web.Application) -> float | None:
    monitor = app.get(_MONITOR_KEY)
    return None if monitor is None else monitor.started_at


def accept_heartbeat(app: web.Application, device_id: str, health: wire.Health) -> None:
    """What the heartbeat endpoint calls after authenticating ``device_id``: store it and count it."""
    record_heartbeat(app[DB_KEY].db, device_id, health, app[CLOCK_KEY]())
    app[METRICS_KEY].heartbeats.inc()


async def _run_monitor(app: web.Application) -> None:
    interval = app[CONFIG_KEY].offline_check_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            check_presence(app, app[CLOCK_KEY]())
        except Exception:  # a locked database or a bad row must not end the monitor
            log.exception("offline check failed")


async def _monitor_ctx(app: web.Application) -> AsyncIterator[None]:
    app[_MONITOR_KEY].started_at = app[CLOCK_KEY]()
    async with running(_run_monitor(app), "wardsight-offline-monitor"):
        yield


def _count_event(app: web.Application, event: wire.Event | None) -> None:
    if event is not None:  # a device's event (the server's own notes are announced without one)
        app[METRICS_KEY].events_ingested.labels(app=event.app, severity=event.severity).inc()


def setup(app: web.Application) -> None:
    """Add the metrics registry, ``GET /metrics`` and the offline monitor to ``app``."""
    metrics = Metrics()
    metrics.registry.register(_FleetCollector(app))
    app[METRICS_KEY] = metrics
    app[REJECTION_LISTENERS_KEY].append(lambda status: metrics.requests_rejected.labels(status=str(status)).inc())
    events.listen(app, _count_event)
    app[_MONITOR_KEY] = _Monitor()
    app.cleanup_ctx.append(_monitor_ctx)
    app.router.add_get("/metrics", metrics_endpoint)
