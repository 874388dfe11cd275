"""Extra models that run on a frame only when an app asks for them, attached to tracked people.

An app declares ``needs`` (e.g. ``{"faces"}`` for mask compliance, ``{"hands"}`` for hand hygiene); the
agent runs only the analyzers some app needs, while it still holds the (masked) frame, and the apps get
the results as metadata on each person: a mask call, hands with landmarks. Nothing here keeps pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from accelerators.faces import MaskedFace, TwoStageMaskDetector
from accelerators.hands import Hand, HandDetector, wrist_regions
from firmware.tracking import TrackedPerson

Frame = npt.NDArray[np.uint8]


class Analyzer(Protocol):
    need: str

    def annotate(self, frame: Frame, people: Sequence[TrackedPerson]) -> dict[int, Any]:
        """Results per track id for this frame."""
        ...


def _face_owner(face: MaskedFace, people: Sequence[TrackedPerson]) -> int | None:
    """The track whose head region holds the face centre (nearest nose wins), else None."""
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    best: tuple[float, int] | None = None
    for p in people:
        x1, y1, x2, y2 = p.person.box
        if not (x1 <= cx <= x2 and y1 <= cy <= y1 + 0.5 * (y2 - y1)):
            continue
        nx, ny, ns = p.person.keypoint("nose")
        d = float(np.hypot(nx - cx, ny - cy)) if ns > 0.2 else float(np.hypot((x1 + x2) / 2 - cx, y1 - cy))
        if best is None or d < best[0]:
            best = (d, p.track_id)
    return best[1] if best else None


class FaceAnalyzer:
    """Mask calls per person: the two-stage face detector, faces assigned to tracks by head position.

    Masks change slowly next to the grace periods that matter (tens of seconds), so the detector runs on
    every ``every_frames``-th frame only; the frames between carry no face observation (not a stale one).
    """

    need = "faces"

    def __init__(self, detector: TwoStageMaskDetector, every_frames: int = 1) -> None:
        if every_frames < 1:
            raise ValueError("every_frames must be at least 1")
        self.detector, self.every_frames = detector, every_frames
        self._frame = -1

    def annotate(self, frame: Frame, people: Sequence[TrackedPerson]) -> dict[int, MaskedFace]:
        self._frame += 1
        if not people or self._frame % self.every_frames:
            return {}
        out: dict[int, MaskedFace] = {}
        for face in self.detector.detect_all(frame):
            owner = _face_owner(face, people)
            if owner is not None and (owner not in out or face.face_score > out[owner].face_score):
                out[owner] = face
        return out


class HandAnalyzer:
    """Hands per person, searched only in squares around each tracked person's wrists."""

    need = "hands"

    def __init__(self, detector: HandDetector) -> None:
        self.detector = detector

    def annotate(self, frame: Frame, people: Sequence[TrackedPerson]) -> dict[int, tuple[Hand, ...]]:
        out: dict[int, tuple[Hand, ...]] = {}
        for p in people:
            regions = wrist_regions(p.person)
            if not regions:
                continue
            hands = self.detector.detect(frame, regions)
            if hands:
                out[p.track_id] = tuple(hands)
        return out
