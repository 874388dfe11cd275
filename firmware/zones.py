"""Zones: named polygons per camera (door, dispenser, bed, floor), and which keypoints put a person in one.

A person is in a zone when at least ``min_keypoints`` of the zone kind's keypoints, each seen with a
score of at least ``min_score``, lie inside the polygon. Pure geometry, frame-relative coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from accelerators.types import KEYPOINT_INDEX, Person
from wardsight.keypoints import DEFAULT_KEYPOINTS


def points_inside(
    polygon: Sequence[tuple[float, float]], frame_size: tuple[int, int], points: npt.NDArray[np.float32]
) -> list[bool]:
    """For each (x, y, ...) row of ``points`` in pixels: inside the frame-relative ``polygon``?"""
    return _inside(_to_pixels(polygon, frame_size), points)


def _to_pixels(polygon: Sequence[tuple[float, float]], frame_size: tuple[int, int]) -> npt.NDArray[np.float32]:
    return (np.array(polygon, dtype=np.float32) * np.array(frame_size, dtype=np.float32)).reshape(-1, 1, 2)


def _inside(poly: npt.NDArray[np.float32], points: npt.NDArray[np.float32]) -> list[bool]:
    return [cv2.pointPolygonTest(poly, (float(p[0]), float(p[1])), False) >= 0 for p in points]


@dataclass(frozen=True)
class Zone:
    name: str
    kind: str  # door | dispenser | bed | floor | room
    polygon: tuple[tuple[float, float], ...]  # frame-relative x, y
    keypoints: tuple[str, ...] = ()  # empty: DEFAULT_KEYPOINTS[kind]
    min_keypoints: int = 1
    min_score: float = 0.3

    def __post_init__(self) -> None:
        if len(self.polygon) < 3:
            raise ValueError(f"zone {self.name}: a polygon needs at least 3 points")
        unknown = [k for k in self.parts if k not in KEYPOINT_INDEX]
        if unknown:
            raise ValueError(f"zone {self.name}: unknown keypoint {unknown[0]}")

    @property
    def parts(self) -> tuple[str, ...]:
        return self.keypoints or DEFAULT_KEYPOINTS.get(self.kind, DEFAULT_KEYPOINTS["room"])


class ZoneMap:
    """Zones of one camera, resolved to pixel polygons for a frame size (cached)."""

    def __init__(self, zones: Sequence[Zone]) -> None:
        names = [z.name for z in zones]
        if len(set(names)) != len(names):
            raise ValueError("zone names must be unique per camera")
        self.zones = list(zones)
        self._size: tuple[int, int] | None = None
        self._pixels: list[npt.NDArray[np.float32]] = []
        self._index = [np.array([KEYPOINT_INDEX[k] for k in z.parts]) for z in self.zones]

    def _polygons(self, size: tuple[int, int]) -> list[npt.NDArray[np.float32]]:
        if size != self._size:
            self._pixels = [_to_pixels(z.polygon, size) for z in self.zones]
            self._size = size
        return self._pixels

    def zones_of(self, person: Person, frame_size: tuple[int, int]) -> frozenset[str]:
        """Names of the zones ``person`` is in, for a frame of ``frame_size`` (width, height)."""
        found = []
        for zone, poly, idx in zip(self.zones, self._polygons(frame_size), self._index, strict=True):
            kps = person.keypoints[idx]
            seen = kps[kps[:, 2] >= zone.min_score]
            if sum(_inside(poly, seen)) >= zone.min_keypoints:
                found.append(zone.name)
        return frozenset(found)
