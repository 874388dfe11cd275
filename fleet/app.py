"""The fleet server's aiohttp application (app factory; ``run`` only starts it).

Routes live in their modules (device_api, admin_api, operators, delivery, health). Every rejection is a 4xx with a
JSON ``{"error": ...}`` and a warning in the server log naming the peer and the reason; nothing is
stored for a rejected request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from importlib import resources

from aiohttp import web

from fleet import admin_api, alerts_api, delivery, device_api, health, jobs, operators, reports, scene_api
from fleet import console as console_api
from fleet.config import ServerConfig
from fleet.keys import load_server_keys
from fleet.ota import repository, rollouts
from fleet.store.db import FleetDB
from fleet.web import middleware
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY, KEYS_KEY, Clock

log = logging.getLogger("wardsight.fleet")

def _static(name: str) -> bytes:
    return resources.files("fleet").joinpath("static", name).read_bytes()


async def console(request: web.Request) -> web.Response:
    refresh = request.app[CONFIG_KEY].console_refresh_seconds
    html = _static("console.html").decode("utf-8").replace("{{REFRESH_MS}}", str(int(refresh * 1000)))
    return web.Response(text=html, content_type="text/html")


async def console_js(request: web.Request) -> web.Response:
    return web.Response(body=_static("console.js"), content_type="application/javascript")


async def console_css(request: web.Request) -> web.Response:
    return web.Response(body=_static("console.css"), content_type="text/css")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(config: ServerConfig, *, clock: Clock = time.time) -> web.Application:
    """Build the fleet application; the database opens on startup and closes on cleanup."""
    if config.database is None:
        raise ValueError("config.database must be set (load_server_config sets it)")
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[middleware.error_middleware])
    middleware.install(app)
    app[CONFIG_KEY] = config
    app[CLOCK_KEY] = clock
    app[KEYS_KEY] = load_server_keys(config.keys_dir or config.database.parent / "fleet-keys")

    async def database_ctx(app: web.Application) -> AsyncIterator[None]:
        assert config.database is not None
        app[DB_KEY] = FleetDB(config.database)
        yield
        app[DB_KEY].close()

    app.cleanup_ctx.append(database_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", console)
    app.router.add_get("/console.js", console_js)
    app.router.add_get("/console.css", console_css)
    for module in (
        device_api,
        admin_api,
        operators,
        delivery,
        health,
        repository,
        rollouts,
        alerts_api,
        reports,
        scene_api,
        jobs,
        console_api,
    ):
        module.setup(app)
    return app
