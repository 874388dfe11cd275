"""The agent loop: masked frame -> people -> apps -> signed events. Frames never leave this function.

``Agent.step`` handles one frame; ``Agent.run`` loops until the source ends, ``stop`` is set or the
deadline passes. A failure on one frame (a corrupt frame, a backend error) is logged and counted and
the loop goes on; a source that fails is reported and ends the run cleanly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from accelerators.base import Backend
from firmware.apps.base import App, AppEvent
from firmware.sources import FrameSource, SourceError
from wardsight import wire

log = logging.getLogger("wardsight.device.agent")


@dataclass
class AgentStats:
    processed: int = 0
    failed: int = 0
    events: int = 0
    people_last: int = 0


class EventStamper:
    """Turns an app's event into a signed wire event for this device (the device's key stays here)."""

    def __init__(self, device_id: str, room: str, sign: Callable[[wire.Event], str]) -> None:
        self.device_id, self.room, self._sign = device_id, room, sign

    def __call__(self, ev: AppEvent) -> str:
        event = wire.Event(
            event_id=wire.new_event_id(),
            device_id=self.device_id,
            room=self.room,
            app=ev.app,
            type=ev.type,
            severity=ev.severity,
            time=ev.time,
            track_id=ev.track_id,
            confidence=ev.confidence,
            data=ev.data,
        )
        return self._sign(event)


class Agent:
    def __init__(
        self,
        source: FrameSource,
        backend: Backend,
        apps: Sequence[App],
        emit: Callable[[AppEvent], None],
    ) -> None:
        self.source, self.backend, self.apps, self.emit = source, backend, list(apps), emit
        self.stats = AgentStats()

    def step(self) -> bool:
        """Process one frame; False when the source has ended."""
        captured = self.source.read()
        if captured is None:
            return False
        t = captured.time
        try:
            people = self.backend.detect(captured.image)
        except (ValueError, RuntimeError) as exc:
            self.stats.failed += 1
            log.warning("frame skipped: inference failed: %s", exc)
            return True
        finally:
            del captured  # drop the only reference to the pixels as soon as inference is done
        self.stats.processed += 1
        self.stats.people_last = len(people)
        for app in self.apps:
            for event in app.update(t, people):
                self.stats.events += 1
                self.emit(event)
        return True

    def run(
        self,
        stop: threading.Event | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> AgentStats:
        stop = stop or threading.Event()
        try:
            while not stop.is_set() and (deadline is None or clock() < deadline):
                if not self.step():
                    log.info("source ended")
                    break
        except SourceError as exc:
            log.error("capture failed: %s", exc)
        return self.stats

    def health(self) -> dict[str, float]:
        return {
            **self.source.health(),
            "processed": self.stats.processed,
            "failed": self.stats.failed,
            "events": self.stats.events,
        }
