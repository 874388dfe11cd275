"""Reporting on jobs: progress best effort, final reports kept in the ledger until the server has them."""

from __future__ import annotations

import contextlib
import logging

from firmware.jobs.hooks import JobTransport
from firmware.jobs.ledger import JobLedger
from firmware.transport import NotAuthorizedError, UnreachableError
from wardsight import wire

log = logging.getLogger("wardsight.device.jobs")


class Reporter:
    """Sends a device's job reports; a final one is recorded first, so it survives until delivered."""

    def __init__(self, client: JobTransport, ledger: JobLedger) -> None:
        self.client = client
        self.ledger = ledger

    def flush(self) -> int:
        """Send the final reports the server does not have yet; returns how many it took."""
        sent = 0
        for report in self.ledger.reports():
            self.post(report)
            self.ledger.delivered(report.job_id)
            sent += 1
        return sent

    def post(self, report: wire.JobReport) -> None:
        """Raises when the server cannot be asked; a refusal (4xx) will not change, so it is only logged."""
        body = report.model_dump_json(exclude_none=True).encode()
        reply = self.client.request("POST", f"{wire.JOBS_PATH}/{report.job_id}", body, "application/json")
        if 200 <= reply.status < 300:
            log.info(
                "job %s reported %s%s", report.job_id, report.state, f" ({report.reason})" if report.reason else ""
            )
        else:
            log.warning(
                "the server refused the report on job %s (HTTP %d): %s", report.job_id, reply.status, reply.error
            )

    def progress(self, job_id: str, state: wire.JobState) -> None:
        """A best-effort intermediate report (received, running)."""
        try:
            self.post(wire.JobReport(job_id=job_id, state=state))
        except (UnreachableError, NotAuthorizedError) as exc:
            log.info("job %s: '%s' not reported: %s", job_id, state, exc)

    def final(self, report: wire.JobReport) -> wire.JobReport:
        self.ledger.finish(report)
        with contextlib.suppress(UnreachableError, NotAuthorizedError):
            self.flush()  # what is not delivered now goes with the next loop
        return report

    def refuse(self, job_id: str, reason: str) -> wire.JobReport:
        """Nothing ran; only the report is kept until delivered (the id is not marked executed)."""
        log.warning("job %s refused: %s", job_id, reason)
        return self.final(wire.JobReport(job_id=job_id, state="refused", reason=reason))

    def ok(self, job: wire.Job, output: str | None = None) -> wire.JobReport:
        return self.final(wire.JobReport(job_id=job.job_id, state="succeeded", output=output))

    def fail(self, job: wire.Job, reason: str) -> wire.JobReport:
        log.warning("job %s (%s) failed: %s", job.job_id, job.kind, reason)
        return self.final(wire.JobReport(job_id=job.job_id, state="failed", reason=reason))
