"""The device-facing API: enrollment, nonces, credentials, signed events and heartbeats.

Every device request but enrollment and ``nonce`` is authenticated per request (``fleet.deviceauth``):
a proof signed by the device's key, bound to method, path and body, with a server nonce and a unique id
(replays refused), plus the device's current short-lived credential. Every response on these paths carries
a fresh nonce and the server's time, so a device learns both without trusting its own clock.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from fleet import audit, health, intake, tokens
from fleet.auth import device as deviceauth
from fleet.store.schema import transaction
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY, KEYS_KEY
from fleet.web.errors import RejectedError
from wardsight import wire

M = TypeVar("M", bound=BaseModel)

log = logging.getLogger("wardsight.fleet.device")

JOSE = "application/jose"
NONCES_KEY = web.AppKey("nonces", deviceauth.NonceIssuer)
DEVICE_PREFIX = wire.DEVICE_PREFIX
ENROLL_PATH = wire.ENROLL_PATH
RENEW_KEY = web.RequestKey("renew", bool)
DEVICE_KEY = web.RequestKey("device", dict)  # the authenticated device's row  # the credential used is due for renewal


async def read_body(request: web.Request, content_type: str, max_bytes: int = wire.MAX_JWS_BYTES) -> bytes:
    """A device request's body: 415 for another content type, 413 beyond ``max_bytes``."""
    if request.content_type != content_type:
        raise RejectedError(415, f"content type must be {content_type}")
    body = await request.read()
    if len(body) > max_bytes:
        raise RejectedError(413, f"body larger than {max_bytes} bytes")
    return body


def parse_body(model: type[M], body: bytes, what: str) -> M:
    """``body`` (JSON) as ``model``; 400 naming the first bad field of the ``what`` (``report field 'x': ...``)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise RejectedError(400, f"{what} field '{'.'.join(map(str, err['loc']))}': {err['msg']}") from None


def _jws_text(body: bytes) -> str:
    try:
        return body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise RejectedError(400, "body is not a compact JWS") from None


async def authenticate(request: web.Request, body: bytes, *, credential: str = "required") -> deviceauth.Verdict:
    """Authenticate one device request (see ``fleet.deviceauth.authenticate``) and refuse replays."""
    db, now = request.app[DB_KEY], request.app[CLOCK_KEY]()
    proof = request.headers.get(wire.PROOF_HEADER)
    claimed = ""
    if proof is not None:
        try:
            claimed = wire.proof_signer(proof)
        except wire.MalformedError as exc:
            raise RejectedError(401, f"malformed proof: {exc}") from None
    row = db.get_device(claimed) if claimed else None
    record = (
        deviceauth.DeviceRecord(row["id"], row["public_key"], row["status"] or "active", row["credential_id"])
        if row is not None
        else None
    )
    nonces = request.app[NONCES_KEY]
    try:
        verdict = deviceauth.authenticate(
            method=request.method,
            path=request.path,
            body=body,
            proof=proof,
            authorization=request.headers.get("Authorization"),
            device=record,
            claimed_device=claimed,
            nonces=nonces,
            server_key=request.app[KEYS_KEY].credentials.public_key(),
            now=now,
            credential=credential,
        )
    except deviceauth.AuthError as exc:
        raise RejectedError(exc.status, str(exc), code=exc.code) from None
    window = now + nonces.ttl + deviceauth.FUTURE_SKEW
    with transaction(db.db.conn):  # one commit for the replay record and the sign of life
        fresh = db.remember_jti(verdict.device_id, verdict.proof.jti, window, now)
        if fresh:
            health.mark_heard(db.db, verdict.device_id, now)
    if not fresh:
        raise RejectedError(401, "proof already used (replay)", code="replay")
    assert row is not None  # authenticate() refuses unknown devices
    request[DEVICE_KEY] = row  # the handler's copy: nothing it reads changes in this request
    if verdict.credential_id is not None:
        expires = row["credential_expires_at"]
        ttl = request.app[CONFIG_KEY].credential_ttl_seconds
        if expires is not None and now >= expires - ttl / 3:  # the server says when, whatever the device's clock
            request[RENEW_KEY] = True
    return verdict


async def enroll(request: web.Request) -> web.Response:
    db, clock, config = request.app[DB_KEY], request.app[CLOCK_KEY], request.app[CONFIG_KEY]
    try:
        claim = wire.verify_enrollment(_jws_text(await read_body(request, JOSE)))
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
    if claim.room is not None and claim.room != record.room:
        raise RejectedError(403, f"this token is scoped to room {record.room}, not {claim.room}")
    if db.public_key_in_use(claim.public_key):
        raise RejectedError(409, "this public key is already enrolled")
    status = "pending" if (record.require_approval or config.require_approval) else "active"
    device_id = "dev-" + secrets.token_hex(8)
    device = {
        "id": device_id,
        "name": claim.name,
        "site": record.site,
        "ward": record.ward,
        "room": record.room,
        "public_key": claim.public_key,
        "enrolled_at": now,
        "last_seen": now,
        "token_id": record.id,
        "status": status,
        "status_changed_at": now,
        "status_changed_by": f"token:{record.id}",
        "tags": "[]",
    }
    if not db.enroll(record.id, device, now):
        raise RejectedError(401, "enrollment token already used")
    audit.record(
        db.db,
        actor=f"token:{record.id}",
        action="device.enroll",
        target=device_id,
        details={"name": claim.name, "site": record.site, "ward": record.ward, "room": record.room, "status": status},
        now=now,
    )
    log.info(
        "enrolled device %s (%s) in room %s with token %s: %s", device_id, claim.name, record.room, record.id, status
    )
    body = wire.EnrollmentResponse(
        device_id=device_id,
        room=record.room,
        site=record.site,
        ward=record.ward,
        status=status,
        server_time=now,
        job_key=wire.encode_public_key(request.app[KEYS_KEY].jobs.public_key()),
    )
    return web.json_response(body.model_dump(), status=201)


async def nonce(request: web.Request) -> web.Response:
    now = request.app[CLOCK_KEY]()
    return web.json_response({"nonce": request.app[NONCES_KEY].issue(now), "server_time": now})


async def credential(request: web.Request) -> web.Response:
    """Issue a device's first credential (proof only) or renew its current one (proof + credential)."""
    db, config = request.app[DB_KEY], request.app[CONFIG_KEY]
    body = await request.read()
    if body:
        raise RejectedError(400, "credential requests have an empty body")
    renewing = "Authorization" in request.headers
    verdict = await authenticate(request, body, credential="required" if renewing else "none")
    now = request.app[CLOCK_KEY]()
    device = request[DEVICE_KEY]
    issued = deviceauth.issue_credential(
        request.app[KEYS_KEY].credentials,
        verdict.device_id,
        wire.decode_public_key(device["public_key"]),
        now,
        config.credential_ttl_seconds,
    )
    if not db.replace_credential(verdict.device_id, verdict.credential_id, issued.credential_id, issued.expires_at):
        raise RejectedError(409, "credential changed meanwhile; retry", code="credential_revoked")
    log.info(
        "%s credential for %s until %.0f", "renewed" if renewing else "issued", verdict.device_id, issued.expires_at
    )
    grant = wire.CredentialGrant(credential=issued.token, expires_in=issued.expires_at - now, server_time=now)
    return web.json_response(grant.model_dump())


