"""What the device heartbeat route (:mod:`fleet.devices.device_routes`) calls once the device is authenticated."""

from __future__ import annotations

from aiohttp import web

from fleet.health.metrics import METRICS_KEY
from fleet.health.store import record_heartbeat
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from wardsight import wire


def accept_heartbeat(app: web.Application, device_id: str, health: wire.Health) -> None:
    """What the heartbeat endpoint calls after authenticating ``device_id``, in the transaction that recorded the
    request as a sign of life: store it and count it."""
    record_heartbeat(app[DB_KEY].db, device_id, health, app[CLOCK_KEY](), heard=True)
    app[METRICS_KEY].heartbeats.inc()
