"""``GET /metrics``: the app's Prometheus registry, for API tokens (or sessions) with the ``viewer`` role."""

from __future__ import annotations

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from fleet.auth.operator import require
from fleet.health.metrics import METRICS_KEY


async def metrics_endpoint(request: web.Request) -> web.Response:
    await require(request, "viewer")
    body = request.config_dict[METRICS_KEY].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
