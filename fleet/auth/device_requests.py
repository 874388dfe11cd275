"""Device requests over HTTP: authenticating one (:func:`authenticate`) and the nonce and time on every reply.

Every device request but enrollment and ``nonce`` is authenticated per request (the decision is
:func:`fleet.auth.device.authenticate`): a proof signed by the device's key, bound to method, path, query
string (the decoded ``request.query``, canonically encoded: :func:`wardsight.wire.canonical_query`) and body,
with a server nonce and a unique id (replays refused here, in the one stateful check), plus the device's
current short-lived credential. Every response on the device paths carries a fresh nonce and the server's
time (:func:`install` adds the hook), so a device learns both without trusting its own clock.

Every device route (enrollment, devices, jobs, OTA, scene, health) calls :func:`authenticate`, or, when it
stores what the device sent (events, heartbeats), :func:`authenticated`, which keeps the replay record, the sign
of life and the handler's writes in one transaction: one fsynced commit per request. A feature that wants to
know a device was heard from adds a listener with :func:`on_heard`. What was verified before (a credential's
server signature, a device key's decoding) is kept in :mod:`fleet.auth.cache`; the decision itself is made on
every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from aiohttp import web

from fleet.auth import device as deviceauth
from fleet.auth.cache import Verified
from fleet.store.connection import Connection, Database
from fleet.store.schema import undo_on_error
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY, KEYS_KEY
from fleet.web.errors import RejectedError
from wardsight import wire

T = TypeVar("T")
JOSE = "application/jose"
NONCES_KEY = web.AppKey("nonces", deviceauth.NonceIssuer)
VERIFIED_KEY = web.AppKey("verified_device_credentials", Verified)  # credentials and device keys verified before
RENEW_KEY = web.RequestKey("renew", bool)  # the credential used is due for renewal
DEVICE_KEY = web.RequestKey("device", dict)  # the authenticated device's row
# One thread that checks Ed25519 signatures while the event loop goes on (the check releases the GIL).
SIGNATURES_KEY = web.AppKey("signature_checker", ThreadPoolExecutor)

# Called inside the transaction that records an authenticated request's proof: (database, device id, server time).
HeardListener = Callable[[Database, str, float], None]
HEARD_KEY: web.AppKey[list[HeardListener]] = web.AppKey("device_heard_listeners")


def install(app: web.Application) -> None:
    """The nonce issuer (derived from the server's credentials key), what was verified before (:mod:`fleet.auth.cache`)
    and the nonce/time stamp on responses."""
    app[NONCES_KEY] = deviceauth.NonceIssuer.from_key(app[KEYS_KEY].credentials, app[CONFIG_KEY].nonce_ttl_seconds)
    app[VERIFIED_KEY] = Verified(app[KEYS_KEY].credentials.public_key())
    app[SIGNATURES_KEY] = ThreadPoolExecutor(1, thread_name_prefix="signatures")
    app.on_response_prepare.append(_stamp)
    app.on_cleanup.append(_stop_checker)


async def _stop_checker(app: web.Application) -> None:
    app[SIGNATURES_KEY].shutdown(wait=True)


def on_heard(app: web.Application, listener: HeardListener) -> None:
    """Add ``listener``, called for each authenticated (not replayed) device request (a feature's ``setup``)."""
    app.setdefault(HEARD_KEY, []).append(listener)


def jws_text(body: bytes) -> str:
    """A compact JWS body as text; 400 when it is not ASCII."""
    try:
        return body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise RejectedError(400, "body is not a compact JWS") from None


def _claimed_signer(request: web.Request) -> tuple[wire.Signed | None, str]:
    """The proof header parsed once (None: absent) and the device it names (unverified: its key is looked up)."""
    proof = request.headers.get(wire.PROOF_HEADER)
    if proof is None:
        return None, ""
    try:
        signed = wire.parse_proof(proof)
    except wire.MalformedError as exc:
        raise RejectedError(401, f"malformed proof: {exc}") from None
    return signed, signed.header["kid"]


async def _decide(
    request: web.Request, body: bytes, credential: str, now: float, signed: Sequence[wire.Signed]
) -> tuple[deviceauth.Verdict, dict]:
    """The decision (:func:`fleet.auth.device.authenticate`) on this request and the device's row; nothing written.
    The proof's signature, and those of ``signed`` (JWS in the body from the same device), are checked first off
    the event loop (:func:`_check_signatures`)."""
    app = request.app
    proof, claimed = _claimed_signer(request)
    row = app[DB_KEY].get_device(claimed) if claimed else None  # read on every request: revocation acts at once
    record = (
        deviceauth.DeviceRecord(row["id"], row["public_key"], row["status"] or "active", row["credential_id"])
        if row is not None
        else None
    )
    if proof is not None and record is not None:
        await _check_signatures(app, record, [proof, *(s for s in signed if s.header.get("kid") == claimed)])
    try:
        verdict = deviceauth.authenticate(
            method=request.method,
            path=request.path,
            query=request.query.items(),  # what handlers read, whatever spelling the client sent
            body=body,
            proof=proof,
            authorization=request.headers.get("Authorization"),
            device=record,
            claimed_device=claimed,
            nonces=app[NONCES_KEY],
            verified=app[VERIFIED_KEY],
            now=now,
            credential=credential,
        )
    except deviceauth.AuthError as exc:
        raise RejectedError(exc.status, str(exc), code=exc.code) from None
    assert row is not None  # authenticate() refuses unknown devices
    return verdict, row


async def _check_signatures(app: web.Application, device: deviceauth.DeviceRecord, signed: list[wire.Signed]) -> None:
    """Verify ``signed`` with the device's key in the signature thread; a success is kept on each
    (:meth:`wardsight.wire.Signed.verify`), a failure is left for the decision to find and word."""
    try:
        key, _ = app[VERIFIED_KEY].device_key(device.public_key)
    except wire.MalformedError:
        return  # (the decision refuses the device's key)
    await asyncio.get_running_loop().run_in_executor(app[SIGNATURES_KEY], _verify_quietly, signed, key)


def _verify_quietly(signed: list[wire.Signed], key: wire.Ed25519PublicKey) -> None:
    for each in signed:
        with contextlib.suppress(wire.SignatureError):
            each.verify(key)


# What the decision read from the device's row that an operator or the device can change meanwhile.
_DECIDED_BY = ("status", "credential_id", "public_key")


def _still_as_decided(request: web.Request, row: dict) -> None:
    """Inside the write: the device's row still says what the decision read (the signature checks ran off the event
    loop in between, and a revocation, quarantine, renewal or key rotation may have been committed since): 503 if
    not (retryable: the device sends it again and it is decided afresh)."""
    now_row = request.app[DB_KEY].get_device(row["id"])
    if now_row is None or any(now_row[k] != row[k] for k in _DECIDED_BY):
        raise RejectedError(
            503, "the device's record changed while the request was checked: send it again", code="device_changed"
        )


def _remember(request: web.Request, verdict: deviceauth.Verdict, now: float) -> bool:
    """Inside the request's transaction: record the proof's id (False: a replay) and, if new, the sign of life."""
    db = request.app[DB_KEY]
    window = now + request.app[NONCES_KEY].ttl + deviceauth.FUTURE_SKEW
    fresh = db.remember_jti(verdict.device_id, verdict.proof.jti, window, now)
    if fresh:
        for heard in request.app.get(HEARD_KEY, ()):
            heard(db.db, verdict.device_id, now)
    return fresh


def _accepted(request: web.Request, verdict: deviceauth.Verdict, row: dict, now: float) -> deviceauth.Verdict:
    request[DEVICE_KEY] = row
    if verdict.credential_id is not None:
        expires = row["credential_expires_at"]
        ttl = request.app[CONFIG_KEY].credential_ttl_seconds
        if expires is not None and now >= expires - ttl / 3:  # the server says when, whatever the device's clock
            request[RENEW_KEY] = True
    return verdict


async def authenticate(request: web.Request, body: bytes, *, credential: str = "required") -> deviceauth.Verdict:
    """Authenticate one device request (see :func:`fleet.auth.device.authenticate`) and refuse replays.

    The replay record and the sign of life are committed before this returns (a handler that writes too uses
    :func:`authenticated`, one commit for both). The device's row is then ``request[DEVICE_KEY]`` (the handler's
    copy: nothing it reads changes in this request); a credential due for renewal sets ``request[RENEW_KEY]``
    (the reply says so).
    """
    verdict, _ = await authenticated(request, body, _nothing, credential=credential)
    return verdict


def _nothing(verdict: deviceauth.Verdict) -> None:
    return None


async def authenticated(
    request: web.Request,
    body: bytes,
    write: Callable[[deviceauth.Verdict], T],
    *,
    credential: str = "required",
    signed: Sequence[wire.Signed] = (),
) -> tuple[deviceauth.Verdict, T]:
    """:func:`authenticate`, with ``write(verdict)`` in the same write transaction: (the verdict, its result).

    The replay record, the sign of life and what ``write`` writes are committed together, before this returns
    (so an acknowledged write is on disk); on SQLite that commit is shared with the requests that arrive at the
    same time (:class:`fleet.store.batch.GroupCommit`). If ``write`` raises (a request refused after
    authentication, or a failure), its own writes are undone (a savepoint) but the proof id and the sign of life
    are still committed, so the proof cannot be replayed; then the exception goes on. ``write`` runs on the store's
    connection and must not block; the caller announces what it stored after this returns. ``signed``: JWS in the
    body that ``write`` will check with the device's key (verified beforehand off the event loop).
    """

    def remember_and_write(conn: Connection) -> tuple[bool, T | None, Exception | None]:
        if not _remember(request, verdict, now):
            return False, None, None
        try:
            with undo_on_error(conn):
                _still_as_decided(request, row)
                return True, write(_accepted(request, verdict, row, now)), None
        except Exception as exc:  # re-raised below, once the proof's id is committed
            if not conn.in_transaction:  # SQLite ended the whole transaction (e.g. a full disk): the batch fails
                raise
            return True, None, exc

    now = request.app[CLOCK_KEY]()
    group = request.app[DB_KEY].group
    with group.coming():  # (the commit this write will share waits for the checks off the event loop)
        verdict, row = await _decide(request, body, credential, now, signed)
        committed = group.submit(remember_and_write)
    fresh, value, failure = await committed
    if not fresh:
        raise RejectedError(401, "proof already used (replay)", code="replay")
    if failure is not None:
        raise failure
    return verdict, value  # type: ignore[return-value]  # (None only with a failure, raised above)


async def _stamp(request: web.Request, response: web.StreamResponse) -> None:
    """A fresh nonce and the server's time on every device-API response, errors included."""
    if request.path.startswith(wire.DEVICE_PREFIX) or request.path == wire.ENROLL_PATH:
        now = request.app[CLOCK_KEY]()
        response.headers[wire.NONCE_HEADER] = request.app[NONCES_KEY].issue(now)
        response.headers[wire.TIME_HEADER] = json.dumps(now)
        if request.get(RENEW_KEY):
            response.headers[wire.RENEW_HEADER] = "1"
