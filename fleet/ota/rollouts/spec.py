"""What a rollout is, fixed when it is created: the model version, the ordered device groups, the
thresholds, the in-progress timeout and the maintenance window (pure; no I/O, no clock reads)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from wardsight import wire

DAY_S = 86400


class RolloutError(ValueError):
    """A rollout that cannot be made: bad thresholds, groups that do not cover the selection, ...."""


@dataclass(frozen=True)
class Window:
    """A daily maintenance window, ``[start, end)`` in minutes of the day at a fixed UTC offset (no DST);
    ``end < start`` spans midnight."""

    start_minute: int
    end_minute: int
    utc_offset_minutes: int = 0

    def __post_init__(self) -> None:
        for name in ("start_minute", "end_minute"):
            if not 0 <= getattr(self, name) < 1440:
                raise RolloutError(f"window {name} must be within 0..1439")
        if self.start_minute == self.end_minute:
            raise RolloutError("a window must not start and end at the same minute")
        if not -840 <= self.utc_offset_minutes <= 840:
            raise RolloutError("window utc_offset_minutes must be within -840..840")

    def current_or_next(self, now: float) -> tuple[float, float]:
        """(start, end) in server time of the window that contains ``now``, else of the next one."""
        offset = self.utc_offset_minutes * 60
        local = now + offset
        day = math.floor(local / DAY_S) * DAY_S
        length = ((self.end_minute - self.start_minute) % 1440) * 60
        for days in (-1, 0, 1):
            start = day + days * DAY_S + self.start_minute * 60
            if local < start + length:
                return float(start - offset), float(start + length - offset)
        raise AssertionError("unreachable: tomorrow's window always ends after now")

    def opens_at_or_after(self, t: float) -> float:
        """``t`` if a window is open at ``t``, else when the next one opens."""
        return max(t, self.current_or_next(t)[0])


@dataclass(frozen=True)
class ErrorThreshold:
    """Stop the rollout when its failed devices are *more than* ``count``, or more than ``fraction`` of it."""

    count: int | None = None
    fraction: float | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.fraction is None):
            raise RolloutError("the error threshold is either a count or a fraction")
        if self.count is not None and self.count < 0:
            raise RolloutError("the error threshold count must not be negative")
        if self.fraction is not None and not 0 <= self.fraction < 1:
            raise RolloutError("the error threshold fraction must be within [0, 1)")

    def exceeded(self, failures: int, total: int) -> bool:
        if self.count is not None:
            return failures > self.count
        assert self.fraction is not None
        return failures > self.fraction * total + 1e-9

    def describe(self) -> str:
        return f"{self.count} failed" if self.count is not None else f"{self.fraction:.0%} failed"


@dataclass(frozen=True)
class RolloutSpec:
    """What a rollout is; fixed when it is created. A ``system`` rollout offers a RAUC bundle: ``model`` is then the
    RAUC compatible and the versions are system versions."""

    rollout_id: str
    model: str
    version: str
    groups: tuple[tuple[str, ...], ...]
    success_threshold: float
    error_threshold: ErrorThreshold
    in_progress_timeout_s: float
    previous_version: str | None = None  # rollback target for devices without a known from_version
    from_versions: Mapping[str, str] = field(default_factory=dict)  # what each device ran at creation
    window: Window | None = None
    kind: wire.UpdateKind = "model"

    def __post_init__(self) -> None:
        if not self.groups or any(not group for group in self.groups):
            raise RolloutError("a rollout needs at least one group, and no group may be empty")
        seen = [d for group in self.groups for d in group]
        if len(set(seen)) != len(seen):
            raise RolloutError("a device may be in only one group")
        if not 0 < self.success_threshold <= 1:
            raise RolloutError("the success threshold must be within (0, 1]")
        if not self.in_progress_timeout_s > 0:
            raise RolloutError("the in-progress timeout must be positive")
        if self.previous_version == self.version:
            raise RolloutError("the previous version must differ from the version rolled out")
        if set(self.from_versions) - set(seen):
            raise RolloutError("from_versions names devices outside the rollout")

    @cached_property
    def group_of(self) -> dict[str, int]:
        return {device: g for g, group in enumerate(self.groups) for device in group}

    @property
    def total(self) -> int:
        return len(self.group_of)

    @property
    def target(self) -> str:
        """The offer's target: the package's (or bundle's) TUF path, or ``wire.BUILTIN_TARGET`` for the built-in
        model."""
        return self.target_of(self.version)

    def target_of(self, version: str) -> str:
        if self.kind == "system":
            return wire.system_target_path(self.model, version)
        return wire.offer_target(self.model, version)

    def needed(self, group: int) -> int:
        """Healthy devices group ``group`` needs to succeed."""
        return max(1, math.ceil(self.success_threshold * len(self.groups[group]) - 1e-9))

    def revert_version(self, device_id: str) -> str | None:
        known = self.from_versions.get(device_id)
        return known if known is not None and known != self.version else self.previous_version
