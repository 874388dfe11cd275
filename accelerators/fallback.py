"""An accelerator with the CPU behind it: when the accelerator fails repeatedly (unplugged, driver crash),
the CPU takes over for good, and ``health()`` says so until someone looks."""

from __future__ import annotations

import logging
from collections.abc import Callable

from accelerators.base import Backend, Frame
from accelerators.types import Person

log = logging.getLogger("wardsight.accelerators")


class FallbackBackend(Backend):
    def __init__(self, primary: Backend, make_cpu: Callable[[], Backend], *, max_failures: int = 5) -> None:
        self.primary, self._make_cpu, self.max_failures = primary, make_cpu, max_failures
        self.name = primary.name
        self.active: Backend = primary
        self.fallback_reason: str | None = None
        self._failures = 0

    def detect(self, frame: Frame) -> list[Person]:
        try:
            people = self.active.detect(frame)
        except Exception as exc:
            if self.active is not self.primary:
                raise
            self._failures += 1
            if self._failures >= self.max_failures:
                self._switch(f"{self.primary.name} failed {self._failures} times in a row: {exc}")
            raise
        self._failures = 0
        self.last_timings = self.active.last_timings
        return people

    def _switch(self, reason: str) -> None:
        log.warning("accelerator %s lost (%s); continuing on the CPU", self.primary.name, reason)
        self.fallback_reason = reason
        self.active = self._make_cpu()
        self.name = f"cpu (fallback from {self.primary.name})"
        try:
            self.primary.close()
        except Exception:  # a dead device may not close cleanly
            log.debug("closing %s failed", self.primary.name, exc_info=True)

    def health(self) -> dict[str, float | str]:
        return {"accelerator": self.name, "accelerator_fallback": 1.0 if self.fallback_reason else 0.0}

    def close(self) -> None:
        self.active.close()
