"""The fleet server's aiohttp application (app factory; ``run`` only starts it).

Device endpoints take a compact JWS as an ``application/jose`` body. Every rejection is a 4xx with a
JSON ``{"error": ...}`` and a warning in the server log naming the peer and the reason; nothing is
stored for a rejected request.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from fleet import delivery, health, operators, tokens
from fleet.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY, KEYS_KEY, Clock
from fleet.config import ServerConfig
from fleet.db import FleetDB
from fleet.errors import RejectedError
from fleet.keys import load_server_keys
from wardsight import wire

log = logging.getLogger("wardsight.fleet")

JOSE = "application/jose"


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except RejectedError as exc:
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


async def _read_jws(request: web.Request) -> str:
    if request.content_type != JOSE:
        raise RejectedError(415, f"content type must be {JOSE}")
    body = await request.read()
    if len(body) > wire.MAX_JWS_BYTES:
        raise RejectedError(413, f"body larger than {wire.MAX_JWS_BYTES} bytes")
    try:
        return body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise RejectedError(400, "body is not a compact JWS") from None


async def enroll(request: web.Request) -> web.Response:
    db, clock = request.app[DB_KEY], request.app[CLOCK_KEY]
    try:
        claim = wire.verify_enrollment(await _read_jws(request))
    except wire.SignatureError as exc:
        raise RejectedError(401, f"proof of key possession failed: {exc}") from None
    except wire.MalformedError as exc:
        raise RejectedError(400, str(exc)) from None
    now = clock()
    try:
        token_id, secret = tokens.split(claim.token)
        record = tokens.check(db.get_token(token_id), secret, now)
    except tokens.TokenRejectedError as exc:
        raise RejectedError(401, str(exc)) from None
    if db.public_key_in_use(claim.public_key):
        raise RejectedError(409, "this public key is already enrolled")
    device_id = "dev-" + secrets.token_hex(8)
    device = {
        "id": device_id,
        "name": claim.name,
        "room": record.room,
        "public_key": claim.public_key,
        "enrolled_at": now,
        "last_seen": now,
        "token_id": record.id,
    }
    if not db.enroll(record.id, device, now):
        raise RejectedError(401, "enrollment token already used")
    log.info("enrolled device %s (%s) in room %s with token %s", device_id, claim.name, record.room, record.id)
    body = wire.EnrollmentResponse(device_id=device_id, room=record.room)
    return web.json_response(body.model_dump(), status=201)


async def ingest_event(request: web.Request) -> web.Response:
    db, clock = request.app[DB_KEY], request.app[CLOCK_KEY]

    signer: dict[str, Any] = {}

    def resolve(kid: str) -> Any:
        device = db.get_device(kid)
        if device is None:
            return None
        signer.update(device)
        return wire.decode_public_key(device["public_key"])

    try:
        event = wire.verify_event(await _read_jws(request), resolve)
    except wire.UnknownSignerError as exc:
        raise RejectedError(401, str(exc)) from None
    except wire.SignatureError as exc:
        raise RejectedError(401, str(exc)) from None
    except wire.MalformedError as exc:
        raise RejectedError(400, str(exc)) from None
    if event.room != signer["room"]:
        raise RejectedError(403, f"device {event.device_id} belongs to room {signer['room']}, not {event.room}")
    stored = db.store_event(event, clock())
    if stored:
        delivery.wake(request.app)
        log.info("event %s from %s: %s/%s", event.event_id, event.device_id, event.app, event.type)
    return web.json_response({"event_id": event.event_id, "stored": stored}, status=201 if stored else 200)


def _loopback_only(request: web.Request) -> None:
    """Until operator accounts exist, the read API and console answer only on the server's own machine."""
    try:
        local = request.remote is not None and ipaddress.ip_address(request.remote).is_loopback
    except ValueError:
        local = False
    if not local:
        raise RejectedError(403, "the console and read API are served to loopback clients only")


async def list_devices(request: web.Request) -> web.Response:
    _loopback_only(request)
    return web.json_response({"devices": request.app[DB_KEY].list_devices(), "now": request.app[CLOCK_KEY]()})


async def list_events(request: web.Request) -> web.Response:
    _loopback_only(request)
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        raise RejectedError(400, "limit must be an integer") from None
    if not 1 <= limit <= 500:
        raise RejectedError(400, "limit must be between 1 and 500")
    return web.json_response({"events": request.app[DB_KEY].recent_events(limit)})


def _static(name: str) -> bytes:
    return resources.files("fleet").joinpath("static", name).read_bytes()


async def console(request: web.Request) -> web.Response:
    _loopback_only(request)
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
    app.router.add_post("/api/v1/enroll", enroll)
    app.router.add_post("/api/v1/events", ingest_event)
    app.router.add_get("/api/v1/devices", list_devices)
    app.router.add_get("/api/v1/events", list_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", console)
    app.router.add_get("/console.js", console_js)
    app.router.add_get("/console.css", console_css)
    for module in (operators, delivery, health):
        module.setup(app)
    return app
