"""The web console: its page and static files (:mod:`~fleet.console.static`) and the helper routes it needs
beyond the other features' (:mod:`~fleet.console.routes`: fleet overview, device health history, last pushed
configuration, enrollment QR code and bundle CA)."""

from __future__ import annotations

from aiohttp import web

from fleet.console import routes, static


def setup(app: web.Application) -> None:
    """Add the console's page, static files and helper routes to ``app``."""
    static.add_routes(app)
    routes.add_routes(app)
