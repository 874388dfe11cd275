"""Migration 15: the two-person approval of privacy-reducing configuration jobs (:mod:`fleet.jobs.privacy`).

- ``job_approvals``: one row per job batch that needs a second admin's approval (a ``push_config`` that removes,
  shrinks or moves a privacy region or changes the camera source): who asked and when, what it changes (JSON:
  region names and areas before and after, source kinds; never the configuration's text), and who decided, when and
  how (``awaiting`` until then; ``approved``, ``rejected``, or ``cancelled`` when the batch was cancelled first).
  While it is ``awaiting``, the batch's jobs stay queued and no device is sent one.
"""

from __future__ import annotations

from fleet.store.schema import executing

STATEMENTS = (
    """CREATE TABLE job_approvals (
        batch_id TEXT PRIMARY KEY REFERENCES job_batches (id),
        state TEXT NOT NULL CHECK (state IN ('awaiting', 'approved', 'rejected', 'cancelled')),
        requested_by TEXT NOT NULL,
        requested_at REAL NOT NULL,
        changes TEXT NOT NULL,
        decided_by TEXT,
        decided_at REAL
    )""",
    "CREATE INDEX job_approvals_state ON job_approvals (state)",
)

apply = executing(STATEMENTS)
