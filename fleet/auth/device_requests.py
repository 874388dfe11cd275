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

import functools
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

from aiohttp import web

from fleet.auth import device as deviceauth
from fleet.auth.cache import Bounded, Verified
from fleet.auth.signatures import SignatureChecker
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
# Each device's row as this server last read it: what a request is first decided on (the decision is checked on
# the row read inside the request's write transaction: :func:`authenticated`).
ROWS_KEY = web.AppKey("device_rows_last_read", Bounded)
MAX_ROWS = 16_384
ROW_KEEP_SECONDS = 600.0
# One thread that checks Ed25519 signatures while the event loop goes on (the check releases the GIL).
SIGNATURES_KEY = web.AppKey("signature_checker", SignatureChecker)

# Called inside the transaction that records an authenticated request's proof: (database, device id, server time).
HeardListener = Callable[[Database, str, float], None]
HEARD_KEY: web.AppKey[list[HeardListener]] = web.AppKey("device_heard_listeners")


def install(app: web.Application) -> None:
    """The nonce issuer (derived from the server's credentials key), what was verified before (:mod:`fleet.auth.cache`)
    and the nonce/time stamp on responses."""
    app[NONCES_KEY] = deviceauth.NonceIssuer.from_key(app[KEYS_KEY].credentials, app[CONFIG_KEY].nonce_ttl_seconds)
    app[VERIFIED_KEY] = Verified(app[KEYS_KEY].credentials.public_key())
    app[ROWS_KEY] = Bounded(MAX_ROWS)
    app[SIGNATURES_KEY] = SignatureChecker()
    app.on_response_prepare.append(_stamp)
    app.on_cleanup.append(_stop_checker)


async def _stop_checker(app: web.Application) -> None:
    app[SIGNATURES_KEY].close()


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
) -> tuple[deviceauth.Verdict, dict, Callable[[dict | None], deviceauth.Verdict]]:
    """The decision (:func:`fleet.auth.device.authenticate`) on this request, on the device's row as this server
    last read it (:data:`ROWS_KEY`; read now if it has none); nothing written. The proof's signature, and those of
    ``signed`` (JWS in the body from the same device), are checked first off the event loop
    (:func:`_check_signatures`). Returns the verdict, the row it was made on, and the decision to make again on
    the row read inside the write (:func:`authenticated`) when that row differs."""
    app = request.app
    proof, claimed = _claimed_signer(request)
    row = app[ROWS_KEY].get(claimed, now) if claimed else None
    remembered = row is not None
    if row is None and claimed:
        row = _read_row(app, claimed, now)
    if proof is not None and row is not None:
        await _check_signatures(app, row["public_key"], [proof, *(s for s in signed if s.header.get("kid") == claimed)])
    redecide = functools.partial(_decision, request, body, credential, now, proof, claimed)
    try:
        verdict = redecide(row)
    except RejectedError:
        last = row if remembered else None
        if last is None:
            raise
        row = _read_row(app, claimed, now)  # refused on the row last read: is it still so?
        if row is not None and all(row[k] == last[k] for k in _DECIDED_BY):
            raise
        verdict = redecide(row)  # (decided again on the row as it is now)
    assert row is not None  # authenticate() refuses unknown devices
    return verdict, row, redecide


def _read_row(app: web.Application, device_id: str, now: float) -> dict | None:
    """The device's row read now (None: no such device), kept as the row last read."""
    row = app[DB_KEY].get_device(device_id)
    if row is not None:
        app[ROWS_KEY].put(device_id, row, now + ROW_KEEP_SECONDS)
    else:
        app[ROWS_KEY].pop(device_id)
    return row


def forget_row(app: web.Application, device_id: str) -> None:
    """This server changed the device's row (its credential, its key): the next request reads it afresh (it would be
    decided right all the same, twice)."""
    app[ROWS_KEY].pop(device_id)


