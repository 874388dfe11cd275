"""Maintenance-job decisions as pure functions: a batch's state and a clock reading in, decisions out.

No I/O and no clock of its own; ``fleet.jobs.store`` stores the state, calls these and applies what they decide.

A **batch** is one operator request (a kind, its parameters, a target); it holds one **job** per targeted
device. A job moves through these states::

    queued ──release──▶ released ──device──▶ received ─▶ running ─▶ succeeded | failed | refused
       │                   │
       ├──(expiry)─────────┴──▶ expired     (never received before expires_at: never sent again, never accepted)
       └──(stop / cancel)──┴──▶ cancelled   (not yet acknowledged by the device: no longer sent)

- **Release** (rate limit): without ``rate_per_minute`` every queued job is released at once. With it, jobs
  are released in order one ``60 / rate`` seconds apart (several per call when the calls are further apart),
  and never more than ``rate`` within any 60 s (half-open) window, even after the server was down.
- **Stop** (error threshold): once ``failed + refused`` reach the threshold (a count, or a fraction of the
  batch's jobs, rounded up, at least 1) the batch stops: nothing more is released and every job the device
  has not acknowledged yet (queued, or released but not reported on) is cancelled. Jobs a device already
  acknowledged run on and their reports are still recorded.
- **Approval**: a batch ``awaiting_approval`` (a privacy-reducing ``push_config`` a second admin has not approved
  yet, :mod:`fleet.jobs.privacy`) releases nothing; once approved it is ``running`` like any other.
- **Expiry**: a job not received by ``expires_at`` (server time) is expired; reports on it are refused.
- **Reports** (:func:`judge_report`): progress only moves forward; a repeated report is accepted without
  change (delivery is at-least-once); a different final outcome after a final outcome is refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

State = Literal["queued", "released", "received", "running", "succeeded", "failed", "refused", "expired", "cancelled"]
BatchStatus = Literal["awaiting_approval", "running", "stopped", "cancelled"]

STATES: tuple[State, ...] = (
    "queued",
    "released",
    "received",
    "running",
    "succeeded",
    "failed",
    "refused",
    "expired",
    "cancelled",
)
UNACKNOWLEDGED: frozenset[str] = frozenset({"queued", "released"})  # the device has not reported on it
ACKNOWLEDGED: frozenset[str] = frozenset({"received", "running"})
OUTCOMES: frozenset[str] = frozenset({"succeeded", "failed", "refused"})  # final, reported by the device
ERRORS: frozenset[str] = frozenset({"failed", "refused"})  # count towards the error threshold
FINAL: frozenset[str] = OUTCOMES | {"expired", "cancelled"}
WINDOW_SECONDS = 60.0
_EPSILON = 1e-6  # seconds of float slack in release times (a timestamp's rounding error is about 2e-7 s)

# How far along a state is, for reports: a report never moves a job backwards.
_RANK: dict[str, int] = {"released": 0, "cancelled": 0, "received": 1, "running": 2}
_RANK.update(dict.fromkeys(OUTCOMES, 3))


def is_expired(expires_at: float, now: float) -> bool:
    """A job is expired from ``expires_at`` on (server time)."""
    return now >= expires_at


def threshold_count(threshold: float | None, total: int) -> int | None:
    """The number of failed or refused jobs that stops a batch of ``total`` jobs; None: never stops.

    An ``int`` is a count; a ``float`` strictly between 0 and 1 a fraction of ``total`` (rounded up, at least 1).
    """
    if threshold is None:
        return None
    if isinstance(threshold, bool):
        raise ValueError("error threshold must be a number")
    if isinstance(threshold, int):
        if threshold < 1:
            raise ValueError("an error threshold count must be at least 1")
        return threshold
    if not 0 < threshold < 1:
        raise ValueError("an error threshold fraction must be between 0 and 1 (exclusive); a count is an integer")
    return max(1, math.ceil(threshold * total - 1e-9))


def threshold_reached(errors: int, total: int, threshold: float | None) -> bool:
    limit = threshold_count(threshold, total)
    return limit is not None and errors >= limit


def release_slots(release_times: Iterable[float], now: float, rate_per_minute: int | None) -> int | None:
    """How many more jobs of a batch may be released at ``now``, given when its jobs were released.

    None means no limit. With a rate, jobs are spaced ``60 / rate`` s apart after the latest release and
    no more than ``rate`` fall within the last 60 s (``now - 60 < t <= now``).
    """
    if rate_per_minute is None:
        return None
    if rate_per_minute < 1:
        raise ValueError("rate_per_minute must be at least 1")
    times = list(release_times)
    in_window = sum(1 for t in times if now - WINDOW_SECONDS + _EPSILON < t <= now)
    window_left = rate_per_minute - in_window
    # Spacing after the latest release (the first release of a batch goes at once).
    paced = math.floor((now - max(times) + _EPSILON) * rate_per_minute / WINDOW_SECONDS) if times else 1
    return max(0, min(window_left, paced))


@dataclass(frozen=True)
class JobState:
    """One device's job as the planner sees it."""

    job_id: str
    state: State
    released_at: float | None = None


