"""A batch as the operator API shows it: its settings, counts per state and, on request, every device's job."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from fleet.jobs import logic, store
from fleet.store.connection import Database


def _counts(jobs: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(logic.STATES, 0)
    for job in jobs:
        counts[job["state"]] += 1
    return counts


def _job_view(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "device_id": job["device_id"],
        "device_name": job["device_name"],
        "site": job["site"],
        "ward": job["ward"],
        "room": job["room"],
        "job_id": job["id"],
        "state": job["state"],
        "reason": job["reason"],
        "progress": job["progress"],
        "released_at": job["released_at"],
        "received_at": job["received_at"],
        "updated_at": job["updated_at"],
        "finished_at": job["finished_at"],
        "has_output": bool(job["has_output"]),
    }


def batch_view(db: Database, batch_id: str, now: float, *, with_devices: bool) -> dict[str, Any] | None:
    """The batch for ``GET /api/v1/jobs[/{batch_id}]`` (the config only as its sha256; ``approval``: None, or the
    two-person approval of a privacy-reducing push with what it changes); None if there is none."""
    conn = db.conn
    batch = store.get_batch(conn, batch_id)
    if batch is None:
        return None
    jobs = store.batch_jobs(conn, batch_id)
    config = batch.pop("config")
    batch["config_sha256"] = None if config is None else hashlib.sha256(config.encode("utf-8")).hexdigest()
    batch["batch_id"] = batch.pop("id")
    if batch["approval"] is not None:  # a privacy-reducing push_config: who asked, who decided, what it changes
        batch["approval"].pop("batch_id")
    batch["devices"] = len(jobs)
    batch["counts"] = _counts(jobs)
    batch["done"] = all(job["state"] in logic.FINAL for job in jobs)
    batch["next_release_at"] = (
        logic.next_release_at(
            [j["released_at"] for j in jobs if j["released_at"] is not None], now, batch["rate_per_minute"]
        )
        if batch["status"] == "running" and batch["counts"]["queued"]
        else None
    )
    if with_devices:
        batch["jobs"] = [_job_view(j) for j in jobs]
    return batch
