"""Enrolled devices: the operators' view and status changes (approve, quarantine, release, revoke, reissue a
credential), the recent events, and what a device sends about itself (signed events, heartbeats)."""

from __future__ import annotations

from aiohttp import web

from fleet.auth import device_requests
from fleet.devices import device_routes, routes, service
from fleet.health.store import mark_heard
from wardsight import wire


def setup(app: web.Application) -> None:
    device_requests.on_heard(app, mark_heard)  # every authenticated device request is a sign of life
    app.router.add_get("/api/v1/devices", routes.list_devices)
    app.router.add_get("/api/v1/devices/{id}", routes.get_device)
    for action in service.TRANSITIONS:
        app.router.add_post(f"/api/v1/devices/{{id}}/{action}", routes.status_handler(action))
    app.router.add_post("/api/v1/devices/{id}/reissue", routes.reissue)
    app.router.add_get("/api/v1/events", routes.list_events)
    app.router.add_post(wire.EVENTS_PATH, device_routes.ingest_event)
    app.router.add_post(wire.HEARTBEAT_PATH, device_routes.heartbeat)
