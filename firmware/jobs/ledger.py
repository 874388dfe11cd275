"""The job ledger: executed job ids (a job runs at most once, across restarts) and final reports not yet
delivered, in ``<device dir>/jobs.db`` (SQLite)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wardsight import wire


class JobLedger:
    """Executed job ids (at most once, across restarts) and final reports not yet delivered. SQLite."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL,"
            " expires_at REAL NOT NULL, received_at REAL NOT NULL, detail TEXT NOT NULL DEFAULT '{}')"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS reports (job_id TEXT PRIMARY KEY, body TEXT NOT NULL, queued_at REAL NOT NULL)"
        )

    def claim(self, job: wire.Job, state: str = "running") -> bool:
        """Record ``job`` as executed; False if its id was seen before (the caller must not run it)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO jobs (job_id, kind, state, expires_at, received_at) VALUES (?, ?, ?, ?, ?)",
                (job.job_id, job.kind, state, job.expires_at, time.time()),
            )
            return cur.rowcount == 1

    def known(self, job_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is not None

    def set_state(self, job_id: str, state: str, detail: Mapping[str, Any] | None = None) -> None:
        with self._lock:
            if detail is None:
                self._db.execute("UPDATE jobs SET state = ? WHERE job_id = ?", (state, job_id))
            else:
                self._db.execute(
                    "UPDATE jobs SET state = ?, detail = ? WHERE job_id = ?", (state, json.dumps(detail), job_id)
                )

    def in_state(self, *states: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(job_id, state, detail) of the jobs in ``states``, oldest first."""
        marks = ",".join("?" * len(states))
        with self._lock:
            rows = self._db.execute(
                f"SELECT job_id, state, detail FROM jobs WHERE state IN ({marks}) ORDER BY received_at",  # noqa: S608
                states,
            ).fetchall()
        return [(str(r[0]), str(r[1]), json.loads(r[2] or "{}")) for r in rows]

    def finish(self, report: wire.JobReport) -> None:
        """A final state: the job is done and its report waits for delivery (one transaction)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("UPDATE jobs SET state = 'done' WHERE job_id = ?", (report.job_id,))
                self._db.execute(
                    "INSERT OR REPLACE INTO reports (job_id, body, queued_at) VALUES (?, ?, ?)",
                    (report.job_id, report.model_dump_json(exclude_none=True), time.time()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def has_report(self, job_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM reports WHERE job_id = ?", (job_id,)).fetchone() is not None

    def reports(self) -> list[wire.JobReport]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM reports ORDER BY queued_at").fetchall()
        return [wire.JobReport.model_validate_json(r[0]) for r in rows]

    def delivered(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM reports WHERE job_id = ?", (job_id,))

    def recent(self, limit: int = 20) -> list[tuple[str, str, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, kind, state FROM jobs ORDER BY received_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    def prune(self, expired_before: float) -> int:
        """Forget finished, reported jobs that expired before ``expired_before`` (server time): a replay of
        one is refused as expired anyway."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM jobs WHERE state = 'done' AND expires_at < ?"
                " AND job_id NOT IN (SELECT job_id FROM reports)",
                (expired_before,),
            )
            return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


def ledger_path(device_dir: Path) -> Path:
    return device_dir / "jobs.db"
