"""Gathering one device's commissioning facts (:class:`fleet.commissioning.checks.Facts`) from what the server
already has: the latest heartbeat and health samples, the configuration the device last applied, its
occupancy reports, the live view's people and layout (in memory, :mod:`fleet.scene.store`), its test alerts and
the webhooks. Nothing here decides; nothing here holds a pixel (the sources are numbers and polygons)."""

from __future__ import annotations

import logging
import tomllib

from aiohttp import web
from pydantic import ValidationError

from fleet.commissioning import store
from fleet.commissioning.checks import (
    DEFAULT_EXPECTED_FPS,
    HEARTBEAT_FRESH_S,
    PEOPLE_WINDOW_S,
    Facts,
    Heartbeat,
    Layout,
    People,
    Sample,
    TestAlert,
)
from fleet.health import store as health
from fleet.scene.store import SCENES_KEY, latest_snapshot
from fleet.web.appkeys import DB_KEY
from wardsight.device_config import DeviceConfig

log = logging.getLogger("wardsight.fleet.commissioning")

ROOM_COUNT_LOOKBACK_S = 12 * 3600.0  # a room count older than this is not taken as "someone is there now"
RATED_SOURCES = ("picamera", "imx500")  # sources whose frame rate the configuration sets (source.fps)


def _config(applied: store.AppliedConfig | None, device_id: str) -> DeviceConfig | None:
    """The applied configuration, parsed; None if there is none or it no longer validates (schema changed)."""
    if applied is None:
        return None
    try:
        return DeviceConfig.model_validate(tomllib.loads(applied.text))
    except (tomllib.TOMLDecodeError, ValidationError, RecursionError):
        log.warning("device %s: the configuration it last applied no longer validates; ignored", device_id)
        return None


def _layout(app: web.Application, device_id: str, applied: store.AppliedConfig | None,
            config: DeviceConfig | None) -> Layout | None:  # fmt: skip
    """The newer of the device's own report (live view) and the configuration it applied."""
    candidates = []
    scenes = app.get(SCENES_KEY)
    reported = scenes.layout.get(device_id) if scenes is not None else None
    if reported is not None and reported.received_at is not None:
        zones, regions = len(reported.zones or ()), len(reported.privacy_regions or ())
        candidates.append(Layout(zones, regions, "device", reported.received_at))
    if applied is not None and config is not None:
        candidates.append(Layout(len(config.zones), len(config.privacy_regions), "config", applied.applied_at))
    return max(candidates, key=lambda c: c.at, default=None)


def _people(app: web.Application, device_id: str, now: float) -> People:
    db = app[DB_KEY].db
    seen = store.last_seen_in_view(db, device_id, now - PEOPLE_WINDOW_S)
    snapshot = latest_snapshot(app, device_id) if app.get(SCENES_KEY) is not None else None
    if snapshot is not None and snapshot[0].people:
        seen = max(seen or snapshot[1], snapshot[1])
    return People(seen, store.room_count(db, device_id, now - ROOM_COUNT_LOOKBACK_S))


def _heartbeat(app: web.Application, device_id: str) -> tuple[Heartbeat | None, tuple[Sample, ...]]:
    db = app[DB_KEY].db
    latest = health.device_health(db, device_id)
    if latest is None:
        return None, ()
    beat = Heartbeat(latest["received_at"], latest["clock_skew_s"], latest["fps"])
    rows = health.health_history(db, device_id, beat.received_at - HEARTBEAT_FRESH_S, limit=2)
    samples = tuple(Sample(r["received_at"], r["frames_processed"], r["frames_dropped"]) for r in rows)
    return beat, samples


def _test_alert(app: web.Application, device_id: str) -> TestAlert | None:
    db = app[DB_KEY].db
    latest = store.latest_test_alert(db, device_id)
    if latest is None:
        return None
    event_id, sent_at = latest
    return TestAlert(event_id, sent_at, tuple(store.deliveries(db, event_id)))


def gather(app: web.Application, device_id: str, now: float) -> Facts:
    """Everything the checks need about ``device_id`` as of ``now`` (server clock)."""
    db = app[DB_KEY].db
    applied = store.applied_config(db, device_id)
    config = _config(applied, device_id)
    heartbeat, samples = _heartbeat(app, device_id)
    rated = config is not None and config.source.kind in RATED_SOURCES
    return Facts(
        now=now,
        heartbeat=heartbeat,
        samples=samples,
        expected_fps=config.source.fps if rated and config is not None else DEFAULT_EXPECTED_FPS,
        expected_from="config" if rated else "default",
        people=_people(app, device_id, now),
        layout=_layout(app, device_id, applied, config),
        enabled_webhooks=store.enabled_webhooks(db),
        test_alert=_test_alert(app, device_id),
    )
