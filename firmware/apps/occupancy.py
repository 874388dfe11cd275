"""Occupancy: how many people are in the room, reported when a new count has held steadily.

A count must persist for ``stable_seconds`` before it is reported, so one missed detection or a
person briefly occluded does not produce a pair of events. The room is assumed empty at start.
"""

from __future__ import annotations

from firmware.apps.base import AppEvent
from firmware.scene import Scene


class OccupancyApp:
    name = "occupancy"
    needs: frozenset[str] = frozenset()

    def __init__(self, *, stable_seconds: float = 1.0, min_score: float = 0.3) -> None:
        self.stable_seconds = stable_seconds
        self.min_score = min_score
        self.reported = 0
        self._pending: int | None = None
        self._pending_since = 0.0
        self._pending_scores: list[float] = []

    def update(self, scene: Scene) -> list[AppEvent]:
        time = scene.time
        scores = [p.score for p in scene.people if p.score >= self.min_score]
        count = len(scores)
        if count == self.reported:
            self._pending = None
            return []
        if count != self._pending:
            self._pending, self._pending_since, self._pending_scores = count, time, []
        self._pending_scores.append(sum(scores) / count if count else 1.0)
        held = time - self._pending_since
        if held < self.stable_seconds:
            return []
        previous, self.reported, self._pending = self.reported, count, None
        confidence = round(min(1.0, sum(self._pending_scores) / len(self._pending_scores)), 3)
        return [
            AppEvent(
                app="occupancy",
                type="count_changed",
                time=time,
                confidence=confidence,
                data={"count": count, "previous": previous, "held_seconds": round(held, 2)},
            )
        ]
