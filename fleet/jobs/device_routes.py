"""The device side of jobs (each call authenticated like every device call: proof, credential):

- ``GET /api/v1/device/jobs?wait=<0..30>``: the device's released, unexpired jobs it has not reported on
  (oldest first, at most 10), each a compact JWS by the server's ``jobs`` key (``wire.sign_job``); waits up
  to ``wait`` seconds for one (or for news of an update offer). A job is sent again until the device reports on it.
- ``POST /api/v1/device/jobs/{job_id}``: a ``wire.JobReport``. Diagnostics ``output`` is checked again here
  (printable UTF-8 text, 256 KiB).
- ``POST /api/v1/device/rotate-key``: while a ``rotate_key`` job is pending, swap the device's key for a new
  one it proves it holds (``wire.verify_rotation_proof``), with a fresh credential bound to it; the old key and
  credential stop working at once.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any

from aiohttp import web

from fleet.auth import device as deviceauth
from fleet.auth.device_requests import authenticate, forget_row
from fleet.jobs import device_store, logic, store
from fleet.jobs.bodies import RotateRequest
from fleet.jobs.release import request_time, step
from fleet.jobs.wakeup import UPDATE_HINT_KEY, WAITERS_KEY
from fleet.store.connection import Connection
from fleet.store.schema import transaction
from fleet.web.appkeys import CONFIG_KEY, DB_KEY, KEYS_KEY
from fleet.web.body import parse_json, read_body
from fleet.web.errors import RejectedError
from fleet.web.query import query_number
from wardsight import wire

log = logging.getLogger("wardsight.fleet.jobs")

MAX_WAIT_SECONDS = 30.0
MAX_REPORT_BYTES = 2 * 1024 * 1024  # 256 KiB of output, JSON-escaped
MAX_ROTATE_BYTES = 16 * 1024


def _wait_seconds(request: web.Request) -> float:
    wait = query_number(request, "wait", float, low=0, high=MAX_WAIT_SECONDS)
    return 0.0 if wait is None else wait


async def poll(request: web.Request) -> web.Response:
    verdict = await authenticate(request, b"")
    wait = _wait_seconds(request)
    seen = request.query.get(wire.UPDATE_HINT_FIELD) or None  # the update offer the device knows of
    app, loop = request.app, asyncio.get_running_loop()
    deadline = loop.time() + wait
    key = app[KEYS_KEY].jobs
    hint_for = app.get(UPDATE_HINT_KEY)
    with app[WAITERS_KEY].polling(verdict.device_id):
        while True:
            now = request_time(request)
            step(app, now, device_store.open_batches(app[DB_KEY].db, verdict.device_id))
            jobs = device_store.pending_jobs(app[DB_KEY].db, verdict.device_id, now)
            hint = hint_for(app[DB_KEY].db, verdict.device_id, now) if hint_for is not None else None
            left = deadline - loop.time()
            if jobs or hint != seen or left <= 0:
                break
            await app[WAITERS_KEY].wait(verdict.device_id, left)
    return web.json_response({"jobs": [wire.sign_job(job, key) for job in jobs], wire.UPDATE_HINT_FIELD: hint})


def _device_job(conn: Connection, job_id: str, device_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The device's job and its batch; 404 when the job is not this device's."""
    job = device_store.get_job(conn, job_id)
    if job is None or job["device_id"] != device_id:
        raise RejectedError(404, "no such job for this device")
    batch = store.get_batch(conn, job["batch_id"])
    assert batch is not None
    return job, batch


def _check_output(batch: dict[str, Any], got: wire.JobReport) -> None:
    if got.output is None:
        return
    if batch["kind"] != "collect_diagnostics":
        raise RejectedError(400, "only collect_diagnostics reports carry output")
    problem = logic.output_problem(got.output)
    if problem is not None:
        raise RejectedError(400, problem)