@dataclass(frozen=True)
class BatchState:
    """A batch as the planner sees it; ``jobs`` in release order."""

    status: BatchStatus
    expires_at: float
    jobs: Sequence[JobState]
    rate_per_minute: int | None = None
    error_threshold: float | None = None


@dataclass(frozen=True)
class Plan:
    """What to do to a batch now. Apply in this order: expire, then stop (cancel), then release."""

    expire: tuple[str, ...] = ()
    stop: bool = False
    cancel: tuple[str, ...] = ()
    release: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.expire or self.stop or self.cancel or self.release)


def plan(batch: BatchState, now: float) -> Plan:
    """Expire, stop on the error threshold, and release under the rate limit: the decisions for ``now``."""
    expired = is_expired(batch.expires_at, now)
    expire = tuple(j.job_id for j in batch.jobs if expired and j.state in UNACKNOWLEDGED)
    live = [j for j in batch.jobs if j.job_id not in expire]
    if batch.status != "running":
        return Plan(expire=expire)
    errors = sum(1 for j in batch.jobs if j.state in ERRORS)
    if threshold_reached(errors, len(batch.jobs), batch.error_threshold):
        cancel = tuple(j.job_id for j in live if j.state in UNACKNOWLEDGED)
        return Plan(expire=expire, stop=True, cancel=cancel)
    queued = [j.job_id for j in live if j.state == "queued"]
    released_times = [j.released_at for j in batch.jobs if j.released_at is not None]
    slots = release_slots(released_times, now, batch.rate_per_minute)
    release = tuple(queued if slots is None else queued[:slots])
    return Plan(expire=expire, release=release)


def cancel_plan(batch: BatchState, now: float) -> tuple[str, ...]:
    """The jobs an operator's cancel withdraws: those the device has not acknowledged and that have not expired."""
    if is_expired(batch.expires_at, now):
        return ()
    return tuple(j.job_id for j in batch.jobs if j.state in UNACKNOWLEDGED)


def next_release_at(release_times: Sequence[float], now: float, rate_per_minute: int | None) -> float | None:
    """The earliest time from ``now`` on at which :func:`release_slots` allows one more release (None: no limit)."""
    if rate_per_minute is None:
        return None
    if not release_times:
        return now
    newest_first = sorted(release_times, reverse=True)
    candidate = max(newest_first[0] + WINDOW_SECONDS / rate_per_minute, now)
    if len(newest_first) >= rate_per_minute:
        # The window must first lose the rate-th most recent release.
        candidate = max(candidate, newest_first[rate_per_minute - 1] + WINDOW_SECONDS)
    return candidate


# ---- reports ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What to do with a device's report: ``apply`` (store ``state``), ``same`` (accept, change nothing) or
    ``refuse`` (answer ``status`` with ``reason`` and the machine-readable ``code``); ``expire`` also marks
    the job expired."""

    action: Literal["apply", "same", "refuse"]
    state: str
    status: int = 200
    reason: str = ""
    code: str | None = None
    expire: bool = False


def judge_report(
    *, kind: str, current: State, released_at: float | None, expires_at: float, reported: State, now: float
) -> Verdict:
    """Decide on a device's report ``reported`` for a job now in ``current``."""
    if reported not in _RANK or reported in {"released", "cancelled"}:
        return Verdict("refuse", current, 400, f"a device cannot report state '{reported}'", "bad_state")
    if released_at is None:
        return Verdict("refuse", current, 409, "this job was never sent to the device", "not_sent")
    late = "job expired before the device received it"
    if current == "expired":
        return Verdict("refuse", current, 409, late, "expired")
    if current in OUTCOMES:
        if reported == current or _RANK[reported] < _RANK[current]:
            return Verdict("same", current)
        return Verdict("refuse", current, 409, f"job already finished as {current}", "finished")
    if current in {"released", "cancelled"} and is_expired(expires_at, now):
        return Verdict("refuse", current, 409, late, "expired", expire=current == "released")
    if kind == "rotate_key" and reported == "succeeded":
        why = "rotate_key succeeds only through /api/v1/device/rotate-key"
        return Verdict("refuse", current, 409, why, "use_rotate_key")
    if _RANK[reported] < _RANK[current]:
        return Verdict("same", current)
    return Verdict("apply", reported)


# ---- diagnostics --------------------------------------------------------------------------------------

MAX_OUTPUT_BYTES = 256 * 1024


def output_problem(text: str) -> str | None:
    """Why ``text`` cannot be a diagnostics bundle (None if it can): UTF-8 text of printable characters,
    newlines and tabs only (so no image bytes, NULs or terminal escapes), at most :data:`MAX_OUTPUT_BYTES`."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return "output is not valid UTF-8"
    if size > MAX_OUTPUT_BYTES:
        return f"output is {size} bytes; the limit is {MAX_OUTPUT_BYTES}"
    for index, char in enumerate(text):
        if not (char.isprintable() or char in "\n\t"):
            return f"output holds a non-printable character U+{ord(char):04X} at position {index}"
    return None
