"""The offline monitor: announce devices that went silent or came back.

A background task (added by :func:`fleet.health.setup`) runs :func:`check_presence` every
``offline_check_seconds``; each transition decided by :mod:`fleet.health.presence` is stored as a ``system``
event (``device_offline`` / ``device_online``) through :func:`fleet.intake.store`, so it reaches the
event list and the webhooks like any alert. Event ids are derived from the transition, so a check that
is interrupted and repeated stores each announcement once. Silence from before the monitor started
(:func:`watching_since`) is not held against a device.

With several workers on PostgreSQL one of them runs the check (:func:`fleet.web.tasks.periodic`), and another
takes it over if it dies. A new leader does not start watching anew: every worker was storing the heartbeats it
received all along, so silence before the takeover is real and counts (starting anew would hold back every
announcement by up to a grace period at each takeover, and for as long as the lead kept moving). What does not
count is silence while this worker was cut off from the database (its leader connection broke: a restart, a
fail-over): heartbeats could not be stored then, so the watch starts again when contact is back, as on a start-up,
instead of announcing the whole fleet at once.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator

from aiohttp import web
from pydantic import ValidationError

from fleet import intake
from fleet.alerts.store import change_state, get_alert
from fleet.health import presence, store
from fleet.health.metrics import METRICS_KEY
from fleet.store.db import FleetDB
from fleet.web import events
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY
from fleet.web.tasks import leadership_of, periodic
from wardsight import wire

log = logging.getLogger("wardsight.fleet.health")

_EVENT_NAMESPACE = uuid.UUID("5d0f6f1e-3c0b-4b8e-9a57-0c7f2f4f1a10")  # for deterministic announcement ids


class MonitorState:
    """When the monitor started watching (set on start-up)."""

    started_at: float | None = None


MONITOR_KEY = web.AppKey("health_monitor", MonitorState)


def watching_since(app: web.Application) -> float | None:
    """Since when the app's monitor has been watching (None if it has no monitor or it has not started): its
    start-up, or later if the worker lost contact with the database since (PostgreSQL; see the module's notes)."""
    monitor = app.get(MONITOR_KEY)
    if monitor is None or monitor.started_at is None:
        return None
    leadership = leadership_of(app)
    contact = None if leadership is None else leadership.contact_since()
    return monitor.started_at if contact is None else max(monitor.started_at, contact)


def _announcement_id(t: presence.Transition) -> str:
    """The same transition always gets the same event id (an offline episode starts at ``silent_since``)."""
    name = f"{t.device_id}|{t.kind}|{t.silent_since!r}" + (f"|{t.at!r}" if t.kind == "online" else "")
    return str(uuid.uuid5(_EVENT_NAMESPACE, name))


def _resolve_offline_alert(fleet: FleetDB, t: presence.Transition, now: float) -> None:
    """The device is back: its open "device offline" alert for this silence is resolved by the system."""
    offline_id = _announcement_id(dataclasses.replace(t, kind="offline"))
    alert = get_alert(fleet.db, offline_id)
    if alert is not None and alert["state"] != "resolved":
        change_state(fleet.db, offline_id, "resolved", actor="system", now=now, note="the device came back")


def _announce(fleet: FleetDB, t: presence.Transition, room: str, now: float) -> bool:
    """Store the transition's event and record it; False if no valid event can name the device (recorded anyway)."""
    offline = t.kind == "offline"
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
        store.apply_transition(fleet.db.conn, t)
        return False
    # The event first: if we stop before the state is updated, the next check derives the same id again.
    intake.store(fleet, event, now)
    store.apply_transition(fleet.db.conn, t)
    if not offline:
        _resolve_offline_alert(fleet, t, now)
    level = logging.WARNING if offline else logging.INFO
    log.log(level, "device %s (room %s) is %s after %.0f s of silence", t.device_id, room, t.kind, t.silent_s)
    return True


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
            watch_start = watching_since(target)
    else:
        fleet = target
        grace = presence.DEFAULT_GRACE_S if grace_s is None else grace_s
    rows = {row.record.device_id: row for row in store.device_rows(fleet.db)}
    due = presence.transitions((r.record for r in rows.values()), now, grace, watch_start=watch_start)
    announced = [t for t in due if _announce(fleet, t, rows[t.device_id].room, now)]
    if isinstance(target, web.Application) and announced:
        metrics = target.get(METRICS_KEY)
        if metrics is not None:
            for t in announced:
                metrics.presence_transitions.labels(kind=t.kind).inc()
        events.announce(target, None)
    return announced


async def note_watch_start(app: web.Application) -> AsyncIterator[None]:
    """A cleanup context: the monitor watches from the app's start-up (add it before :data:`run_monitor`)."""
    app[MONITOR_KEY].started_at = app[CLOCK_KEY]()
    yield


def _check(app: web.Application) -> None:
    check_presence(app, app[CLOCK_KEY]())


# A cleanup context: check every offline_check_seconds; a locked database or a bad row must not end the monitor.
run_monitor = periodic(
    _check,
    lambda app: app[CONFIG_KEY].offline_check_seconds,
    name="wardsight-offline-monitor",
    what="offline check",
)
