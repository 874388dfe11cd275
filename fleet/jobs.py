"""Maintenance jobs: operators run them on one device, a list or a selection; devices fetch, run and report.

Operators (``fleet.require``; every change in the audit log):

- ``POST /api/v1/jobs`` (operator; ``reboot``, ``factory_reset`` and ``rotate_key`` need admin) makes a
  *batch*: one job per targeted active device. ``push_config`` carries a ``device.toml`` the server first
  validates with ``wardsight.device_config``. Optional ``rate_per_minute`` and ``error_threshold`` pace and
  stop the batch (``fleet.job_logic``, where every decision lives).
- ``GET /api/v1/jobs`` and ``GET /api/v1/jobs/{batch_id}`` (viewer), ``POST /api/v1/jobs/{batch_id}/cancel``
  (operator), ``GET /api/v1/jobs/{batch_id}/devices/{device_id}/output`` (operator: the diagnostics text).

Devices (authenticated per request like every device call, ``fleet.device_api.authenticate``):

- ``GET /api/v1/device/jobs?wait=<0..30>``: the device's released, unexpired jobs it has not reported on
  (oldest first, at most 10), each a compact JWS by the server's ``jobs`` key (``wire.sign_job``); waits up
  to ``wait`` seconds for one. A job is sent again until the device reports on it.
- ``POST /api/v1/device/jobs/{job_id}``: a ``wire.JobReport``. Diagnostics ``output`` is checked again here
  (printable UTF-8 text, 256 KiB).
- ``POST /api/v1/device/rotate-key``: while a ``rotate_key`` job is pending, swap the device's key for a new
  one it proves it holds, with a fresh credential bound to it; the old key and credential stop working at once.

Every outcome is audited per device (``job.succeeded``, ``job.failed``, ``job.refused``, ``job.expired``,
``job.cancelled``, with who asked for it), as are ``job.create``, ``job.batch_stopped`` and
``job.batch_cancelled``. A background task expires and releases jobs every second and wakes waiting devices.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import secrets
import sqlite3
import tomllib
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Annotated, Any, Literal, get_args

import sqlite_utils
from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from fleet import audit, device_api, job_logic, wakeup
from fleet.auth import device as deviceauth
from fleet.auth.operator import has_role, require
from fleet.store.db import FleetDB
from fleet.store.schema import transaction
from fleet.wakeup import WAITERS_KEY
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY, KEYS_KEY
from fleet.web.errors import RejectedError
from wardsight import wire
from wardsight.device_config import DeviceConfig
from wardsight.settings import describe_validation_error

log = logging.getLogger("wardsight.fleet.jobs")

DEVICE_JOBS_PATH = wire.JOBS_PATH
ROTATE_PATH = wire.ROTATE_PATH
MAX_WAIT_SECONDS = 30.0
MAX_JOBS_PER_POLL = 10
MIN_EXPIRES_IN = 60
MAX_EXPIRES_IN = 7 * 24 * 3600
MAX_BATCH_DEVICES = 10_000
MAX_CREATE_BYTES = 256 * 1024  # a push_config body (32 KiB of TOML) is larger than the app's default limit
MAX_REPORT_BYTES = 2 * 1024 * 1024  # 256 KiB of output, JSON-escaped
MAX_ROTATE_BYTES = 16 * 1024
TICK_SECONDS = 1.0
ADMIN_KINDS: frozenset[str] = frozenset({"reboot", "factory_reset", "rotate_key"})
LOG_LEVELS = ("debug", "info", "warning", "error")
JOB_LIST_LIMIT = 500
_NOT_REVOKED = ("pending", "active", "quarantined")


# ---- request bodies ------------------------------------------------------------------------------------

Ident = Annotated[str, Field(pattern=wire.IDENTIFIER_PATTERN)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Body):
    """Which devices: the listed ones and/or a selection; every given condition must hold."""

    device_ids: Annotated[list[Ident], Field(min_length=1, max_length=MAX_BATCH_DEVICES)] | None = None
    site: Ident | None = None
    ward: Ident | None = None
    room: Ident | None = None
    tags: Annotated[list[Ident], Field(min_length=1, max_length=16)] | None = None  # devices with all of them

    @model_validator(mode="after")
    def _something(self) -> Target:
        if all(v is None for v in (self.device_ids, self.site, self.ward, self.room, self.tags)):
            raise ValueError("give device_ids, site, ward, room or tags")
        return self


class NoParams(_Body):
    pass


class LogLevelParams(_Body):
    level: Literal["debug", "info", "warning", "error"]
    duration_s: Annotated[StrictInt, Field(ge=60, le=24 * 3600)]  # then the device returns to its configured level


PARAMS: dict[str, type[_Body]] = dict.fromkeys(get_args(wire.JobKind), NoParams)
PARAMS["set_log_level"] = LogLevelParams


class CreateJobs(_Body):
    kind: wire.JobKind
    params: dict[str, Any] = Field(default_factory=dict)
    config: Annotated[str, Field(max_length=32 * 1024)] | None = None
    target: Target
    expires_in_s: Annotated[StrictInt, Field(ge=MIN_EXPIRES_IN, le=MAX_EXPIRES_IN)]
    rate_per_minute: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = None
    error_threshold: StrictInt | StrictFloat | None = None

    @field_validator("error_threshold")
    @classmethod
    def _threshold(cls, value: float | None) -> float | None:
        job_logic.threshold_count(value, 1)  # ValueError names the rule
        return value


class RotateRequest(_Body):
    job_id: Annotated[str, Field(pattern=r"^job-[0-9a-f]{16,32}$")]
    public_key: Annotated[str, Field(min_length=43, max_length=43)]
    possession: Annotated[str, Field(min_length=16, max_length=wire.MAX_JWS_BYTES)]


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in err["loc"]) or "body"
    if err["type"] == "extra_forbidden":
        return f"unknown field '{where}'"
    if err["type"] == "missing":
        return f"missing field '{where}'"
    return f"{where}: {err['msg']}"


async def _read(request: web.Request, content_type: str, limit: int) -> bytes:
    """The body, with this route's own size limit (the app-wide one is too small for configs and diagnostics)."""
    if request.content_type != content_type:
        raise RejectedError(415, f"content type must be {content_type}")
    if request.content_length is not None and request.content_length > limit:
        raise RejectedError(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise RejectedError(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(model: type[_Body], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RejectedError(400, _first_error(exc)) from None


# ---- storage -------------------------------------------------------------------------------------------


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _one(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
    rows = _rows(conn, sql, params)
    return rows[0] if rows else None


def select_devices(db: sqlite_utils.Database, target: Target) -> tuple[list[str], list[str]]:
    """(active devices the target selects, in site/ward/room order; listed ids skipped as unknown or not active)."""
    clauses, params = ["status = 'active'"], []
    for column in ("site", "ward", "room"):
        value = getattr(target, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    sql = "SELECT id, tags FROM devices WHERE " + " AND ".join(clauses) + " ORDER BY site, ward, room, id"  # noqa: S608
    listed = set(target.device_ids or ())
    wanted = set(target.tags or ())
    chosen = []
    for row in _rows(db.conn, sql, params):
        if target.device_ids is not None and row["id"] not in listed:
            continue
        if wanted and not wanted <= set(json.loads(row["tags"] or "[]")):
            continue
        chosen.append(row["id"])
    skipped = sorted(listed - set(chosen)) if target.device_ids is not None else []
    return chosen, skipped


def create_batch(
    db: sqlite_utils.Database,
    *,
    kind: str,
    device_ids: Sequence[str],
    created_by: str,
    now: float,
    expires_in_s: float,
    params: dict[str, Any] | None = None,
    config: str | None = None,
    target: dict[str, Any] | None = None,
    rate_per_minute: int | None = None,
    error_threshold: float | None = None,
) -> str:
    """Store a batch with one queued job per device and audit it (``job.create``); :func:`advance` releases.

    The caller has validated the request (the HTTP route does); returns the batch id.
    """
    batch_id = "batch-" + secrets.token_hex(8)
    conn = db.conn
    params = params or {}
    target = target if target is not None else {"device_ids": list(device_ids)}
    with transaction(conn):
        conn.execute(
            "INSERT INTO job_batches (id, kind, params, config, target, created_by, created_at, expires_at,"
            " rate_per_minute, error_threshold, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running')",
            [
                batch_id,
                kind,
                json.dumps(params, sort_keys=True),
                config,
                json.dumps(target, sort_keys=True),
                created_by,
                now,
                now + expires_in_s,
                rate_per_minute,
                None if error_threshold is None else json.dumps(error_threshold),
            ],
        )
        conn.executemany(
            "INSERT INTO jobs (id, batch_id, device_id, seq, state, updated_at) VALUES (?, ?, ?, ?, 'queued', ?)",
            [
                ("job-" + secrets.token_hex(16), batch_id, device_id, seq, now)
                for seq, device_id in enumerate(device_ids)
            ],
        )
        details: dict[str, Any] = {
            "kind": kind,
            "params": params,
            "target": target,
            "devices": list(device_ids),
            "count": len(device_ids),
            "expires_at": now + expires_in_s,
            "rate_per_minute": rate_per_minute,
            "error_threshold": error_threshold,
        }
        if config is not None:  # the text may hold camera credentials: only its digest goes into the log
            details["config_sha256"] = hashlib.sha256(config.encode("utf-8")).hexdigest()
        audit.record(db, actor=created_by, action="job.create", target=batch_id, details=details, now=now)
    return batch_id


def _batch(conn: sqlite3.Connection, batch_id: str) -> dict[str, Any] | None:
    row = _one(conn, "SELECT * FROM job_batches WHERE id = ?", [batch_id])
    if row is not None:
        row["params"] = json.loads(row["params"])
        row["target"] = json.loads(row["target"])
        row["error_threshold"] = None if row["error_threshold"] is None else json.loads(row["error_threshold"])
    return row


def _batch_jobs(conn: sqlite3.Connection, batch_id: str) -> list[dict[str, Any]]:
    return _rows(
        conn,
        "SELECT id, device_id, seq, state, released_at, received_at, updated_at, finished_at, reason, progress,"
        " output IS NOT NULL AS has_output FROM jobs WHERE batch_id = ? ORDER BY seq",
        [batch_id],
    )


def _outcome(
    db: sqlite_utils.Database,
    batch: dict[str, Any],
    job: dict[str, Any],
    state: str,
    *,
    actor: str,
    now: float,
    reason: str | None = None,
) -> None:
    details = {
        "batch_id": batch["id"],
        "job_id": job["id"],
        "kind": batch["kind"],
        "requested_by": batch["created_by"],
        "reason": reason,
    }
    audit.record(db, actor=actor, action=f"job.{state}", target=job["device_id"], details=details, now=now)


def _end(
    db: sqlite_utils.Database,
    batch: dict[str, Any],
    jobs: Sequence[dict[str, Any]],
    withdraw: Iterable[str],
    *,
    status: Literal["stopped", "cancelled"],
    actor: str,
    reason: str,
    now: float,
    details: dict[str, Any],
) -> None:
    """Stop or cancel a running batch: withdraw ``withdraw`` (cancelled, never sent again) and audit it all."""
    conn = db.conn
    by_id = {job["id"]: job for job in jobs}
    withdrawn = [by_id[job_id] for job_id in withdraw]
    conn.execute(
        "UPDATE job_batches SET status = ?, ended_at = ?, ended_by = ?, end_reason = ? WHERE id = ?",
        [status, now, actor, reason, batch["id"]],
    )
    for job in withdrawn:
        conn.execute(
            "UPDATE jobs SET state = 'cancelled', updated_at = ?, finished_at = ?, reason = ? WHERE id = ?",
            [now, now, reason, job["id"]],
        )
    action = "job.batch_stopped" if status == "stopped" else "job.batch_cancelled"
    summary = {"reason": reason, "kind": batch["kind"], "cancelled": len(withdrawn), **details}
    audit.record(db, actor=actor, action=action, target=batch["id"], details=summary, now=now)
    for job in withdrawn:
        _outcome(db, batch, job, "cancelled", actor=actor, now=now, reason=reason)


def _logic_state(batch: dict[str, Any], jobs: Sequence[dict[str, Any]]) -> job_logic.BatchState:
    return job_logic.BatchState(
        status=batch["status"],
        expires_at=batch["expires_at"],
        jobs=[job_logic.JobState(j["id"], j["state"], j["released_at"]) for j in jobs],
        rate_per_minute=batch["rate_per_minute"],
        error_threshold=batch["error_threshold"],
    )


def _advance_batch(db: sqlite_utils.Database, batch_id: str, now: float) -> set[str]:
    """Apply :func:`job_logic.plan` to one batch (inside the caller's transaction); the devices to wake."""
    conn = db.conn
    batch = _batch(conn, batch_id)
    if batch is None:
        return set()
    jobs = _batch_jobs(conn, batch_id)
    plan = job_logic.plan(_logic_state(batch, jobs), now)
    if plan.empty:
        return set()
    by_id = {job["id"]: job for job in jobs}
    for job_id in plan.expire:
        conn.execute(
            "UPDATE jobs SET state = 'expired', updated_at = ?, finished_at = ? WHERE id = ?", [now, now, job_id]
        )
        _outcome(db, batch, by_id[job_id], "expired", actor="system", now=now)
    if plan.stop:
        errors = sum(1 for job in jobs if job["state"] in job_logic.ERRORS)
        limit = job_logic.threshold_count(batch["error_threshold"], len(jobs))
        details = {"errors": errors, "error_threshold": batch["error_threshold"], "stops_at": limit}
        reason = "error_threshold"
        _end(db, batch, jobs, plan.cancel, status="stopped", actor="system", reason=reason, now=now, details=details)
        log.warning("job batch %s stopped: %d failed or refused (threshold %s)", batch_id, errors, limit)
    woken = set()
    for job_id in plan.release:
        conn.execute(
            "UPDATE jobs SET state = 'released', released_at = ?, updated_at = ? WHERE id = ? AND state = 'queued'",
            [now, now, job_id],
        )
        woken.add(by_id[job_id]["device_id"])
    return woken


def advance(db: sqlite_utils.Database, now: float, batch_ids: Iterable[str] | None = None) -> set[str]:
    """Expire, stop and release due jobs (every batch with jobs not yet acknowledged, or ``batch_ids``).

    Returns the devices that have newly released jobs (to wake their waiting polls).
    """
    conn = db.conn
    if batch_ids is None:
        batch_ids = [
            row[0] for row in conn.execute("SELECT DISTINCT batch_id FROM jobs WHERE state IN ('queued', 'released')")
        ]
    woken: set[str] = set()
    for batch_id in batch_ids:
        with transaction(conn):
            woken |= _advance_batch(db, batch_id, now)
    return woken


def pending_jobs(
    db: sqlite_utils.Database, device_id: str, now: float, limit: int = MAX_JOBS_PER_POLL
) -> list[wire.Job]:
    """The device's released, unexpired jobs it has not reported on, oldest first."""
    rows = _rows(
        db.conn,
        "SELECT j.id, j.released_at, b.kind, b.params, b.config, b.expires_at FROM jobs j"
        " JOIN job_batches b ON b.id = j.batch_id JOIN devices d ON d.id = j.device_id"
        " WHERE j.device_id = ? AND j.state = 'released' AND b.expires_at > ? AND d.status = 'active'"
        " ORDER BY b.created_at, j.batch_id LIMIT ?",
        [device_id, now, limit],
    )
    return [
        wire.Job(
            job_id=row["id"],
            device_id=device_id,
            kind=row["kind"],
            params=json.loads(row["params"]),
            config=row["config"],
            issued_at=row["released_at"],
            expires_at=row["expires_at"],
        )
        for row in rows
    ]


def _counts(jobs: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(job_logic.STATES, 0)
    for job in jobs:
        counts[job["state"]] += 1
    return counts


def batch_view(db: sqlite_utils.Database, batch_id: str, now: float, *, with_devices: bool) -> dict[str, Any] | None:
    conn = db.conn
    batch = _batch(conn, batch_id)
    if batch is None:
        return None
    jobs = _batch_jobs(conn, batch_id)
    config = batch.pop("config")
    batch["config_sha256"] = None if config is None else hashlib.sha256(config.encode("utf-8")).hexdigest()
    batch["batch_id"] = batch.pop("id")
    batch["devices"] = len(jobs)
    batch["counts"] = _counts(jobs)
    batch["done"] = all(job["state"] in job_logic.FINAL for job in jobs)
    batch["next_release_at"] = (
        job_logic.next_release_at(
            [j["released_at"] for j in jobs if j["released_at"] is not None], now, batch["rate_per_minute"]
        )
        if batch["status"] == "running" and batch["counts"]["queued"]
        else None
    )
    if with_devices:
        batch["jobs"] = [
            {
                "device_id": j["device_id"],
                "job_id": j["id"],
                "state": j["state"],
                "reason": j["reason"],
                "progress": j["progress"],
                "released_at": j["released_at"],
                "received_at": j["received_at"],
                "updated_at": j["updated_at"],
                "finished_at": j["finished_at"],
                "has_output": bool(j["has_output"]),
            }
            for j in jobs
        ]
    return batch


# ---- waking long polls ---------------------------------------------------------------------------------


def _now(request: web.Request) -> float:
    return request.app[CLOCK_KEY]()


def _step(app: web.Application, now: float, batch_ids: Iterable[str] | None = None) -> None:
    app[WAITERS_KEY].wake(advance(app[DB_KEY].db, now, batch_ids))


# ---- device routes -------------------------------------------------------------------------------------


def _wait_seconds(request: web.Request) -> float:
    raw = request.query.get("wait", "0")
    try:
        wait = float(raw)
    except ValueError:
        raise RejectedError(400, "wait must be a number of seconds") from None
    if not (math.isfinite(wait) and 0 <= wait <= MAX_WAIT_SECONDS):
        raise RejectedError(400, f"wait must be between 0 and {MAX_WAIT_SECONDS:g} seconds")
    return wait


async def poll(request: web.Request) -> web.Response:
    verdict = await device_api.authenticate(request, b"")
    wait = _wait_seconds(request)
    seen = request.query.get(wire.UPDATE_HINT_FIELD) or None  # the update offer the device knows of
    app, loop = request.app, asyncio.get_running_loop()
    deadline = loop.time() + wait
    key = app[KEYS_KEY].jobs
    hint_for = app.get(wakeup.UPDATE_HINT_KEY)
    with app[WAITERS_KEY].polling(verdict.device_id):
        while True:
            now = _now(request)
            _step(app, now, _open_batches(app[DB_KEY].db, verdict.device_id))
            jobs = pending_jobs(app[DB_KEY].db, verdict.device_id, now)
            hint = hint_for(app[DB_KEY].db, verdict.device_id, now) if hint_for is not None else None
            left = deadline - loop.time()
            if jobs or hint != seen or left <= 0:
                break
            await app[WAITERS_KEY].wait(verdict.device_id, left)
    return web.json_response({"jobs": [wire.sign_job(job, key) for job in jobs], wire.UPDATE_HINT_FIELD: hint})


def _open_batches(db: sqlite_utils.Database, device_id: str) -> list[str]:
    """The batches holding jobs for this device that are still to be released or received."""
    sql = "SELECT DISTINCT batch_id FROM jobs WHERE device_id = ? AND state IN ('queued', 'released')"
    return [row[0] for row in db.conn.execute(sql, [device_id])]


def _device_job(conn: sqlite3.Connection, job_id: str, device_id: str) -> dict[str, Any]:
    job = _one(conn, "SELECT * FROM jobs WHERE id = ?", [job_id])
    if job is None or job["device_id"] != device_id:
        raise RejectedError(404, "no such job for this device")
    return job


async def report(request: web.Request) -> web.Response:
    body = await _read(request, "application/json", MAX_REPORT_BYTES)
    verdict = await device_api.authenticate(request, body)
    got: wire.JobReport
    try:
        got = wire.JobReport.model_validate_json(body)
    except ValidationError as exc:
        raise RejectedError(400, f"job report {_first_error(exc)}") from None
    if got.job_id != request.match_info["job_id"]:
        raise RejectedError(400, "job_id in the body does not match the path")
    app, now = request.app, _now(request)
    db = app[DB_KEY].db
    conn = db.conn
    job = _device_job(conn, got.job_id, verdict.device_id)
    batch = _batch(conn, job["batch_id"])
    assert batch is not None
    if got.output is not None:
        if batch["kind"] != "collect_diagnostics":
            raise RejectedError(400, "only collect_diagnostics reports carry output")
        problem = job_logic.output_problem(got.output)
        if problem is not None:
            raise RejectedError(400, problem)
    decision = job_logic.judge_report(
        kind=batch["kind"],
        current=job["state"],
        released_at=job["released_at"],
        expires_at=batch["expires_at"],
        reported=got.state,
        now=now,
    )
    if decision.action == "refuse":
        if decision.expire:
            _step(app, now, [batch["id"]])  # records the expiry (and its audit entry) before refusing
        raise RejectedError(decision.status, decision.reason, code=decision.code)
    if decision.action == "apply":
        with transaction(conn):
            _apply_report(app[DB_KEY], batch, job, got, verdict.device_id, now)
        _step(app, now, [batch["id"]])
    return web.json_response({"job_id": got.job_id, "state": decision.state})


def _apply_report(
    fleet: FleetDB, batch: dict[str, Any], job: dict[str, Any], got: wire.JobReport, device: str, now: float
) -> None:
    db = fleet.db
    final = got.state in job_logic.OUTCOMES
    db.conn.execute(
        "UPDATE jobs SET state = ?, updated_at = ?, received_at = COALESCE(received_at, ?),"
        " finished_at = CASE WHEN ? THEN ? ELSE finished_at END, reason = COALESCE(?, reason),"
        " progress = COALESCE(?, progress), output = COALESCE(?, output) WHERE id = ?",
        [got.state, now, now, final, now, got.reason, got.progress, got.output, job["id"]],
    )
    if not final:
        return
    _outcome(db, batch, job, got.state, actor=f"device:{device}", now=now, reason=got.reason)
    log.info("job %s (%s) on %s: %s %s", job["id"], batch["kind"], device, got.state, got.reason or "")
    if batch["kind"] == "factory_reset" and got.state == "succeeded":
        # Identity and data are wiped: the device must enroll again with a new token.
        by = f"job:{job['id']}"
        if fleet.set_status(device, "revoked", reason="factory_reset", by=by, now=now, allowed_from=_NOT_REVOKED):
            details = {"reason": "factory_reset", "status": "revoked", "job_id": job["id"], "batch_id": batch["id"]}
            audit.record(db, actor=f"device:{device}", action="device.revoke", target=device, details=details, now=now)


def _check_possession(token: str, new_key: wire.Ed25519PublicKey) -> wire.RotationProof:
    try:
        return wire.verify_rotation_proof(token, new_key)
    except wire.SignatureError as exc:
        raise RejectedError(401, str(exc)) from None
    except wire.WireError as exc:
        raise RejectedError(400, str(exc)) from None


async def rotate_key(request: web.Request) -> web.Response:
    body = await _read(request, "application/json", MAX_ROTATE_BYTES)
    verdict = await device_api.authenticate(request, body)
    got: RotateRequest = _parse(RotateRequest, body)
    app, now = request.app, _now(request)
    db = app[DB_KEY].db
    conn = db.conn
    device_id = verdict.device_id
    job = _device_job(conn, got.job_id, device_id)
    batch = _batch(conn, job["batch_id"])
    assert batch is not None
    if batch["kind"] != "rotate_key":
        raise RejectedError(409, "that job is not a rotate_key job")
    pending = job["state"] in {"released", "received", "running"}
    if not pending or (job["state"] == "released" and job_logic.is_expired(batch["expires_at"], now)):
        raise RejectedError(409, f"no pending rotate_key job (this one is {job['state']})")
    try:
        new_key = wire.decode_public_key(got.public_key)
    except wire.MalformedError as exc:
        raise RejectedError(400, str(exc)) from None
    claim = _check_possession(got.possession, new_key)
    expected = {
        "device_id": device_id,
        "job_id": got.job_id,
        "public_key": got.public_key,
        "nonce": verdict.proof.nonce,
    }
    wrong = [name for name, value in expected.items() if getattr(claim, name) != value]
    if wrong:
        raise RejectedError(400, f"possession {wrong[0]} does not match this request")
    device = app[DB_KEY].get_device(device_id)
    assert device is not None
    if app[DB_KEY].public_key_in_use(got.public_key):
        raise RejectedError(409, "this public key is already enrolled")
    issued = deviceauth.issue_credential(
        app[KEYS_KEY].credentials, device_id, new_key, now, app[CONFIG_KEY].credential_ttl_seconds
    )
    old_thumbprint = wire.thumbprint(wire.decode_public_key(device["public_key"]))
    try:
        with transaction(conn):
            cur = conn.execute(
                "UPDATE devices SET public_key = ?, credential_id = ?, credential_expires_at = ?"
                " WHERE id = ? AND public_key = ? AND credential_id = ? AND status = 'active'",
                [
                    got.public_key,
                    issued.credential_id,
                    issued.expires_at,
                    device_id,
                    device["public_key"],
                    verdict.credential_id,
                ],
            )
            if cur.rowcount != 1:
                raise RejectedError(409, "credential or key changed meanwhile; retry", code="credential_revoked")
            conn.execute(
                "UPDATE jobs SET state = 'succeeded', updated_at = ?, received_at = COALESCE(received_at, ?),"
                " finished_at = ?, progress = 1.0 WHERE id = ?",
                [now, now, now, job["id"]],
            )
            details = {
                "job_id": job["id"],
                "batch_id": batch["id"],
                "requested_by": batch["created_by"],
                "old_key_thumbprint": old_thumbprint,
                "new_key_thumbprint": wire.thumbprint(new_key),
            }
            actor = f"device:{device_id}"
            audit.record(db, actor=actor, action="device.rotate_key", target=device_id, details=details, now=now)
            _outcome(db, batch, job, "succeeded", actor=f"device:{device_id}", now=now)
    except sqlite3.IntegrityError:
        raise RejectedError(409, "this public key is already enrolled") from None
    log.info("device %s rotated its key (job %s)", device_id, job["id"])
    grant = wire.CredentialGrant(credential=issued.token, expires_in=issued.expires_at - now, server_time=now)
    return web.json_response(grant.model_dump())


# ---- operator routes -----------------------------------------------------------------------------------


def _validated_params(body: CreateJobs) -> dict[str, Any]:
    try:
        params = PARAMS[body.kind].model_validate(body.params)
    except ValidationError as exc:
        raise RejectedError(400, f"params for {body.kind}: {_first_error(exc)}") from None
    return params.model_dump()


def _validated_config(body: CreateJobs) -> str | None:
    if body.kind != "push_config":
        if body.config is not None:
            raise RejectedError(400, "config is only for push_config")
        return None
    if body.config is None:
        raise RejectedError(400, "push_config needs config (the device.toml text)")
    try:
        data = tomllib.loads(body.config)
    except tomllib.TOMLDecodeError as exc:
        raise RejectedError(400, f"config is not valid TOML: {exc}") from None
    except RecursionError:
        raise RejectedError(400, "config is nested too deeply") from None
    try:
        DeviceConfig.model_validate(data)
    except ValidationError as exc:
        raise RejectedError(400, describe_validation_error(exc, "config")) from None
    return body.config


def _check_size(kind: wire.JobKind, params: dict[str, Any], config: str | None, key: wire.Ed25519PrivateKey) -> None:
    """The largest job of this batch (longest ids) must fit the device's limit on a signed job."""
    probe = wire.Job(
        job_id="job-" + "0" * 32,
        device_id="d" * 64,
        kind=kind,
        params=params,
        config=config,
        issued_at=1e11,
        expires_at=1e11,
    )
    if len(wire.sign_job(probe, key)) > wire.MAX_JOB_BYTES:
        raise RejectedError(400, f"config too large: the signed job would exceed {wire.MAX_JOB_BYTES} bytes")


async def create_jobs(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    body: CreateJobs = _parse(CreateJobs, await _read(request, "application/json", MAX_CREATE_BYTES))
    if body.kind in ADMIN_KINDS and not has_role(who.role, "admin"):
        raise RejectedError(403, f"{body.kind} jobs need the admin role; {who.actor} is {who.role}")
    params = _validated_params(body)
    config = _validated_config(body)
    app, now = request.app, _now(request)
    _check_size(body.kind, params, config, app[KEYS_KEY].jobs)
    db = app[DB_KEY].db
    device_ids, skipped = select_devices(db, body.target)
    if not device_ids:
        raise RejectedError(400, "no active device matches the target")
    batch_id = create_batch(
        db,
        kind=body.kind,
        device_ids=device_ids,
        created_by=who.actor,
        now=now,
        expires_in_s=body.expires_in_s,
        params=params,
        config=config,
        target=body.target.model_dump(exclude_none=True),
        rate_per_minute=body.rate_per_minute,
        error_threshold=body.error_threshold,
    )
    _step(app, now, [batch_id])
    log.info("job batch %s (%s) for %d devices by %s", batch_id, body.kind, len(device_ids), who.actor)
    return web.json_response({"batch_id": batch_id, "devices": len(device_ids), "skipped": skipped}, status=201)


async def list_batches(request: web.Request) -> web.Response:
    await require(request, "viewer")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise RejectedError(400, "limit must be an integer") from None
    if not 1 <= limit <= JOB_LIST_LIMIT:
        raise RejectedError(400, f"limit must be between 1 and {JOB_LIST_LIMIT}")
    app, now = request.app, _now(request)
    _step(app, now)
    db = app[DB_KEY].db
    ids = [row[0] for row in db.conn.execute("SELECT id FROM job_batches ORDER BY created_at DESC LIMIT ?", [limit])]
    views = [batch_view(db, batch_id, now, with_devices=False) for batch_id in ids]
    return web.json_response({"batches": views, "now": now})


def _batch_or_404(request: web.Request) -> str:
    batch_id = request.match_info["batch_id"]
    if _batch(request.app[DB_KEY].db.conn, batch_id) is None:
        raise RejectedError(404, "no such job batch")
    return batch_id


async def get_batch(request: web.Request) -> web.Response:
    await require(request, "viewer")
    batch_id = _batch_or_404(request)
    app, now = request.app, _now(request)
    _step(app, now, [batch_id])
    return web.json_response(batch_view(app[DB_KEY].db, batch_id, now, with_devices=True))


async def cancel_batch(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    batch_id = _batch_or_404(request)
    app, now = request.app, _now(request)
    _step(app, now, [batch_id])
    db = app[DB_KEY].db
    with transaction(db.conn):
        batch = _batch(db.conn, batch_id)
        assert batch is not None
        if batch["status"] != "running":
            raise RejectedError(409, f"batch already {batch['status']}")
        jobs = _batch_jobs(db.conn, batch_id)
        withdraw = job_logic.cancel_plan(_logic_state(batch, jobs), now)
        _end(db, batch, jobs, withdraw, status="cancelled", actor=who.actor, reason="cancelled", now=now, details={})
    log.warning("job batch %s cancelled by %s", batch_id, who.actor)
    return web.json_response(batch_view(db, batch_id, now, with_devices=True))


async def get_output(request: web.Request) -> web.Response:
    await require(request, "operator")
    batch_id = _batch_or_404(request)
    conn = request.app[DB_KEY].db.conn
    row = _one(
        conn,
        "SELECT j.id, j.state, j.output, b.kind FROM jobs j JOIN job_batches b ON b.id = j.batch_id"
        " WHERE j.batch_id = ? AND j.device_id = ?",
        [batch_id, request.match_info["device_id"]],
    )
    if row is None:
        raise RejectedError(404, "that device is not in this batch")
    if row["kind"] != "collect_diagnostics":
        raise RejectedError(404, "only collect_diagnostics jobs have output")
    return web.json_response(
        {
            "batch_id": batch_id,
            "device_id": request.match_info["device_id"],
            "job_id": row["id"],
            "state": row["state"],
            "output": row["output"],
        }
    )


# ---- wiring --------------------------------------------------------------------------------------------


async def _ticker(app: web.Application) -> None:
    while True:
        await asyncio.sleep(TICK_SECONDS)
        try:
            _step(app, app[CLOCK_KEY]())
        except Exception:
            log.exception("job release pass failed; trying again in %.0f s", TICK_SECONDS)


def setup(app: web.Application) -> None:
    """Add the job routes and the task that expires and releases jobs (started and stopped with the app)."""
    wakeup.waiters(app)

    async def ticker_ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_ticker(app), name="job-release")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.cleanup_ctx.append(ticker_ctx)
    app.router.add_get(DEVICE_JOBS_PATH, poll)
    app.router.add_post(DEVICE_JOBS_PATH + "/{job_id}", report)
    app.router.add_post(ROTATE_PATH, rotate_key)
    app.router.add_get("/api/v1/jobs", list_batches)
    app.router.add_post("/api/v1/jobs", create_jobs)
    app.router.add_get("/api/v1/jobs/{batch_id}", get_batch)
    app.router.add_post("/api/v1/jobs/{batch_id}/cancel", cancel_batch)
    app.router.add_get("/api/v1/jobs/{batch_id}/devices/{device_id}/output", get_output)
