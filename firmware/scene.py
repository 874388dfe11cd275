"""What the apps see of one frame: tracked people, the zones each is in, and the time. No pixels."""

from __future__ import annotations

from dataclasses import dataclass

from accelerators.faces import MaskedFace
from accelerators.hands import Hand
from firmware.tracking import TrackedPerson


@dataclass(frozen=True, slots=True)
class ScenePerson:
    track: TrackedPerson
    zones: frozenset[str]
    face: MaskedFace | None = None  # only when an app needs "faces" and a face was found for this person
    hands: tuple[Hand, ...] = ()  # only when an app needs "hands"

    @property
    def track_id(self) -> int:
        return self.track.track_id

    @property
    def score(self) -> float:
        return self.track.person.score


@dataclass(frozen=True, slots=True)
class Scene:
    time: float  # seconds, the frame's clock
    frame_size: tuple[int, int]  # (width, height) in pixels
    people: tuple[ScenePerson, ...]
