"""The zone editor's live room view: devices post privacy-safe scene snapshots while someone watches.

- ``POST /api/v1/device/scene`` (an authenticated device, JSON :class:`SceneSnapshot`): kept in memory,
  only the latest per device (each post overwrites the last; nothing is written to disk), and forgotten
  :data:`SNAPSHOT_TTL_SECONDS` after it arrived. The zones and privacy regions a snapshot carries are kept
  until the device sends others.
- ``GET /api/v1/devices/{id}/scene`` (operator): the latest snapshot's ``time``, ``frame_width``,
  ``frame_height`` (also as ``frame_size``) and ``people`` (``live`` false, ``people`` empty and the rest
  ``null`` when none is fresh), with the device's ``zones`` and ``privacy_regions`` (``null`` until the
  device has sent them). Each request also means
  "someone is watching": for :data:`WATCH_SECONDS` afterwards, replies to that device's heartbeats and scene
  posts carry ``WardSight-Preview: 1`` (:func:`preview_wanted`), and the device sends a snapshot every 2 s
  until they stop. The first request of a watching period is audited (``device.scene.watch``).

The header is added by a response hook (:func:`setup`) to successful ``POST /api/v1/device/heartbeat`` and
``/scene`` replies, whose device is the proof's signer (a 2xx there means the proof was verified).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fleet import audit, device_api

# The schema moves into the wire contract (wardsight.wire); until then it lives beside the device's sender.
from fleet.auth.operator import require
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.web.errors import RejectedError
from wardsight import wire
from wardsight.wire import MAX_SCENE_BYTES, PREVIEW_HEADER, PREVIEW_INTERVAL_SECONDS, SCENE_PATH, SceneSnapshot

log = logging.getLogger("wardsight.fleet.scene")

WATCH_SECONDS = 30.0
SNAPSHOT_TTL_SECONDS = 60.0
HEARTBEAT_PATH = device_api.DEVICE_PREFIX + "heartbeat"


@dataclass
class _Latest:
    snapshot: SceneSnapshot
    received_at: float


@dataclass
class _Layout:
    zones: list[dict[str, Any]] | None = None
    privacy_regions: list[dict[str, Any]] | None = None
    received_at: float | None = None


@dataclass
class _Scenes:
    latest: dict[str, _Latest] = field(default_factory=dict)
    layout: dict[str, _Layout] = field(default_factory=dict)
    watched: dict[str, float] = field(default_factory=dict)  # device id -> when a console last asked


SCENES_KEY = web.AppKey("scenes", _Scenes)


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


async def post_scene(request: web.Request) -> web.Response:
    body = await device_api.read_body(request, "application/json", MAX_SCENE_BYTES)
    verdict = await device_api.authenticate(request, body)
    snapshot = device_api.parse_body(SceneSnapshot, body, "scene")
    app, now = request.app, request.app[CLOCK_KEY]()
    scenes = app[SCENES_KEY]
    scenes.latest[verdict.device_id] = _Latest(snapshot, now)
    if snapshot.zones is not None or snapshot.privacy_regions is not None:
        layout = scenes.layout.setdefault(verdict.device_id, _Layout())
        if snapshot.zones is not None:
            layout.zones = [z.model_dump(mode="json") for z in snapshot.zones]
        if snapshot.privacy_regions is not None:
            layout.privacy_regions = [r.model_dump(mode="json") for r in snapshot.privacy_regions]
        layout.received_at = now
    return web.json_response({"ok": True, "preview": preview_wanted(app, verdict.device_id), "server_time": now})


async def get_scene(request: web.Request) -> web.Response:
    principal = await require(request, "operator")
    app, device_id = request.app, request.match_info["id"]
    device = app[DB_KEY].device_view(device_id)
    if device is None:
        raise RejectedError(404, f"no device {device_id}")
    now = app[CLOCK_KEY]()
    if not preview_wanted(app, device_id):
        audit.record(
            app[DB_KEY].db,
            actor=principal.actor,
            action="device.scene.watch",
            target=device_id,
            details={"room": device["room"]},
            now=now,
        )
    app[SCENES_KEY].watched[device_id] = now
    latest = latest_snapshot(app, device_id)
    layout = app[SCENES_KEY].layout.get(device_id, _Layout())
    snap = latest[0] if latest else None
    return web.json_response(
        {
            "device_id": device_id,
            "room": device["room"],
            "live": snap is not None,
            "time": snap.time if snap else None,
            "frame_width": snap.frame_width if snap else None,
            "frame_height": snap.frame_height if snap else None,
            "frame_size": [snap.frame_width, snap.frame_height] if snap else None,
            "people": [p.model_dump(mode="json") for p in snap.people] if snap else [],
            "received_at": latest[1] if latest else None,
            "age_seconds": now - latest[1] if latest else None,
            "zones": layout.zones,
            "privacy_regions": layout.privacy_regions,
            "layout_received_at": layout.received_at,
            "watch_seconds": WATCH_SECONDS,
            "preview_interval_seconds": PREVIEW_INTERVAL_SECONDS,
        }
    )


async def _preview_header(request: web.Request, response: web.StreamResponse) -> None:
    """``WardSight-Preview: 1`` on a device's successful heartbeat or scene post while someone watches it."""
    if request.method != "POST" or request.path not in (HEARTBEAT_PATH, SCENE_PATH):
        return
    if not 200 <= response.status < 300:
        return
    proof = request.headers.get(wire.PROOF_HEADER)
    if proof is None:
        return
    try:
        device_id = wire.proof_signer(proof)
    except wire.MalformedError:
        return
    if preview_wanted(request.app, device_id):
        response.headers[PREVIEW_HEADER] = "1"


def setup(app: web.Application) -> None:
    """Add the scene routes, the in-memory store and the preview header hook."""
    app[SCENES_KEY] = _Scenes()
    app.on_response_prepare.append(_preview_header)
    app.router.add_post(SCENE_PATH, post_scene)
    app.router.add_get("/api/v1/devices/{id}/scene", get_scene)
