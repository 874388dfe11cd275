"""The fleet server's aiohttp application (app factory; ``run`` only starts it).

Routes live in their modules (device_api, admin_api, operators, delivery, health). Every rejection is a 4xx with a
JSON ``{"error": ...}`` and a warning in the server log naming the peer and the reason; nothing is
stored for a rejected request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources

from aiohttp import web

from fleet import admin_api, alerts_api, delivery, device_api, health, jobs, operators, reports, scene_api
from fleet import console as console_api
from fleet.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY, KEYS_KEY, Clock
from fleet.config import ServerConfig
from fleet.db import FleetDB
from fleet.errors import RejectedError
from fleet.keys import load_server_keys
from fleet.ota import repository, rollouts

log = logging.getLogger("wardsight.fleet")

CREDENTIAL_HEADERS = ("Authorization", "Cookie", "X-CSRF-Token", "WardSight-Proof")


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        for name in CREDENTIAL_HEADERS:  # secrets travel in these; they are ASCII by construction
            value = request.headers.get(name)
            if value is not None and not value.isascii():
                raise RejectedError(400, f"the {name} header must be ASCII")
        return await handler(request)
    except RejectedError as exc:
        metrics = request.app.get(health.METRICS_KEY)
        if metrics is not None:
            metrics.requests_rejected.labels(status=str(exc.status_code)).inc()
        log.warning(
            "%s %s from %s rejected (%d): %s", request.method, request.path, request.remote, exc.status_code, exc.why
        )
        raise
    except web.HTTPRequestEntityTooLarge:
        log.warning("%s %s from %s rejected (413): body too large", request.method, request.path, request.remote)
        raise RejectedError(413, "request body too large") from None


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Added on response prepare, so error responses carry them too."""
    response.headers.setdefault("Content-Security-Policy", "default-src 'self'; img-src 'none'; frame-ancestors 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")


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
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[error_middleware])
    app.on_response_prepare.append(security_headers)
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
