"""The jobs a device fetches and reports on, in SQL: its pending jobs, a report's effect, a key rotation.

Every final outcome is audited per device like the batch's other outcomes (:mod:`fleet.jobs.store`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fleet.audit import log as audit
from fleet.jobs import logic, store
from fleet.store.connection import Connection, Database
from fleet.store.db import FleetDB
from fleet.store.schema import transaction
from wardsight import wire

log = logging.getLogger("wardsight.fleet.jobs")

MAX_JOBS_PER_POLL = 10
_NOT_REVOKED = ("pending", "active", "quarantined")


def pending_jobs(db: Database, device_id: str, now: float, limit: int = MAX_JOBS_PER_POLL) -> list[wire.Job]:
    """The device's released, unexpired jobs it has not reported on, oldest first.

    A job of a batch that needed a second admin's approval carries it (``privacy_approval``: who asked and who
    approved); one whose approval is not granted is never sent (its jobs are not released either).
    """
    rows = store.rows(
        db.conn,
        "SELECT j.id, j.released_at, b.kind, b.params, b.config, b.expires_at,"
        " a.state AS approval, a.requested_by, a.decided_by, a.decided_at FROM jobs j"
        " JOIN job_batches b ON b.id = j.batch_id JOIN devices d ON d.id = j.device_id"
        " LEFT JOIN job_approvals a ON a.batch_id = b.id"
        " WHERE j.device_id = ? AND j.state = 'released' AND b.expires_at > ? AND d.status = 'active'"
        " AND (a.state IS NULL OR a.state = 'approved') ORDER BY b.created_at, j.batch_id LIMIT ?",
        [device_id, now, limit],
    )
    return [_job(device_id, row) for row in rows]


def _job(device_id: str, row: dict[str, Any]) -> wire.Job:
    """One pending job's row as the job the device is sent (signed by the poll)."""
    approval = None
    if row["approval"] == "approved":
        asked, approved = row["requested_by"][:128], row["decided_by"][:128]  # actors are shorter; the wire's limit
        approval = wire.PrivacyApproval(approved_by=(asked, approved), at=row["decided_at"])
    return wire.Job(
        job_id=row["id"],
        device_id=device_id,
        kind=row["kind"],
        params=json.loads(row["params"]),
        config=row["config"],
        issued_at=row["released_at"],
        expires_at=row["expires_at"],
        privacy_approval=approval,
    )


def open_batches(db: Database, device_id: str) -> list[str]:
    """The batches holding jobs for this device that are still to be released or received."""
    sql = "SELECT DISTINCT batch_id FROM jobs WHERE device_id = ? AND state IN ('queued', 'released')"
    return [row[0] for row in db.conn.execute(sql, [device_id])]


def get_job(conn: Connection, job_id: str) -> dict[str, Any] | None:
    """The ``jobs`` row; None if there is no such job."""
    return store.one(conn, "SELECT * FROM jobs WHERE id = ?", [job_id])


def apply_report(
    fleet: FleetDB, batch: dict[str, Any], job: dict[str, Any], got: wire.JobReport, device: str, now: float
) -> None:
    """Store a report :func:`logic.judge_report` accepted (inside the caller's transaction); audit an outcome.

    A succeeded ``factory_reset`` also revokes the device: it must enroll again with a new token.
    """
    db = fleet.db
    final = got.state in logic.OUTCOMES
    db.conn.execute(
        "UPDATE jobs SET state = ?, updated_at = ?, received_at = COALESCE(received_at, ?),"
        " finished_at = CASE WHEN ? = 1 THEN ? ELSE finished_at END, reason = COALESCE(?, reason),"
        " progress = COALESCE(?, progress), output = COALESCE(?, output) WHERE id = ?",
        [got.state, now, now, final, now, got.reason, got.progress, got.output, job["id"]],
    )
    if not final:
        return
    store.record_outcome(db, batch, job, got.state, actor=f"device:{device}", now=now, reason=got.reason)
    log.info("job %s (%s) on %s: %s %s", job["id"], batch["kind"], device, got.state, got.reason or "")
    if batch["kind"] == "factory_reset" and got.state == "succeeded":
        # Identity and data are wiped: the device must enroll again with a new token.
        by = f"job:{job['id']}"
        if fleet.set_status(device, "revoked", reason="factory_reset", by=by, now=now, allowed_from=_NOT_REVOKED):
            details = {"reason": "factory_reset", "status": "revoked", "job_id": job["id"], "batch_id": batch["id"]}
            audit.record(db, actor=f"device:{device}", action="device.revoke", target=device, details=details, now=now)


def record_rotation(
    db: Database,
    device: dict[str, Any],
    batch: dict[str, Any],
    job: dict[str, Any],
    *,
    new_public_key: str,
    presented_credential_id: str | None,
    credential_id: str,
    credential_expires_at: float,
    now: float,
) -> bool:
    """Swap the device's key and credential and mark its ``rotate_key`` job succeeded, in one transaction, audited.

    False (nothing changed) when the device's key or credential is no longer the one presented, or it is not
    active. Raises ``sqlite3.IntegrityError`` when the new key is already another device's.
    """
    conn = db.conn
    device_id = device["id"]
    with transaction(conn):
        cur = conn.execute(
            "UPDATE devices SET public_key = ?, credential_id = ?, credential_expires_at = ?"
            " WHERE id = ? AND public_key = ? AND credential_id = ? AND status = 'active'",
            [
                new_public_key,
                credential_id,
                credential_expires_at,
                device_id,
                device["public_key"],
                presented_credential_id,
            ],
        )
        if cur.rowcount != 1:
            return False
        conn.execute(
            "UPDATE jobs SET state = 'succeeded', updated_at = ?, received_at = COALESCE(received_at, ?),"
            " finished_at = ?, progress = 1.0 WHERE id = ?",
            [now, now, now, job["id"]],
        )
        details = {
            "job_id": job["id"],
            "batch_id": batch["id"],
            "requested_by": batch["created_by"],
            "old_key_thumbprint": wire.thumbprint(wire.decode_public_key(device["public_key"])),
            "new_key_thumbprint": wire.thumbprint(wire.decode_public_key(new_public_key)),
        }
        actor = f"device:{device_id}"
        audit.record(db, actor=actor, action="device.rotate_key", target=device_id, details=details, now=now)
        store.record_outcome(db, batch, job, "succeeded", actor=actor, now=now)
    return True
