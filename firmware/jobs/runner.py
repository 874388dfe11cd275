"""The job runner: a thread that long-polls for jobs, checks each one and runs it at most once (see
:mod:`firmware.jobs`); each kind is carried out by its own module."""

from __future__ import annotations

import logging
import random
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, get_args

import jwt

from firmware.diagnostics import MAX_BUNDLE_BYTES, install_log_ring
from firmware.identity import Identity
from firmware.jobs import config, diagnostics, lifecycle, rotation, selftest
from firmware.jobs.context import JobContext, JobKindRunner
from firmware.jobs.hooks import JobHooks, JobTransport
from firmware.jobs.ledger import JobLedger, ledger_path
from firmware.jobs.loglevel import LogLevels
from firmware.jobs.reports import Reporter
from firmware.transport import NotAuthorizedError, UnreachableError
from wardsight import wire

log = logging.getLogger("wardsight.device.jobs")

POLL_WAIT = 25.0
CLOCK_SKEW = 300.0  # a job may look issued this far in the future (server clock steps)
KNOWN_KINDS = frozenset(get_args(wire.JobKind))
KINDS: dict[str, JobKindRunner] = {
    "restart_agent": lifecycle.restart,
    "reboot": lifecycle.reboot,
    "push_config": config.push_config,
    "collect_diagnostics": diagnostics.collect_diagnostics,
    "self_test": selftest.self_test,
    "rotate_key": rotation.rotate_key,
    "set_log_level": lambda ctx, job: ctx.levels.run_job(job, ctx.reports),
    "factory_reset": lifecycle.factory_reset,
}


