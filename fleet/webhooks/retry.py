"""When a delivery is due and what a failed attempt leads to (pure: data and the clock in, a decision out).

Ordering: per-endpoint FIFO. Only the oldest pending delivery of an endpoint (its *head*) is ever sent or
retried; later ones wait behind it until it is delivered or dead. So a receiver sees an endpoint's events
in the order the server stored them, and a nurse-call system never gets "resolved" before "fall".

Retries: the first attempt is ``webhook_retry_schedule[0]`` after queueing; after the n-th failure the next
one is ``schedule[n]`` later (each delay ±10 % jitter, or the receiver's ``Retry-After`` on 429/502/503/504 if
longer). After ``len(schedule)`` failed attempts the delivery is dead (kept, visible, re-deliverable). A
delivery that reached the head only after waiting longer than the whole schedule (behind a dead receiver)
gets one attempt, so a long outage's backlog drains instead of restarting the schedule for every event.
Success is 2xx only; redirects are not followed and count as failures; 410 disables the endpoint (its
queue is kept and resumes, in order, when an admin enables it again).
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

MAX_RETRY_AFTER = 24 * 3600.0
JITTER = 0.1
MIN_BACKLOG_WAIT = 60.0  # see after_failure(): a head that waited longer than max(schedule span, this) gets one try
THROTTLE_STATUSES = frozenset({429, 502, 503, 504})
GONE_ERROR = "HTTP 410: the receiver says this endpoint is gone; endpoint disabled"


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: an HTTP status (None if no response) and, on failure, why."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Failure:
    """What a failed attempt leads to: the delivery's new status, when it is next tried, and why it failed."""

    status: Literal["pending", "dead"]
    next_at: float
    error: str
    disable: bool  # the receiver answered 410: the endpoint is disabled, its queue kept

    @property
    def dead(self) -> bool:
        return self.status == "dead"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(when.timestamp() - now, 0.0), MAX_RETRY_AFTER)


def response_outcome(status: int, retry_after: float | None) -> Outcome:
    """The outcome of an attempt the receiver answered: 2xx is success, anything else (redirects too) a failure."""
    if 200 <= status < 300:
        return Outcome(status)
    if 300 <= status < 400:
        return Outcome(status, f"HTTP {status}: redirects are not followed")
    return Outcome(status, f"HTTP {status}", retry_after)


def due(head: Mapping[str, Any], schedule: Sequence[float]) -> float:
    """When ``head`` is to be tried: its ``next_attempt_at``, plus ``schedule[0]`` before a first attempt."""
    return float(head["next_attempt_at"]) + (schedule[0] if head["attempts"] == 0 else 0.0)


def after_failure(
    delivery: Mapping[str, Any],
    outcome: Outcome,
    attempts: int,
    schedule: Sequence[float],
    rng: random.Random,
    now: float,
) -> Failure:
    """What the ``attempts``-th failed attempt of ``delivery`` leads to (``rng`` jitters the next delay)."""
    error = outcome.error or "failed"
    disable = outcome.status == 410
    # Before a first attempt, due() is when the delivery was queued (or re-queued by redeliver) plus schedule[0].
    waited_out = attempts == 1 and now - due(delivery, schedule) > max(sum(schedule), MIN_BACKLOG_WAIT)
    if disable:  # kept in order for when the endpoint is enabled again
        return Failure("pending", now, GONE_ERROR, disable=True)
    if attempts >= len(schedule) or waited_out:
        return Failure("dead", float(delivery["next_attempt_at"]), error, disable=False)
    delay = schedule[attempts] * rng.uniform(1 - JITTER, 1 + JITTER)
    if outcome.retry_after is not None:
        delay = max(delay, outcome.retry_after)
    return Failure("pending", now + delay, error, disable=False)
