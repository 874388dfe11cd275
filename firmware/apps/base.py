"""What an app emits, before the agent stamps it with device, room and id and signs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from firmware.scene import Scene
from wardsight.wire import App as AppName
from wardsight.wire import Severity


@dataclass(frozen=True)
class AppEvent:
    app: AppName
    type: str
    time: float  # seconds, the frame's clock
    severity: Severity = "info"
    track_id: int | None = None
    confidence: float | None = None
    data: dict[str, float | int | bool] = field(default_factory=dict)


class App(Protocol):
    name: str
    needs: frozenset[str]  # extra analyzers this app uses: "faces", "hands"

    def update(self, scene: Scene) -> list[AppEvent]:
        """Advance to ``scene.time`` with the people seen in that frame; return any events."""
        ...
