"""What every backend produces: people with a box, a score and 17 COCO keypoints, in frame pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from wardsight.keypoints import COCO_KEYPOINTS, KEYPOINT_INDEX

__all__ = ["COCO_KEYPOINTS", "KEYPOINT_INDEX", "Person"]


@dataclass(frozen=True, slots=True)
class Person:
    """One detected person.

    ``box`` is (x1, y1, x2, y2) and ``keypoints`` is a (17, 3) float32 array of (x, y, score), all in
    pixel coordinates of the frame the backend was given; ``score`` is the detection confidence in [0, 1].
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: npt.NDArray[np.float32]

    def keypoint(self, name: str) -> tuple[float, float, float]:
        x, y, s = self.keypoints[KEYPOINT_INDEX[name]]
        return float(x), float(y), float(s)