def _decision(
    request: web.Request,
    body: bytes,
    credential: str,
    now: float,
    proof: wire.Signed | None,
    claimed: str,
    row: dict | None,
) -> deviceauth.Verdict:
    """:func:`fleet.auth.device.authenticate` on this request and the device's ``row``: the verdict, or 401/403."""
    record = (
        deviceauth.DeviceRecord(row["id"], row["public_key"], row["status"] or "active", row["credential_id"])
        if row is not None
        else None
    )
    try:
        return deviceauth.authenticate(
            method=request.method,
            path=request.path,
            query=request.query.items(),  # what handlers read, whatever spelling the client sent
            body=body,
            proof=proof,
            authorization=request.headers.get("Authorization"),
            device=record,
            claimed_device=claimed,
            nonces=request.app[NONCES_KEY],
            verified=request.app[VERIFIED_KEY],
            now=now,
            credential=credential,
        )
    except deviceauth.AuthError as exc:
        raise RejectedError(exc.status, str(exc), code=exc.code) from None


async def _check_signatures(app: web.Application, public_key: str, signed: list[wire.Signed]) -> None:
    """Verify ``signed`` with the device's key in the signature thread, with the other requests of this turn of the
    loop (:mod:`fleet.auth.signatures`); a success is kept on each (:meth:`wardsight.wire.Signed.verify`), a
    failure is left for the decision to find and word."""
    try:
        key, _ = app[VERIFIED_KEY].device_key(public_key)
    except wire.MalformedError:
        return  # (the decision refuses the device's key)
    await app[SIGNATURES_KEY].check(signed, key)


# What the decision read from the device's row that an operator or the device can change meanwhile.
_DECIDED_BY = ("status", "credential_id", "public_key")


def _as_decided(
    request: web.Request,
    verdict: deviceauth.Verdict,
    row: dict,
    redecide: Callable[[dict | None], deviceauth.Verdict],
    now: float,
) -> tuple[deviceauth.Verdict, dict]:
    """Inside the write: the device's row read now (the decision used the row last read, and the signature checks
    ran off the event loop in between: a revocation, quarantine, renewal or key rotation may have been committed
    since). If it differs in what the decision read, the decision is made again on it (a new key's signatures
    are checked here). The verdict that holds and the row it holds on; 401/403 if it no longer holds."""
    now_row = _read_row(request.app, row["id"], now)
    if now_row is not None and all(now_row[k] == row[k] for k in _DECIDED_BY):
        return verdict, now_row
    verdict = redecide(now_row)
    assert now_row is not None  # authenticate() refuses unknown devices
    return verdict, now_row


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

    def remember_and_write(conn: Connection) -> tuple[deviceauth.Verdict | None, T | None, Exception | None]:
        held, now_row = _as_decided(request, verdict, row, redecide, now)  # (refused: raises, nothing written)
        if not _remember(request, held, now):
            return None, None, None
        try:
            with undo_on_error(conn):
                return held, write(_accepted(request, held, now_row, now)), None
        except Exception as exc:  # re-raised below, once the proof's id is committed
            if not conn.in_transaction:  # SQLite ended the whole transaction (e.g. a full disk): the batch fails
                raise
            return held, None, exc

    now = request.app[CLOCK_KEY]()
    group = request.app[DB_KEY].group
    with group.coming():  # (the commit this write will share waits for the checks off the event loop)
        verdict, row, redecide = await _decide(request, body, credential, now, signed)
        committed = group.submit(remember_and_write)
    held, value, failure = await committed
    if held is None:
        raise RejectedError(401, "proof already used (replay)", code="replay")
    if failure is not None:
        raise failure
    return held, value  # type: ignore[return-value]  # (None only with a failure, raised above)


async def _stamp(request: web.Request, response: web.StreamResponse) -> None:
    """A fresh nonce and the server's time on every device-API response, errors included."""
    if request.path.startswith(wire.DEVICE_PREFIX) or request.path == wire.ENROLL_PATH:
        now = request.app[CLOCK_KEY]()
        response.headers[wire.NONCE_HEADER] = request.app[NONCES_KEY].issue(now)
        response.headers[wire.TIME_HEADER] = json.dumps(now)
        if request.get(RENEW_KEY):
            response.headers[wire.RENEW_HEADER] = "1"
