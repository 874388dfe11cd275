"""The console's helper routes beyond the other features' (every one checks the role on the server):

- ``GET /api/v1/fleet/overview?privacy_mode=&system_version=`` (viewer): every device with its latest heartbeat,
  presence, privacy mode (``sensor-only``, ``blackout-at-capture`` or null: not reported), system (``{slot, version,
  sbom_sha256}`` or null: not reported) and a display state (online, offline, degraded, pending, quarantined,
  revoked, never_seen), and the fleet summary (of the whole fleet); ``privacy_mode`` (optional: ``sensor-only``,
  ``blackout-at-capture``, ``unknown``) and ``system_version`` (optional: a version) keep only those devices.
  ``offline_after_s`` is the silence (seconds) after which a device counts as offline.
- ``GET /api/v1/devices/{id}/health?since=&limit=`` (viewer): the latest heartbeat and the samples for charts.
- ``GET /api/v1/devices/{id}/config`` (operator): the device.toml most recently pushed to the device by a
  ``push_config`` job (the one that succeeded, else the newest), so the zone editor starts from it; ``config``
  is null when none was pushed (or the jobs module is not there).
- ``POST /api/v1/console/qr`` ``{"text": ...}`` (operator): a QR code of ``text`` as SVG (``image/svg+xml``,
  sized by its ``viewBox`` in modules, quiet zone included); the page puts it into the DOM (the CSP allows no
  images) and scales it to fit. Nothing is stored or logged: ``text`` holds a
  one-time enrollment token.
- ``GET /api/v1/console/bundle-ca`` (operator): what a browser needs to build an enrollment bundle: the
  fleet CA certificate (PEM, when the server has one), the server URL devices use, and whether it is plain HTTP.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from fleet.auth.operator import require
from fleet.config import ServerConfig
from fleet.console.overview import fleet_overview
from fleet.health import store
from fleet.health.privacy import PRIVACY_FILTERS
from fleet.health.system import query_system_version
from fleet.ota.repository.files import bundle_root
from fleet.store.connection import json_text
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY
from fleet.web.body import read_json
from fleet.web.errors import RejectedError
from fleet.web.query import query_choice, query_number

MAX_QR_TEXT = 2900  # a version-40 QR code at error level L holds 2953 bytes
HISTORY_LIMIT = 1440


# ---- fleet overview and device health -------------------------------------------------------------------


async def get_overview(request: web.Request) -> web.Response:
    await require(request, "viewer")
    wanted = query_choice(request, "privacy_mode", PRIVACY_FILTERS)
    return web.json_response(fleet_overview(request.app, wanted, query_system_version(request)))


async def get_device_health(request: web.Request) -> web.Response:
    await require(request, "viewer")
    device_id = request.match_info["id"]
    fleet, now = request.app[DB_KEY], request.app[CLOCK_KEY]()
    if fleet.get_device(device_id) is None:
        raise RejectedError(404, "no such device")
    since = query_number(request, "since", float)
    since = now - 24 * 3600 if since is None else since
    limit_value = query_number(request, "limit", float, low=1, high=HISTORY_LIMIT)  # 500.0 works too
    limit = 500 if limit_value is None else int(limit_value)
    return web.json_response(
        {
            "device_id": device_id,
            "now": now,
            "latest": store.device_health(fleet.db, device_id),
            "samples": store.health_history(fleet.db, device_id, since, limit),
        }
    )


async def get_device_config(request: web.Request) -> web.Response:
    await require(request, "operator")
    device_id = request.match_info["id"]
    fleet = request.app[DB_KEY]
    if fleet.get_device(device_id) is None:
        raise RejectedError(404, "no such device")
    body: dict[str, Any] = {"device_id": device_id, "config": None, "batch_id": None, "state": None, "pushed_at": None}
    if {"jobs", "job_batches"} <= set(fleet.db.table_names()):
        row = fleet.db.conn.execute(
            "SELECT b.config, b.id, j.state, b.created_at FROM jobs j JOIN job_batches b ON b.id = j.batch_id"  # noqa: S608 - our constants
            " WHERE j.device_id = ? AND b.kind = 'push_config' AND b.config IS NOT NULL"
            f" AND {json_text(fleet.db, 'b.params', 'merge')} IS NULL"  # a zone edit is not a whole device.toml
            " ORDER BY (j.state = 'succeeded') DESC, b.created_at DESC LIMIT 1",
            [device_id],
        ).fetchone()
        if row is not None:
            body.update(config=row[0], batch_id=row[1], state=row[2], pushed_at=row[3])
    return web.json_response(body)


# ---- enrollment helpers -----------------------------------------------------------------------------------


class QRRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, Field(min_length=1, max_length=MAX_QR_TEXT)]


def qr_svg(text: str) -> bytes:
    """A QR code of ``text`` as a standalone SVG: black on white with its 4-module quiet zone, no fixed size,
    a ``viewBox`` in modules (``0 0 N N``, N = the symbol's modules + 8) so the page scales it whole.

    Error correction M (15 % of the code can be lost) while the text is short; L (7 %) for longer texts,
    as a bundle with the fleet CA and the OTA root is (about 2.4 kB: version 36 at L, too long for M). A
    code shown on a screen is not worn or stained, so L scans; the module size the page gives it matters more.
    """
    import segno  # here: only this route needs it

    code = segno.make(text, error="l" if len(text) > 1200 else "m", micro=False)
    out = io.BytesIO()
    code.save(
        out,
        kind="svg",
        scale=1,
        border=4,
        dark="#000",
        light="#fff",
        xmldecl=False,
        omitsize=True,  # a viewBox instead of width and height: the page's CSS sizes it
        title="Enrollment QR code",
        svgclass="qr",
        lineclass=None,
    )
    return out.getvalue()


async def post_qr(request: web.Request) -> web.Response:
    await require(request, "operator")
    body = await read_json(request, QRRequest, max_bytes=8 * 1024)
    import segno

    try:
        svg = qr_svg(body.text)
    except segno.DataOverflowError:
        raise RejectedError(400, "text is too long for a QR code") from None
    return web.Response(body=svg, content_type="image/svg+xml")


def _keys_dir(config: ServerConfig) -> Path | None:
    if config.keys_dir is not None:
        return config.keys_dir
    return config.database.parent / "fleet-keys" if config.database is not None else None


async def get_bundle_ca(request: web.Request) -> web.Response:
    await require(request, "operator")
    config = request.app[CONFIG_KEY]
    directory = _keys_dir(config)
    ca_path = directory / "ca.crt" if directory is not None else None
    ca_pem = ca_path.read_text() if ca_path is not None and ca_path.is_file() and not config.insecure_http else None
    server_url = (config.public_url or str(request.url.origin())).rstrip("/")
    return web.json_response(
        {
            "server_url": server_url,
            "ca_pem": ca_pem,
            "insecure_http": server_url.startswith("http://"),
            "tuf_root": bundle_root(request.app),  # None until the hospital ran 'wardsight ota init'
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/fleet/overview", get_overview)
    app.router.add_get("/api/v1/devices/{id}/health", get_device_health)
    app.router.add_get("/api/v1/devices/{id}/config", get_device_config)
    app.router.add_post("/api/v1/console/qr", post_qr)
    app.router.add_get("/api/v1/console/bundle-ca", get_bundle_ca)
