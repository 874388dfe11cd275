"""The scene snapshots, in memory only: the latest per device (each post overwrites the last; nothing is written
to disk), forgotten :data:`SNAPSHOT_TTL_SECONDS` after it arrived; the zones and privacy regions a device last
sent (kept until it sends others); and when a console last asked for each device's scene."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fleet.web.appkeys import CLOCK_KEY
from wardsight.wire import SceneSnapshot

WATCH_SECONDS = 30.0
SNAPSHOT_TTL_SECONDS = 60.0


@dataclass
class _Latest:
    snapshot: SceneSnapshot
    received_at: float


@dataclass
class Layout:
    zones: list[dict[str, Any]] | None = None
    privacy_regions: list[dict[str, Any]] | None = None
    received_at: float | None = None


@dataclass
class Scenes:
    latest: dict[str, _Latest] = field(default_factory=dict)
    layout: dict[str, Layout] = field(default_factory=dict)
    watched: dict[str, float] = field(default_factory=dict)  # device id -> when a console last asked

    def keep(self, device_id: str, snapshot: SceneSnapshot, now: float) -> None:
        """Keep ``snapshot`` as the device's latest, and the layout it carries (if any)."""
        self.latest[device_id] = _Latest(snapshot, now)
        if snapshot.zones is not None or snapshot.privacy_regions is not None:
            layout = self.layout.setdefault(device_id, Layout())
            if snapshot.zones is not None:
                layout.zones = [z.model_dump(mode="json") for z in snapshot.zones]
            if snapshot.privacy_regions is not None:
                layout.privacy_regions = [r.model_dump(mode="json") for r in snapshot.privacy_regions]
            layout.received_at = now


SCENES_KEY = web.AppKey("scenes", Scenes)


def preview_wanted(app: web.Application, device_id: str) -> bool:
    """Whether a console asked for this device's scene within the last :data:`WATCH_SECONDS` (server clock)."""
    scenes = app.get(SCENES_KEY)
    if scenes is None:
        return False
    asked = scenes.watched.get(device_id)
    return asked is not None and 0 <= app[CLOCK_KEY]() - asked < WATCH_SECONDS


def latest_snapshot(app: web.Application, device_id: str) -> tuple[SceneSnapshot, float] | None:
    """The device's latest snapshot and when it arrived, if it is fresher than :data:`SNAPSHOT_TTL_SECONDS`."""
    scenes = app[SCENES_KEY]
    latest = scenes.latest.get(device_id)
    if latest is None:
        return None
    if not 0 <= app[CLOCK_KEY]() - latest.received_at < SNAPSHOT_TTL_SECONDS:
        del scenes.latest[device_id]
        return None
    return latest.snapshot, latest.received_at
