"""The device's side of enrollment: enrolling with a one-time token, fetching a nonce, obtaining or renewing
its short-lived credential.

Enrollment and ``nonce`` need no proof; a credential request is authenticated like every device request
(:func:`fleet.auth.device_requests.authenticate`), with a proof only for the first credential.
"""

from __future__ import annotations

import logging

from aiohttp import web

from fleet.auth import device as deviceauth
from fleet.auth.device_requests import DEVICE_KEY, JOSE, NONCES_KEY, authenticate, forget_row, jws_text
from fleet.enrollment import service, tokens
from fleet.store.records import TokenRecord
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY, KEYS_KEY
from fleet.web.body import read_body
from fleet.web.errors import RejectedError
from wardsight import wire

log = logging.getLogger("wardsight.fleet.device")


async def _enrollment_claim(request: web.Request) -> wire.EnrollmentRequest:
    try:
        return wire.verify_enrollment(jws_text(await read_body(request, JOSE, wire.MAX_JWS_BYTES)))
    except wire.SignatureError as exc:
        raise RejectedError(401, f"proof of key possession failed: {exc}") from None
    except wire.MalformedError as exc:
        raise RejectedError(400, str(exc)) from None


def _usable_token(request: web.Request, claim: wire.EnrollmentRequest, now: float) -> TokenRecord:
    """The token's record if it may enroll this device now: 401 (bad token), 403 (other room), 409 (known key)."""
    db = request.app[DB_KEY]
    try:
        token_id, secret = tokens.split(claim.token)
        record = tokens.check(db.get_token(token_id), secret, now)
    except tokens.TokenRejectedError as exc:
        raise RejectedError(401, str(exc)) from None
    if claim.room is not None and claim.room != record.room:
        raise RejectedError(403, f"this token is scoped to room {record.room}, not {claim.room}")
    if db.public_key_in_use(claim.public_key):
        raise RejectedError(409, "this public key is already enrolled")
    return record


async def enroll(request: web.Request) -> web.Response:
    claim = await _enrollment_claim(request)
    now = request.app[CLOCK_KEY]()
    record = _usable_token(request, claim, now)
    status = "pending" if (record.require_approval or request.app[CONFIG_KEY].require_approval) else "active"
    device = service.enroll_device(request.app[DB_KEY], record, claim, status=status, now=now)
    if device is None:
        raise RejectedError(401, "enrollment token already used")
    device_id = device["id"]
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
    forget_row(request.app, verdict.device_id)
    log.info(
        "%s credential for %s until %.0f", "renewed" if renewing else "issued", verdict.device_id, issued.expires_at
    )
    grant = wire.CredentialGrant(credential=issued.token, expires_in=issued.expires_at - now, server_time=now)
    return web.json_response(grant.model_dump())
