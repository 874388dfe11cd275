"""The fleet overview the console shows: every device with its latest heartbeat, presence, privacy mode, system
and a display state (online, offline, degraded, pending, quarantined, revoked, never_seen), and the fleet summary."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fleet.health import presence, store
from fleet.health.monitor import watching_since
from fleet.health.privacy import privacy_matches
from fleet.health.summary import fleet_summary
from fleet.health.system import system_matches
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY


def _display_state(
    device: dict[str, Any],
    rec: presence.PresenceRecord,
    latest: dict[str, Any] | None,
    now: float,
    grace: float,
    watch_start: float | None,
) -> str:
    status = device.get("status") or "active"
    if status != "active":
        return str(status)
    if rec.last_heard_at is None and latest is None:
        return "never_seen"
    if presence.is_offline(rec, now, grace, watch_start=watch_start):
        return "offline"
    if latest is not None and latest.get("degraded"):
        return "degraded"
    return "online"


def fleet_overview(
    app: web.Application, privacy_mode: str | None = None, system_version: str | None = None
) -> dict[str, Any]:
    """Every device (only those whose privacy mode passes ``privacy_mode``, a filter of
    :data:`fleet.health.privacy.PRIVACY_FILTERS`, and whose system runs ``system_version``, when given) and the
    summary of the whole fleet."""
    fleet, config, now = app[DB_KEY], app[CONFIG_KEY], app[CLOCK_KEY]()
    db = fleet.db
    grace = config.offline_grace_seconds
    # Silence from before the server started is not held against a device.
    watch_start = watching_since(app)
    heard = store.presence_rows(db)
    devices = []
    for device in fleet.list_devices():
        latest = store.device_health(db, device["id"])
        mode = latest["privacy_mode"] if latest is not None else None
        system = store.system_of(latest)
        if not (privacy_matches(mode, privacy_mode) and system_matches(system, system_version)):
            continue
        p = heard.get(device["id"], {})
        rec = presence.PresenceRecord(
            device["id"],
            device["enrolled_at"],
            p.get("last_heard_at"),
            p.get("offline_since"),
            p.get("returned_at"),
            device.get("status") or "active",
        )
        state = _display_state(device, rec, latest, now, grace, watch_start)
        offline_since = p.get("offline_since")
        if state == "offline" and offline_since is None:
            offline_since = rec.silent_since
        devices.append(
            {
                **device,
                "state": state,
                "last_heard_at": p.get("last_heard_at"),
                "offline_since": offline_since if state == "offline" else None,
                "privacy_mode": mode,  # as the latest heartbeat said; None: not reported
                "system": system,  # {slot, version, sbom_sha256} as the latest heartbeat said; None: not reported
                "health": latest,
            }
        )
    summary = fleet_summary(db, now, grace_s=grace, watch_start=watch_start)
    # offline_after_s: the silence after which a device counts as offline, so the console can tell stale readings.
    return {"now": now, "offline_after_s": grace, "summary": summary, "devices": devices}
