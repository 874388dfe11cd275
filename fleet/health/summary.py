"""The fleet at a glance, for the console and the metrics: devices by status; active devices online, offline
and degraded."""

from __future__ import annotations

from typing import Any

from fleet.health import presence, store
from fleet.store.connection import Database

DEVICE_STATUSES = ("pending", "active", "quarantined", "revoked")


def fleet_summary(
    db: Database,
    now: float,
    *,
    grace_s: float = presence.DEFAULT_GRACE_S,
    watch_start: float | None = None,
) -> dict[str, Any]:
    """Counts for the console and metrics: devices by status; active devices online, offline and degraded.

    Degraded counts online devices whose latest heartbeat gives a reason (:func:`fleet.health.store.degraded_reasons`):
    the apps analysing fewer than :data:`fleet.health.store.MIN_APP_FPS` frames a second (``slow``), warnings, an
    accelerator fallback, or a temperature of :data:`fleet.health.store.HOT_C` or more. Frames dropped while the
    apps keep their rate are not a reason.
    """
    rows = store.device_rows(db)
    latest = store.latest_rows(db)
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
            reasons = store.degraded_reasons(store.decode_latest(latest[rec.device_id]))
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
