"""The health check of a model on trial: enough frames processed, few enough failed, within a time bound."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class FrameCounts:
    """What the agent has done since it started (``source.stats.captured``, ``agent.stats.processed/failed``)."""

    captured: int
    processed: int
    failed: int


class HealthCheck:
    """Did the model on trial work? ``frames`` gives the agent's counts; judged from when :meth:`start` ran."""

    def __init__(
        self,
        frames: Callable[[], FrameCounts],
        *,
        need: int,
        within: float,
        max_failed: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.frames, self.need, self.within, self.max_failed, self.clock = frames, need, within, max_failed, clock
        self._base = FrameCounts(0, 0, 0)
        self._t0 = clock()

    def start(self) -> None:
        self._base, self._t0 = self.frames(), self.clock()

    def progress(self) -> tuple[int, int]:
        """(frames processed since the start, frames needed)."""
        return max(0, self.frames().processed - self._base.processed), self.need

    def verdict(self) -> str | None:
        """``"ok"``, a failure reason (``inference_failed``, ``health_check_missed``), or None while undecided."""
        now = self.frames()
        processed = now.processed - self._base.processed
        failed = now.failed - self._base.failed
        captured = now.captured - self._base.captured
        if failed > self.max_failed:
            return "inference_failed"
        if processed >= self.need:
            return "ok"
        elapsed = self.clock() - self._t0
        if elapsed < self.within:
            return None
        if captured == 0 and elapsed < 10 * self.within:
            return None  # the camera gave nothing yet: not the model's fault; wait (a while) longer
        return "health_check_missed"
