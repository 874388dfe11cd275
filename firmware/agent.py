"""The agent loop: masked frame -> people -> tracks and zones -> apps -> signed events.

Frames never leave ``Agent.step``.

``Agent.step`` handles one frame; ``Agent.run`` loops until the source ends, ``stop`` is set or the
deadline passes. A failure on one frame (a corrupt frame, a backend error) is logged and counted and
the loop goes on; a source that fails is reported and ends the run cleanly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from accelerators.base import Backend
from firmware.apps.base import App, AppEvent
from firmware.clock import STEADY
from firmware.perception import Analyzer
from firmware.scene import Scene, ScenePerson
from firmware.sources import Frame, FrameSource, SourceError, TransientSourceError
from firmware.tracking import Tracker
from firmware.zones import ZoneMap
from wardsight import wire

log = logging.getLogger("wardsight.device.agent")


@dataclass
class StageTimes:
    """Seconds spent per pipeline stage, summed, with how many frames each covers."""

    total: dict[str, float] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.total[stage] = self.total.get(stage, 0.0) + seconds
        self.count[stage] = self.count.get(stage, 0) + 1

    def mean_ms(self) -> dict[str, float]:
        return {k: 1000.0 * v / max(1, self.count[k]) for k, v in self.total.items()}


@dataclass
class AgentStats:
    processed: int = 0
    failed: int = 0
    events: int = 0
    people_last: int = 0
    app_errors: int = 0
    stages: StageTimes = field(default_factory=StageTimes)


class EventStamper:
    """Turns an app's event into a signed wire event for this device (the device's key stays here)."""

    def __init__(
        self,
        device_id: str,
        room: str,
        sign: Callable[[wire.Event], str],
        to_wall: Callable[[float], float] = STEADY.to_wall,
    ) -> None:
        self.device_id, self.room, self._sign, self._to_wall = device_id, room, sign, to_wall

    def __call__(self, ev: AppEvent) -> str:
        event = wire.Event(
            event_id=wire.new_event_id(),
            device_id=self.device_id,
            room=self.room,
            app=ev.app,
            type=ev.type,
            severity=ev.severity,
            time=self._to_wall(ev.time),
            track_id=ev.track_id,
            confidence=ev.confidence,
            data=ev.data,
        )
        return self._sign(event)


def _pixels(image: Frame | None) -> Frame:
    if image is None:  # configuration refuses pixel models in sensor-only mode; this is the backstop
        raise SourceError("this source delivers no image (sensor-only mode): nothing to run a model on")
    return image


class Agent:
    """One camera's loop. ``tracker`` and ``zones`` default to a fresh tracker and no zones."""

    def __init__(
        self,
        source: FrameSource,
        backend: Backend,
        apps: Sequence[App],
        emit: Callable[[AppEvent], None],
        *,
        tracker: Tracker | None = None,
        zones: ZoneMap | None = None,
        analyzers: Sequence[Analyzer] = (),
    ) -> None:
        self.source, self.backend, self.apps, self.emit = source, backend, list(apps), emit
        self.tracker = tracker or Tracker()
        self.zones = zones or ZoneMap([])
        needed = set().union(*(app.needs for app in self.apps)) if self.apps else set()
        missing = needed - {a.need for a in analyzers}
        if missing:
            raise ValueError(f"an app needs {', '.join(sorted(missing))} but no such analyzer was given")
        # Only what some app asks for runs per frame.
        self.analyzers = [a for a in analyzers if a.need in needed]
        self.stats = AgentStats()

    def step(self) -> bool:
        """Process one frame; False when the source has ended."""
        stages = self.stats.stages
        t0 = time.perf_counter()
        captured = self.source.read()
        t1 = time.perf_counter()
        stages.add("capture", t1 - t0)
        if captured is None:
            return False
        image = captured.image
        t = captured.time
        size = (image.shape[1], image.shape[0]) if image is not None else self.source.frame_size
        extra: dict[str, dict[int, Any]] = {}
        timings: list[tuple[str, float]] = []
        try:
            # A sensor that ran the network itself hands over its people (and, in sensor-only mode, no image).
            people = captured.people if captured.people is not None else self.backend.detect(_pixels(image))
            t2 = time.perf_counter()
            tracked = self.tracker.update(t, people)
            t3 = time.perf_counter()
            timings += [("inference", t2 - t1), ("tracking", t3 - t2)]
            for analyzer in self.analyzers:
                extra[analyzer.need] = analyzer.annotate(_pixels(image), tracked)
                t4 = time.perf_counter()
                timings.append((analyzer.need, t4 - t3))
                t3 = t4
        except Exception as exc:  # one bad frame or model error must not end the agent
            self.stats.failed += 1
            log.warning("frame skipped: inference failed: %s: %s", type(exc).__name__, exc)
            return True
        finally:
            # Drop our reference to the frame as soon as the models are done. (A model's input tensor still
            # holds its own downscaled copy of the already-blacked-out frame until the next frame.)
            del captured, image
        for name, seconds in (*timings, *((f"inference.{k}", v) for k, v in self.backend.last_timings.items())):
            stages.add(name, seconds)
        faces, hands = extra.get("faces", {}), extra.get("hands", {})
        scene = Scene(
            t,
            size,
            tuple(
                ScenePerson(p, self.zones.zones_of(p.person, size), faces.get(p.track_id), hands.get(p.track_id, ()))
                for p in tracked
            ),
        )
        self.stats.processed += 1
        self.stats.people_last = len(scene.people)
        for app in self.apps:
            try:
                for event in app.update(scene):
                    self.stats.events += 1
                    self.emit(event)
            except Exception:  # an app's bug must not stop the other apps or the agent
                self.stats.app_errors += 1
                log.exception("app %s failed on a frame; it keeps running", app.name)
        stages.add("scene+apps", time.perf_counter() - t3)
        return True

    def run(
        self,
        stop: threading.Event | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_frame: Callable[[], None] | None = None,
    ) -> AgentStats:
        """Loop until the source ends, ``stop`` is set or ``deadline`` passes. ``on_frame`` is called after every
        frame that went through the loop (processed or skipped), never while waiting for one: the systemd
        watchdog's pings, so a camera or model that hangs stops them."""
        stop = stop or threading.Event()
        while not stop.is_set() and (deadline is None or clock() < deadline):
            try:
                if not self.step():
                    log.info("source ended")
                    break
                if on_frame is not None:
                    on_frame()
            except TransientSourceError as exc:
                log.debug("no frame yet: %s", exc)  # the source is reconnecting; keep checking stop/deadline
            except SourceError as exc:
                log.error("capture failed: %s", exc)
                break
        return self.stats

    def health(self) -> dict[str, float]:
        return {
            **self.source.health(),
            "processed": self.stats.processed,
            "failed": self.stats.failed,
            "events": self.stats.events,
            **{f"ms_{k}": v for k, v in self.stats.stages.mean_ms().items()},
        }
