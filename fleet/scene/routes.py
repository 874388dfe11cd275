"""The scene routes and the preview header hook (see :mod:`fleet.scene`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fleet.audit import log as audit
from fleet.auth.device_requests import DEVICE_KEY, authenticate
from fleet.auth.operator import require
from fleet.scene.store import SCENES_KEY, WATCH_SECONDS, Layout, latest_snapshot, preview_wanted
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.web.body import parse_json, read_body
from fleet.web.errors import RejectedError
from wardsight.wire import (
    HEARTBEAT_PATH,
    MAX_SCENE_BYTES,
    PREVIEW_HEADER,
    PREVIEW_INTERVAL_SECONDS,
    SCENE_PATH,
    SceneSnapshot,
)


async def post_scene(request: web.Request) -> web.Response:
    body = await read_body(request, "application/json", MAX_SCENE_BYTES)
    verdict = await authenticate(request, body)
    snapshot = parse_json(SceneSnapshot, body, "scene")
    app, now = request.app, request.app[CLOCK_KEY]()
    app[SCENES_KEY].keep(verdict.device_id, snapshot, now)
    return web.json_response({"ok": True, "preview": preview_wanted(app, verdict.device_id), "server_time": now})


def _scene_view(
    device_id: str, room: str, scene: tuple[SceneSnapshot, float] | None, layout: Layout, now: float
) -> dict[str, Any]:
    """The reply of ``GET /api/v1/devices/{id}/scene``: the fresh snapshot (if any) and the layout."""
    snap = scene[0] if scene else None
    return {
        "device_id": device_id,
        "room": room,
        "live": snap is not None,
        "time": snap.time if snap else None,
        "frame_width": snap.frame_width if snap else None,
        "frame_height": snap.frame_height if snap else None,
        "frame_size": [snap.frame_width, snap.frame_height] if snap else None,
        "people": [p.model_dump(mode="json") for p in snap.people] if snap else [],
        "received_at": scene[1] if scene else None,
        "age_seconds": now - scene[1] if scene else None,
        "zones": layout.zones,
        "privacy_regions": layout.privacy_regions,
        "layout_received_at": layout.received_at,
        "watch_seconds": WATCH_SECONDS,
        "preview_interval_seconds": PREVIEW_INTERVAL_SECONDS,
    }


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
    layout = app[SCENES_KEY].layout.get(device_id, Layout())
    return web.json_response(_scene_view(device_id, device["room"], latest, layout, now))


async def preview_header(request: web.Request, response: web.StreamResponse) -> None:
    """``WardSight-Preview: 1`` on a device's successful heartbeat or scene post while someone watches it."""
    if request.method != "POST" or request.path not in (HEARTBEAT_PATH, SCENE_PATH):
        return
    if not 200 <= response.status < 300:
        return
    device = request.get(DEVICE_KEY)  # (set once the request is authenticated)
    if device is not None and preview_wanted(request.app, device["id"]):
        response.headers[PREVIEW_HEADER] = "1"
