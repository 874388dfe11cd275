"""Which devices went offline or came back: pure decision logic over presence records (no I/O, no clock).

A device is *silent* since the last time the server heard from it, or since its enrollment if it has never
been heard from. It goes offline once it has been silent for longer than the grace period (silence of
exactly ``grace_s`` is still online). An offline device comes back online when it has been heard from
again after it was declared offline; ``returned_at`` records that first contact, so the decision does not
depend on the server clock moving forward. Only active devices are announced: a pending, quarantined
or revoked device is expected to be silent (a record without a status, from before statuses existed,
counts as active).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

ANNOUNCED_STATUSES = frozenset({"active"})
DEFAULT_GRACE_S = 90.0  # the grace period where none is configured


@dataclass(frozen=True, slots=True)
class PresenceRecord:
    device_id: str
    enrolled_at: float
    last_heard_at: float | None = None  # None: never heard from since enrollment
    offline_since: float | None = None  # set while the device is considered offline: the start of its silence
    returned_at: float | None = None  # first contact after it was declared offline (not yet announced)
    status: str | None = "active"

    @property
    def silent_since(self) -> float:
        return self.enrolled_at if self.last_heard_at is None else self.last_heard_at

    @property
    def announced(self) -> bool:
        return self.status is None or self.status in ANNOUNCED_STATUSES


@dataclass(frozen=True, slots=True)
class Transition:
    device_id: str
    kind: Literal["offline", "online"]
    at: float  # offline: when it was found silent too long (``now``); online: when it was heard again
    silent_since: float  # start of the silence: last contact, or enrollment if never heard from
    silent_s: float  # how long it was silent (up to ``at``); never negative


def is_offline(record: PresenceRecord, now: float, grace_s: float, *, watch_start: float | None = None) -> bool:
    """Whether the device counts as offline at ``now`` (whether or not that has been announced yet)."""
    if record.offline_since is not None:
        return record.returned_at is None
    return _silent_too_long(record, now, grace_s, watch_start)


def transitions(
    records: Iterable[PresenceRecord], now: float, grace_s: float, *, watch_start: float | None = None
) -> list[Transition]:
    """The announcements due at ``now``, ordered by device id.

    ``watch_start`` is when the server began watching (its start-up): silence before it is not held
    against a device, so a server that was down longer than the grace period does not declare the
    whole fleet offline before devices have had a chance to reconnect.
    """
    if not math.isfinite(grace_s) or grace_s < 0:
        raise ValueError(f"grace_s must be a finite number >= 0, not {grace_s}")
    if not math.isfinite(now):
        raise ValueError(f"now must be finite, not {now}")
    out: list[Transition] = []
    for rec in records:
        if not rec.announced:
            continue
        if rec.offline_since is None:
            if _silent_too_long(rec, now, grace_s, watch_start):
                since = rec.silent_since
                out.append(Transition(rec.device_id, "offline", now, since, max(0.0, now - since)))
        elif rec.returned_at is not None:
            since = rec.offline_since
            back = rec.returned_at
            out.append(Transition(rec.device_id, "online", back, since, max(0.0, back - since)))
    out.sort(key=lambda t: t.device_id)
    return out


def _silent_too_long(rec: PresenceRecord, now: float, grace_s: float, watch_start: float | None) -> bool:
    start = rec.silent_since if watch_start is None else max(rec.silent_since, watch_start)
    return now - start > grace_s
