"""The console's files in ``fleet/static``, served by one handler:

- ``GET /``: the console page (``console.html``, with the refresh interval from the config filled in);
- ``GET /console.js`` and ``GET /console.css``: the page's script and style sheet;
- ``GET /static/{name}``: the other files (flat names only, a fixed set of types; not the page itself).

Every response carries the security headers of :mod:`fleet.web.middleware` (the CSP allows only this origin).
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from aiohttp import web

from fleet.web.appkeys import CONFIG_KEY
from fleet.web.errors import RejectedError

STATIC_TYPES = {
    ".js": "application/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
_STATIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.(js|css|svg|json)$")
PAGE = "console.html"
TOP_LEVEL = {"/": PAGE, "/console.js": "console.js", "/console.css": "console.css"}  # path -> file


def _static_dir() -> Traversable:
    return resources.files("fleet").joinpath("static")


def _page(request: web.Request) -> web.Response:
    refresh = request.app[CONFIG_KEY].console_refresh_seconds
    html = _static_dir().joinpath(PAGE).read_bytes().decode("utf-8").replace("{{REFRESH_MS}}", str(int(refresh * 1000)))
    return web.Response(text=html, content_type="text/html")


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info.get("name")
    if name is None:  # one of the top-level paths: the routes are added for exactly those
        name = TOP_LEVEL[request.path]
        if name == PAGE:
            return _page(request)
    elif not _STATIC_NAME.match(name):
        raise RejectedError(404, "no such file")
    entry = _static_dir().joinpath(name)
    if not entry.is_file():
        raise RejectedError(404, "no such file")
    return web.Response(body=entry.read_bytes(), content_type=STATIC_TYPES[Path(name).suffix])


def add_routes(app: web.Application) -> None:
    for path in TOP_LEVEL:
        app.router.add_get(path, static_file)
    app.router.add_get("/static/{name}", static_file)
