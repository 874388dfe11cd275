"""The jobs feature's SQL: batches (``job_batches``) and their per-device jobs (``jobs``), with their audit entries.

:func:`advance` applies :func:`fleet.jobs.logic.plan` (expire, stop on the error threshold, release under the
rate limit); every outcome is audited per device (``job.succeeded``, ``job.failed``, ``job.refused``,
``job.expired``, ``job.cancelled``, with who asked for it), as are ``job.create``, ``job.batch_stopped`` and
``job.batch_cancelled``. A privacy-reducing ``push_config`` batch (:mod:`fleet.jobs.privacy`) is created
*awaiting approval* (a ``job_approvals`` row; its jobs stay queued, :func:`fleet.jobs.logic.plan` releases nothing)
until a second admin approves it (:func:`approve`, ``job.approve``) or it is rejected (:func:`reject`,
``job.reject``) or cancelled. The tables are made by the numbered migrations in ``fleet.store.migrations``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from fleet.audit import log as audit
from fleet.jobs import logic
from fleet.jobs.bodies import Target
from fleet.store.connection import Connection, Database
from fleet.store.schema import conditions, transaction

log = logging.getLogger("wardsight.fleet.jobs")


def rows(conn: Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def one(conn: Connection, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
    found = rows(conn, sql, params)
    return found[0] if found else None


# ---- batches -------------------------------------------------------------------------------------------


def select_devices(db: Database, target: Target) -> tuple[list[str], list[str]]:
    """(active devices the target selects, in site/ward/room order; listed ids skipped as unknown or not active)."""
    clauses, params = conditions(("site = ?", target.site), ("ward = ?", target.ward), ("room = ?", target.room))
    where = " AND ".join(["status = 'active'", *clauses])
    sql = f"SELECT id, tags FROM devices WHERE {where} ORDER BY site, ward, room, id"  # noqa: S608
    listed = set(target.device_ids or ())
    wanted = set(target.tags or ())
    chosen = []
    for row in rows(db.conn, sql, params):
        if target.device_ids is not None and row["id"] not in listed:
            continue
        if wanted and not wanted <= set(json.loads(row["tags"] or "[]")):
            continue
        chosen.append(row["id"])
    skipped = sorted(listed - set(chosen)) if target.device_ids is not None else []
    return chosen, skipped


def _config_digest(config: str | None) -> dict[str, str]:
    """The config's sha256 for the audit log: the text may hold camera credentials, so only its digest goes in."""
    if config is None:
        return {}
    return {"config_sha256": hashlib.sha256(config.encode("utf-8")).hexdigest()}


def _queue_jobs(conn: Connection, batch_id: str, device_ids: Sequence[str], now: float) -> None:
    for seq, device_id in enumerate(device_ids):
        conn.execute(
            "INSERT INTO jobs (id, batch_id, device_id, seq, state, updated_at) VALUES (?, ?, ?, ?, 'queued', ?)",
            ["job-" + secrets.token_hex(16), batch_id, device_id, seq, now],
        )


