"""Approvals of job batches that reduce privacy (a push_config that removes, shrinks or moves a privacy region or
changes the camera source): a second admin approves or rejects a batch awaiting it; each decision is audited with
what the batch changes. The batch and its jobs live in :mod:`fleet.jobs.store`."""

from __future__ import annotations

from typing import Any

from fleet.audit import log as audit
from fleet.jobs import logic
from fleet.jobs.privacy import person_of
from fleet.jobs.store import batch_jobs, decide_approval, end_batch, get_batch, logic_state
from fleet.store.connection import Database
from fleet.store.schema import transaction


def _approval_problem(batch: dict[str, Any], now: float) -> tuple[int, str] | None:
    """Why the batch cannot be approved or rejected now (HTTP status, message), or None."""
    if batch["approval"] is None:
        return 409, "this batch needs no approval"
    if batch["status"] != "awaiting_approval":
        state = batch["approval"]["state"]
        by = batch["approval"]["decided_by"]
        return 409, f"this batch is not awaiting approval (approval {state}{f' by {by}' if by else ''})"
    if logic.is_expired(batch["expires_at"], now):
        return 409, "this batch expired before it was approved; create it again"
    return None


def approve(db: Database, batch_id: str, *, actor: str, person: str, now: float) -> tuple[int, str] | None:
    """A second admin's approval of a batch awaiting it, audited (``job.approve``: who asked, who approved, what it
    changes); :func:`advance` then releases its jobs, each carrying the approval. ``person`` is who ``actor`` acts
    for (:func:`fleet.jobs.privacy.person_of`); the caller has checked the role.

    Returns None when approved, else (HTTP status, why): not awaiting approval, expired, or the person who asked.
    """
    with transaction(db.conn):
        batch = get_batch(db.conn, batch_id)
        assert batch is not None
        problem = _approval_problem(batch, now)
        if problem is not None:
            return problem
        approval = batch["approval"]
        if person_of(db.conn, approval["requested_by"]) == person:
            return 403, (
                f"{actor} cannot approve a change asked for by {approval['requested_by']}: the same person"
                " (two-person rule: another admin must approve it)"
            )
        decide_approval(db.conn, batch_id, "approved", actor, now)
        details = {
            "kind": batch["kind"],
            "requested_by": approval["requested_by"],
            "approved_by": actor,
            "devices": len(batch_jobs(db.conn, batch_id)),
            **approval["changes"],
        }
        audit.record(db, actor=actor, action="job.approve", target=batch_id, details=details, now=now)
    return None


def reject(db: Database, batch_id: str, *, actor: str, now: float) -> tuple[int, str] | None:
    """An admin's rejection of a batch awaiting approval: it ends cancelled (``rejected``), no job was ever sent;
    audited (``job.reject``). Returns None when rejected, else (HTTP status, why)."""
    with transaction(db.conn):
        batch = get_batch(db.conn, batch_id)
        assert batch is not None
        problem = _approval_problem(batch, now)
        if problem is not None:
            return problem
        approval = batch["approval"]
        decide_approval(db.conn, batch_id, "rejected", actor, now)
        details = {"kind": batch["kind"], "requested_by": approval["requested_by"], **approval["changes"]}
        audit.record(db, actor=actor, action="job.reject", target=batch_id, details=details, now=now)
        jobs = batch_jobs(db.conn, batch_id)
        withdraw = logic.cancel_plan(logic_state(batch, jobs), now)
        end_batch(db, batch, jobs, withdraw, status="cancelled", actor=actor, reason="rejected", now=now, details={})
    return None