async def ingest_event(request: web.Request) -> web.Response:
    db = request.app[DB_KEY]
    body = await read_body(request, JOSE)
    verdict = await authenticate(request, body)
    device = request[DEVICE_KEY]

    def resolve(kid: str) -> wire.Ed25519PublicKey | None:
        return wire.decode_public_key(device["public_key"]) if kid == verdict.device_id else None

    try:
        event = wire.verify_event(_jws_text(body), resolve)
    except wire.UnknownSignerError:
        raise RejectedError(403, "a device may only send events it signed itself") from None
    except wire.SignatureError as exc:
        raise RejectedError(401, str(exc)) from None
    except wire.MalformedError as exc:
        raise RejectedError(400, str(exc)) from None
    if event.room != device["room"]:
        raise RejectedError(403, f"device {event.device_id} belongs to room {device['room']}, not {event.room}")
    stored = intake.accept(request.app, db, event, request.app[CLOCK_KEY]())
    if stored:
        log.info("event %s from %s: %s/%s", event.event_id, event.device_id, event.app, event.type)
    return web.json_response({"event_id": event.event_id, "stored": stored}, status=201 if stored else 200)


async def heartbeat(request: web.Request) -> web.Response:
    body = await read_body(request, "application/json")
    verdict = await authenticate(request, body)
    report = parse_body(wire.Health, body, "heartbeat")
    if report.device_id != verdict.device_id:
        raise RejectedError(403, "a device may only report its own health")
    now = request.app[CLOCK_KEY]()
    health.accept_heartbeat(request.app, verdict.device_id, report)
    return web.json_response({"ok": True, "server_time": now})


async def _stamp(request: web.Request, response: web.StreamResponse) -> None:
    """A fresh nonce and the server's time on every device-API response, errors included."""
    if request.path.startswith(DEVICE_PREFIX) or request.path == ENROLL_PATH:
        now = request.app[CLOCK_KEY]()
        response.headers[wire.NONCE_HEADER] = request.app[NONCES_KEY].issue(now)
        response.headers[wire.TIME_HEADER] = json.dumps(now)
        if request.get(RENEW_KEY):
            response.headers[wire.RENEW_HEADER] = "1"


def setup(app: web.Application) -> None:
    app[NONCES_KEY] = deviceauth.NonceIssuer.from_key(app[KEYS_KEY].credentials, app[CONFIG_KEY].nonce_ttl_seconds)
    app.on_response_prepare.append(_stamp)
    app.router.add_post(ENROLL_PATH, enroll)
    app.router.add_get(wire.NONCE_PATH, nonce)
    app.router.add_post(wire.CREDENTIAL_PATH, credential)
    app.router.add_post(wire.EVENTS_PATH, ingest_event)
    app.router.add_post(wire.HEARTBEAT_PATH, heartbeat)