def create_batch(
    db: Database,
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
    privacy: dict[str, Any] | None = None,
    needs_approval: bool = False,
) -> str:
    """Store a batch with one queued job per device and audit it (``job.create``); :func:`advance` releases.

    ``privacy`` is what a ``push_config`` changes (:meth:`fleet.jobs.privacy.BatchPrivacy.audit`), in the audit
    entry next to the config's digest; with ``needs_approval`` the batch awaits a second admin (:func:`approve`).
    The caller has validated the request (the HTTP route does); returns the batch id.
    """
    batch_id = "batch-" + secrets.token_hex(8)
    conn = db.conn
    params = params or {}
    target = target if target is not None else {"device_ids": list(device_ids)}
    threshold = None if error_threshold is None else json.dumps(error_threshold)
    with transaction(conn):
        conn.execute(
            "INSERT INTO job_batches (id, kind, params, config, target, created_by, created_at, expires_at,"
            " rate_per_minute, error_threshold, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running')",
            [batch_id, kind, json.dumps(params, sort_keys=True), config, json.dumps(target, sort_keys=True), created_by,
             now, now + expires_in_s, rate_per_minute, threshold],
        )  # fmt: skip
        _queue_jobs(conn, batch_id, device_ids, now)
        details: dict[str, Any] = {
            "kind": kind,
            "params": params,
            "target": target,
            "devices": list(device_ids),
            "count": len(device_ids),
            "expires_at": now + expires_in_s,
            "rate_per_minute": rate_per_minute,
            "error_threshold": error_threshold,
            **_config_digest(config),
        }
        details.update({"privacy": privacy} if privacy is not None else {})
        details.update({"approval": "awaiting"} if needs_approval else {})
        if needs_approval:
            conn.execute(
                "INSERT INTO job_approvals (batch_id, state, requested_by, requested_at, changes)"
                " VALUES (?, 'awaiting', ?, ?, ?)",
                [batch_id, created_by, now, json.dumps(privacy or {}, sort_keys=True)],
            )
        audit.record(db, actor=created_by, action="job.create", target=batch_id, details=details, now=now)
    return batch_id


def get_approval(conn: Connection, batch_id: str) -> dict[str, Any] | None:
    """The batch's ``job_approvals`` row (``changes`` decoded); None when it needed no approval."""
    row = one(conn, "SELECT * FROM job_approvals WHERE batch_id = ?", [batch_id])
    if row is not None:
        row["changes"] = json.loads(row["changes"])
    return row


def get_batch(conn: Connection, batch_id: str) -> dict[str, Any] | None:
    """The ``job_batches`` row with its JSON columns decoded and its ``approval`` (None if it needed none); None if
    there is no such batch. A running batch whose approval is awaited has the status ``awaiting_approval``."""
    row = one(conn, "SELECT * FROM job_batches WHERE id = ?", [batch_id])
    if row is not None:
        row["params"] = json.loads(row["params"])
        row["target"] = json.loads(row["target"])
        row["error_threshold"] = None if row["error_threshold"] is None else json.loads(row["error_threshold"])
        row["approval"] = get_approval(conn, batch_id)
        if row["status"] == "running" and row["approval"] is not None and row["approval"]["state"] == "awaiting":
            row["status"] = "awaiting_approval"
    return row


def batch_jobs(conn: Connection, batch_id: str) -> list[dict[str, Any]]:
    """The batch's jobs in release order (``has_output`` instead of the diagnostics text), each with its device's
    ``device_name``, ``site``, ``ward`` and ``room`` as they are now (None for a device no longer known)."""
    return rows(
        conn,
        "SELECT j.id, j.device_id, j.seq, j.state, j.released_at, j.received_at, j.updated_at, j.finished_at,"
        " j.reason, j.progress, j.output IS NOT NULL AS has_output, d.name AS device_name, d.site, d.ward, d.room"
        " FROM jobs j LEFT JOIN devices d ON d.id = j.device_id WHERE j.batch_id = ? ORDER BY j.seq",
        [batch_id],
    )


def recent_batch_ids(db: Database, limit: int) -> list[str]:
    """The ids of the ``limit`` newest batches, newest first."""
    return [row[0] for row in db.conn.execute("SELECT id FROM job_batches ORDER BY created_at DESC LIMIT ?", [limit])]


def job_output(conn: Connection, batch_id: str, device_id: str) -> dict[str, Any] | None:
    """The device's job in the batch (``id``, ``state``, ``output``) and the batch's ``kind``; None if none."""
    return one(
        conn,
        "SELECT j.id, j.state, j.output, b.kind FROM jobs j JOIN job_batches b ON b.id = j.batch_id"
        " WHERE j.batch_id = ? AND j.device_id = ?",
        [batch_id, device_id],
    )


