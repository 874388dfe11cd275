"""The ``set_log_level`` job: the root logger at another level for a while, then back."""

from __future__ import annotations

import logging
import threading

from firmware.jobs.reports import Reporter
from wardsight import wire

log = logging.getLogger("wardsight.device.jobs")

LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
MAX_LOG_LEVEL_SECONDS = 24 * 3600.0
DEFAULT_LOG_LEVEL_SECONDS = 900.0


class LogLevels:
    """Changes the root logger's level for a time; :meth:`restore` puts back what it was before the first change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._before: int | None = None

    def run_job(self, job: wire.Job, reports: Reporter) -> wire.JobReport:
        name = job.params.get("level")
        seconds = job.params.get("duration_s", DEFAULT_LOG_LEVEL_SECONDS)
        if (
            not isinstance(name, str)
            or name.lower() not in LOG_LEVELS
            or isinstance(seconds, bool | str)
            or not 0 < seconds <= MAX_LOG_LEVEL_SECONDS
        ):
            return reports.final(wire.JobReport(job_id=job.job_id, state="refused", reason="bad_params"))
        self.set(LOG_LEVELS[name.lower()], float(seconds))
        return reports.ok(job)

    def set(self, level: int, seconds: float) -> None:
        """The root logger at ``level`` for ``seconds``, then back to what it was before the first change."""
        root = logging.getLogger()
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if self._before is None:
                self._before = root.level
            root.setLevel(level)
            self._timer = threading.Timer(seconds, self.restore)
            self._timer.daemon = True
            self._timer.start()
        log.warning("log level %s for %.0f s", logging.getLevelName(level), seconds)

    def restore(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._before is not None:
                logging.getLogger().setLevel(self._before)
                log.warning("log level back to %s", logging.getLevelName(self._before))
                self._before = None