class JobRunner:
    """Fetches, checks, runs and reports maintenance jobs for one enrolled device (see :mod:`firmware.jobs`)."""

    def __init__(
        self,
        client: JobTransport,
        identity: Identity,
        device_dir: Path,
        hooks: JobHooks,
        *,
        wait: float = POLL_WAIT,
        min_interval: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        self.client = client
        self.identity = identity
        self.device_dir = device_dir
        self.hooks = hooks
        self.wait = max(0.0, min(30.0, wait))
        self.min_interval = min_interval
        self.max_backoff = max_backoff
        self.ledger = JobLedger(ledger_path(device_dir))
        self.ring = hooks.log_ring or install_log_ring()
        self.reports = Reporter(client, self.ledger)
        self.levels = LogLevels()
        self.context = JobContext(
            client, identity, device_dir, hooks, self.ledger, self.reports, self.ring, self.levels, self._halt
        )
        self._job_key = wire.decode_public_key(identity.job_key) if identity.job_key else None
        self._stop = threading.Event()
        self._halted = False  # a job ended this process: run nothing more
        self._thread = threading.Thread(target=self._run, name="jobs", daemon=True)
        self._unreadable: set[int] = set()
        self._running: set[str] = set()  # jobs this process is running now
        self._update_seen = ""  # the update offer the server last named in a poll ("" for none)
        self.handled = 0

    # ---- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> JobRunner:
        self.resume()
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)  # a long poll in flight is left to the daemon thread
        self.levels.restore()

    def close(self) -> None:
        self.stop()
        if not self._thread.is_alive():
            self.ledger.close()

    def resume(self) -> None:
        """After a start: finish the jobs that needed one (restart, reboot, pushed configuration) and fail the
        ones a crash interrupted. Their reports are queued and sent by the loop."""
        for job_id, state, _ in self.ledger.in_state("restarting", "rebooting", "config_applied", "running"):
            if state == "running":
                log.warning("job %s was interrupted by the end of the last run", job_id)
                report = wire.JobReport(job_id=job_id, state="failed", reason="interrupted")
            else:
                log.info("job %s done: the agent started again (%s)", job_id, state)
                report = wire.JobReport(job_id=job_id, state="succeeded")
            self.ledger.finish(report)

    def _halt(self) -> None:
        self._halted = True

    # ---- the loop ------------------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set() and not self._halted:
            started = time.monotonic()
            try:
                self.flush_reports()
                self.poll_once()
                failures = 0
            except (UnreachableError, NotAuthorizedError) as exc:
                failures += 1
                log.warning("jobs: %s", exc)
            except Exception:  # the job loop must never take the agent down
                failures += 1
                log.exception("jobs: unexpected error")
            if failures:
                delay = min(self.max_backoff, 2.0 ** min(failures - 1, 10)) * random.uniform(0.5, 1.0)  # noqa: S311
            else:
                delay = self.min_interval - (time.monotonic() - started)
            if delay > 0 and self._stop.wait(delay):
                return

    def poll_once(self, wait: float | None = None) -> int:
        """One long poll; handles what it brings. Returns how many jobs came."""
        wait = self.wait if wait is None else wait
        query = urllib.parse.urlencode({"wait": f"{wait:g}", wire.UPDATE_HINT_FIELD: self._update_seen})
        reply = self.client.request("GET", wire.JOBS_PATH, query=query, timeout=wait + 15.0)
        if reply.status != 200:
            raise UnreachableError(f"job poll answered HTTP {reply.status}: {reply.error}")
        self._update_hint(reply.body.get(wire.UPDATE_HINT_FIELD))
        tokens = reply.body.get("jobs")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise UnreachableError("job poll answered without a list of jobs")
        for token in tokens:
            if self._stop.is_set() or self._halted:
                break
            try:
                self.handle(token)
            except (UnreachableError, NotAuthorizedError):
                raise
            except Exception:
                log.exception("job handling failed")
        if self.client.clock_offset is not None and not self._halted:
            self.ledger.prune(self.client.server_now() - 86400.0)
        return len(tokens)

    def _update_hint(self, hint: object) -> None:
        """The server named a (new) update offer for this device: wake the OTA loop to fetch it."""
        seen = hint if isinstance(hint, str) else ""
        if seen != self._update_seen:
            self._update_seen = seen
            if seen and self.hooks.update_waiting is not None:
                log.info("the server has an update waiting (%s)", seen)
                self.hooks.update_waiting()

    def flush_reports(self) -> int:
        """Send the final reports the server does not have yet; returns how many it took."""
        return self.reports.flush()

    # ---- one job -------------------------------------------------------------------------------------

    def handle(self, token: str) -> wire.JobReport | None:
        """Check one job and run it if it passes. Returns the final report (None when nothing can be said)."""
        job_id = _job_id_of(token)
        if job_id is None:
            digest = hash(token)
            if digest not in self._unreadable:
                self._unreadable.add(digest)
                log.warning("a job without a readable job id was ignored")
            return None
        job = self._verify(token, job_id)
        if isinstance(job, wire.JobReport):
            return job
        if job.device_id != self.identity.device_id:
            return self.reports.refuse(job_id, "wrong_device")
        if self.ledger.known(job.job_id):
            return self._seen_again(job)
        if self.client.clock_offset is None:
            log.info("job %s waits: the server's time is not known yet", job.job_id)
            return None
        now = self.client.server_now()
        if now >= job.expires_at:
            return self.reports.refuse(job.job_id, "expired")
        if job.issued_at > now + CLOCK_SKEW:
            return self.reports.refuse(job.job_id, "not_yet_valid")
        if not self.ledger.claim(job):  # another thread took it meanwhile
            return self.reports.refuse(job.job_id, "replayed")
        return self._run_job(job)

    def _verify(self, token: str, job_id: str) -> wire.Job | wire.JobReport:
        """The job, if it verifies with the server's job key and is well formed; else the refusal."""
        if self._job_key is None:
            return self.reports.refuse(job_id, "no_job_key")
        try:
            return wire.verify_job(token, self._job_key)
        except wire.SignatureError:
            return self.reports.refuse(job_id, "bad_signature")
        except wire.MalformedError as exc:
            kind = _unverified_claims(token).get("kind")
            if isinstance(kind, str) and kind not in KNOWN_KINDS and "kind" in str(exc):
                return self.reports.refuse(job_id, "unknown_kind")
            log.warning("job %s is malformed: %s", job_id, exc)
            return self.reports.refuse(job_id, "malformed")

    def _seen_again(self, job: wire.Job) -> wire.JobReport | None:
        if self.ledger.has_report(job.job_id):  # done, but the server has not heard: say it again
            self.flush_reports()
            return None
        if job.job_id in self._running:  # sent again because our "running" report was lost: keep going
            return None
        return self.reports.refuse(job.job_id, "replayed")

    def _run_job(self, job: wire.Job) -> wire.JobReport | None:
        self.handled += 1
        log.info("job %s: %s", job.job_id, job.kind)
        self._running.add(job.job_id)
        try:
            self.reports.progress(job.job_id, "running")
            return KINDS[job.kind](self.context, job)
        except Exception as exc:
            log.exception("job %s (%s) failed", job.job_id, job.kind)
            return self.reports.final(wire.JobReport(job_id=job.job_id, state="failed", reason=_reason_of(exc)))
        finally:
            self._running.discard(job.job_id)

    # ---- what the agent and tests call directly ------------------------------------------------------

    def collect_diagnostics(self, cap: int = MAX_BUNDLE_BYTES) -> str:
        """Versions, identity, health, configuration (redacted), recent jobs, recent errors and log lines."""
        return diagnostics.diagnostics_bundle(self.context, cap)

    def set_log_level(self, level: int, seconds: float) -> None:
        """The root logger at ``level`` for ``seconds``, then back to what it was before the first change."""
        self.levels.set(level, seconds)


def _unverified_claims(token: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return {}
    return claims if isinstance(claims, dict) else {}


def _job_id_of(token: str) -> str | None:
    job_id = _unverified_claims(token).get("job_id")
    try:
        wire.JobReport(job_id=job_id, state="refused")  # the id's pattern
    except ValueError:
        return None
    return str(job_id)


def _reason_of(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return "io_error"
    return "internal_error"