def logic_state(batch: dict[str, Any], jobs: Sequence[dict[str, Any]]) -> logic.BatchState:
    """A stored batch and its jobs as :mod:`fleet.jobs.logic` sees them."""
    return logic.BatchState(
        status=batch["status"],
        expires_at=batch["expires_at"],
        jobs=[logic.JobState(j["id"], j["state"], j["released_at"]) for j in jobs],
        rate_per_minute=batch["rate_per_minute"],
        error_threshold=batch["error_threshold"],
    )


# ---- outcomes and ends ---------------------------------------------------------------------------------


def record_outcome(
    db: Database,
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


def end_batch(
    db: Database,
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
        record_outcome(db, batch, job, "cancelled", actor=actor, now=now, reason=reason)


def decide_approval(conn: Connection, batch_id: str, state: str, actor: str, now: float) -> None:
    conn.execute(
        "UPDATE job_approvals SET state = ?, decided_by = ?, decided_at = ? WHERE batch_id = ? AND state = 'awaiting'",
        [state, actor, now, batch_id],
    )


def cancel(db: Database, batch_id: str, *, actor: str, now: float) -> str | None:
    """An operator's cancel of a stored batch: withdraw what :func:`logic.cancel_plan` says, in one transaction.

    Returns None when cancelled, or the batch's status when it is no longer running (nothing changed). A batch
    awaiting approval is cancelled too (its approval with it).
    """
    with transaction(db.conn):
        batch = get_batch(db.conn, batch_id)
        assert batch is not None
        if batch["status"] not in ("running", "awaiting_approval"):
            return str(batch["status"])
        if batch["status"] == "awaiting_approval":
            decide_approval(db.conn, batch_id, "cancelled", actor, now)
        jobs = batch_jobs(db.conn, batch_id)
        withdraw = logic.cancel_plan(logic_state(batch, jobs), now)
        end_batch(db, batch, jobs, withdraw, status="cancelled", actor=actor, reason="cancelled", now=now, details={})
    return None


# ---- the release pass ----------------------------------------------------------------------------------


def _stop(
    db: Database, batch: dict[str, Any], jobs: Sequence[dict[str, Any]], cancel: Sequence[str], now: float
) -> None:
    errors = sum(1 for job in jobs if job["state"] in logic.ERRORS)
    limit = logic.threshold_count(batch["error_threshold"], len(jobs))
    details = {"errors": errors, "error_threshold": batch["error_threshold"], "stops_at": limit}
    reason = "error_threshold"
    end_batch(db, batch, jobs, cancel, status="stopped", actor="system", reason=reason, now=now, details=details)
    log.warning("job batch %s stopped: %d failed or refused (threshold %s)", batch["id"], errors, limit)


def _advance_batch(db: Database, batch_id: str, now: float) -> set[str]:
    """Apply :func:`logic.plan` to one batch (inside the caller's transaction); the devices to wake."""
    conn = db.conn
    batch = get_batch(conn, batch_id)
    if batch is None:
        return set()
    jobs = batch_jobs(conn, batch_id)
    plan = logic.plan(logic_state(batch, jobs), now)
    if plan.empty:
        return set()
    by_id = {job["id"]: job for job in jobs}
    for job_id in plan.expire:
        conn.execute(
            "UPDATE jobs SET state = 'expired', updated_at = ?, finished_at = ? WHERE id = ?", [now, now, job_id]
        )
        record_outcome(db, batch, by_id[job_id], "expired", actor="system", now=now)
    if plan.stop:
        _stop(db, batch, jobs, plan.cancel, now)
    woken = set()
    for job_id in plan.release:
        conn.execute(
            "UPDATE jobs SET state = 'released', released_at = ?, updated_at = ? WHERE id = ? AND state = 'queued'",
            [now, now, job_id],
        )
        woken.add(by_id[job_id]["device_id"])
    return woken


def advance(db: Database, now: float, batch_ids: Iterable[str] | None = None) -> set[str]:
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
