"""The fleet server's aiohttp application (app factory; :mod:`fleet.server` only starts it).

The features in :data:`fleet.features.FEATURES` add their routes; :mod:`fleet.web.middleware` turns every
rejection into a 4xx with a JSON ``{"error": ...}`` and a warning in the server log naming the peer and the reason;
nothing is stored for a rejected request.

Wake-ups between workers (a job released on one worker answers a device's long poll on another; an alert stored
on one reaches the console streams of all) go through the app's :class:`fleet.store.signals.Signals`
(``SIGNALS_KEY``): made here before the features subscribe to it, and running (on PostgreSQL, its LISTEN
connection) from just after the database opens until just before it closes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from fleet.alerts import streams
from fleet.config import ServerConfig
from fleet.features import FEATURES
from fleet.keys import load_server_keys
from fleet.store.db import FleetDB
from fleet.store.signals import SIGNALS_KEY, Signals
from fleet.web import middleware
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY, KEYS_KEY, Clock

log = logging.getLogger("wardsight.fleet")


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
        app[DB_KEY] = FleetDB(config.store_location)
        yield
        app[DB_KEY].close()

    async def signals_ctx(app: web.Application) -> AsyncIterator[None]:
        async with app[SIGNALS_KEY].running(app[DB_KEY].db.conn):
            yield

    app[SIGNALS_KEY] = Signals()
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(signals_ctx)  # before the features' tasks start, after they stop
    app.router.add_get("/healthz", healthz)
    for feature in FEATURES:
        feature.setup(app)
    streams.bind_signals(app)  # (the alerts feature makes its broker without them)
    return app
