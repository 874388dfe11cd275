"""What an enrolled device sends about itself: its signed events (into :func:`fleet.intake.store`) and its
heartbeats (into :func:`fleet.health.heartbeats.accept_heartbeat`), each an authenticated device request."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from fleet import intake
from fleet.auth.cache import Verified
from fleet.auth.device import Verdict
from fleet.auth.device_requests import DEVICE_KEY, JOSE, VERIFIED_KEY, authenticated, jws_text
from fleet.health.heartbeats import accept_heartbeat
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.web.body import parse_json, read_body
from fleet.web.errors import RejectedError
from wardsight import wire

log = logging.getLogger("wardsight.fleet.device")


def _parsed(body: bytes) -> wire.Signed | bytes:
    """The event JWS in ``body`` parsed once (its signature not yet checked), or ``body`` when it does not parse
    (refused with its reason once the request is authenticated)."""
    try:
        return wire.parse_signed(body.decode("ascii").strip(), wire.EVENT_TYP)
    except (UnicodeDecodeError, wire.MalformedError):
        return body


def _verified_event(
    token: wire.Signed | bytes, device: dict[str, Any], device_id: str, verified: Verified
) -> wire.Event:
    """The event (parsed, or the body) if ``device`` signed it, for its own room: 400, 401 or 403 otherwise."""

    def resolve(kid: str) -> wire.Ed25519PublicKey | None:
        return verified.device_key(device["public_key"])[0] if kid == device_id else None

    try:
        event = wire.check_event(token if isinstance(token, wire.Signed) else jws_text(token), resolve)
    except wire.UnknownSignerError:
        raise RejectedError(403, "a device may only send events it signed itself") from None
    except wire.SignatureError as exc:
        raise RejectedError(401, str(exc)) from None
    except wire.MalformedError as exc:
        raise RejectedError(400, str(exc)) from None
    if event.room != device["room"]:
        raise RejectedError(403, f"device {event.device_id} belongs to room {device['room']}, not {event.room}")
    return event


async def ingest_event(request: web.Request) -> web.Response:
    """Authenticate, verify and store one event: the proof's id, the sign of life and the event (with its webhook
    deliveries and alerts) in one transaction, committed before the reply; announced once committed."""
    body = await read_body(request, JOSE, wire.MAX_JWS_BYTES)
    app = request.app
    token = _parsed(body)

    def store(verdict: Verdict) -> tuple[wire.Event, bool]:
        event = _verified_event(token, request[DEVICE_KEY], verdict.device_id, app[VERIFIED_KEY])
        return event, intake.store(app[DB_KEY], event, app[CLOCK_KEY]())

    signed = [token] if isinstance(token, wire.Signed) else []
    _, (event, stored) = await authenticated(request, body, store, signed=signed)
    if stored:
        intake.announce(app, event)
        log.info("event %s from %s: %s/%s", event.event_id, event.device_id, event.app, event.type)
    return web.json_response({"event_id": event.event_id, "stored": stored}, status=201 if stored else 200)


async def heartbeat(request: web.Request) -> web.Response:
    """Authenticate and store one heartbeat: the proof's id, the sign of life and the heartbeat in one commit."""
    body = await read_body(request, "application/json", wire.MAX_JWS_BYTES)

    def store(verdict: Verdict) -> float:
        report = parse_json(wire.Health, body, "heartbeat")
        if report.device_id != verdict.device_id:
            raise RejectedError(403, "a device may only report its own health")
        accept_heartbeat(request.app, verdict.device_id, report)
        return request.app[CLOCK_KEY]()

    _, now = await authenticated(request, body, store)
    return web.json_response({"ok": True, "server_time": now})
