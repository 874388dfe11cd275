"""What a job kind works with: the device's client and identity, its directory, the agent's hooks, the ledger
and the reporter; ``halt`` stops the runner from running anything more (a job ends this process)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from firmware.diagnostics import LogRing
from firmware.identity import Identity
from firmware.jobs.hooks import JobHooks, JobTransport
from firmware.jobs.ledger import JobLedger
from firmware.jobs.loglevel import LogLevels
from firmware.jobs.reports import Reporter
from wardsight import wire


@dataclass
class JobContext:
    client: JobTransport
    identity: Identity
    device_dir: Path
    hooks: JobHooks
    ledger: JobLedger
    reports: Reporter
    ring: LogRing
    levels: LogLevels
    halt: Callable[[], None]


JobKindRunner = Callable[[JobContext, wire.Job], wire.JobReport | None]  # one job kind, carried out