async def report(request: web.Request) -> web.Response:
    body = await read_body(request, "application/json", MAX_REPORT_BYTES, beyond_app_limit=True)
    verdict = await authenticate(request, body)
    got = parse_json(wire.JobReport, body, "job report")
    if got.job_id != request.match_info["job_id"]:
        raise RejectedError(400, "job_id in the body does not match the path")
    app, now = request.app, request_time(request)
    conn = app[DB_KEY].db.conn
    job, batch = _device_job(conn, got.job_id, verdict.device_id)
    _check_output(batch, got)
    decision = logic.judge_report(
        kind=batch["kind"],
        current=job["state"],
        released_at=job["released_at"],
        expires_at=batch["expires_at"],
        reported=got.state,
        now=now,
    )
    if decision.action == "refuse":
        if decision.expire:
            step(app, now, [batch["id"]])  # records the expiry (and its audit entry) before refusing
        raise RejectedError(decision.status, decision.reason, code=decision.code)
    if decision.action == "apply":
        with transaction(conn):
            device_store.apply_report(app[DB_KEY], batch, job, got, verdict.device_id, now)
        step(app, now, [batch["id"]])
    return web.json_response({"job_id": got.job_id, "state": decision.state})


# ---- key rotation --------------------------------------------------------------------------------------


def _pending_rotation(
    conn: Connection, job_id: str, device_id: str, now: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The device's ``rotate_key`` job (and batch), refused (409) unless it is still pending."""
    job, batch = _device_job(conn, job_id, device_id)
    if batch["kind"] != "rotate_key":
        raise RejectedError(409, "that job is not a rotate_key job")
    pending = job["state"] in {"released", "received", "running"}
    if not pending or (job["state"] == "released" and logic.is_expired(batch["expires_at"], now)):
        raise RejectedError(409, f"no pending rotate_key job (this one is {job['state']})")
    return job, batch


def _proven_key(got: RotateRequest, verdict: deviceauth.Verdict) -> wire.Ed25519PublicKey:
    """The new public key, once its possession proof is verified and bound to this device, job and nonce."""
    try:
        new_key = wire.decode_public_key(got.public_key)
    except wire.MalformedError as exc:
        raise RejectedError(400, str(exc)) from None
    try:
        claim = wire.verify_rotation_proof(got.possession, new_key)
    except wire.SignatureError as exc:
        raise RejectedError(401, str(exc)) from None
    except wire.WireError as exc:
        raise RejectedError(400, str(exc)) from None
    expected = {
        "device_id": verdict.device_id,
        "job_id": got.job_id,
        "public_key": got.public_key,
        "nonce": verdict.proof.nonce,
    }
    wrong = [name for name, value in expected.items() if getattr(claim, name) != value]
    if wrong:
        raise RejectedError(400, f"possession {wrong[0]} does not match this request")
    return new_key


async def rotate_key(request: web.Request) -> web.Response:
    body = await read_body(request, "application/json", MAX_ROTATE_BYTES, beyond_app_limit=True)
    verdict = await authenticate(request, body)
    got = parse_json(RotateRequest, body)
    app, now = request.app, request_time(request)
    fleet, device_id = app[DB_KEY], verdict.device_id
    job, batch = _pending_rotation(fleet.db.conn, got.job_id, device_id, now)
    new_key = _proven_key(got, verdict)
    device = fleet.get_device(device_id)
    assert device is not None
    if fleet.public_key_in_use(got.public_key):
        raise RejectedError(409, "this public key is already enrolled")
    ttl = app[CONFIG_KEY].credential_ttl_seconds
    issued = deviceauth.issue_credential(app[KEYS_KEY].credentials, device_id, new_key, now, ttl)
    try:
        swapped = device_store.record_rotation(
            fleet.db,
            device,
            batch,
            job,
            new_public_key=got.public_key,
            presented_credential_id=verdict.credential_id,
            credential_id=issued.credential_id,
            credential_expires_at=issued.expires_at,
            now=now,
        )
    except sqlite3.IntegrityError:
        raise RejectedError(409, "this public key is already enrolled") from None
    if not swapped:
        raise RejectedError(409, "credential or key changed meanwhile; retry", code="credential_revoked")
    forget_row(app, device_id)
    log.info("device %s rotated its key (job %s)", device_id, job["id"])
    grant = wire.CredentialGrant(credential=issued.token, expires_in=issued.expires_at - now, server_time=now)
    return web.json_response(grant.model_dump())
