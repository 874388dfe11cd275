"""What an app emits, before the agent stamps it with device, room and id and signs it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from accelerators.types import Person


@dataclass(frozen=True)
class AppEvent:
    app: str
    type: str
    time: float  # seconds, the frame's clock
    severity: str = "info"
    track_id: int | None = None
    confidence: float | None = None
    data: dict[str, float | int | bool] = field(default_factory=dict)


class App(Protocol):
    name: str

    def update(self, time: float, people: Sequence[Person]) -> list[AppEvent]:
        """Advance to ``time`` with the people seen in that frame; return any events."""
        ...
