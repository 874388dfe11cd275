"""MoveNet MultiPose: input geometry, letterboxing and the output decoder (pure functions).

The model takes uint8 RGB [1, H, W, 3] with H and W multiples of 32 and returns [1, 6, 56]: per person
17 x (y, x, score) then (ymin, xmin, ymax, xmax, score), normalised to the input tensor.
We scale the frame so its long side is ``long_side`` (256 is the published setting), place it at the
top-left of a zero canvas rounded up to multiples of 32, and map outputs back through that transform,
so any camera aspect ratio keeps its geometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from accelerators.types import Person

MAX_PEOPLE = 6
ROW = 56


@dataclass(frozen=True)
class Letterbox:
    """Frame (w, h) scaled by ``scale`` into the top-left of an input tensor (in_w, in_h)."""

    frame_w: int
    frame_h: int
    in_w: int
    in_h: int
    scale: float

    @classmethod
    def for_frame(cls, frame_w: int, frame_h: int, long_side: int = 256) -> Letterbox:
        if frame_w <= 0 or frame_h <= 0:
            raise ValueError(f"bad frame size {frame_w}x{frame_h}")
        scale = long_side / max(frame_w, frame_h)
        in_w = max(32, math.ceil(round(frame_w * scale) / 32) * 32)
        in_h = max(32, math.ceil(round(frame_h * scale) / 32) * 32)
        return cls(frame_w, frame_h, in_w, in_h, scale)

    @property
    def scaled_size(self) -> tuple[int, int]:
        return max(1, round(self.frame_w * self.scale)), max(1, round(self.frame_h * self.scale))

    def apply(self, frame: npt.NDArray[np.uint8], out: npt.NDArray[np.uint8]) -> None:
        """Write the scaled frame into ``out`` (in_h, in_w, 3); the rest of ``out`` stays zero."""
        w, h = self.scaled_size
        out[:h, :w] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)  # bilinear, as resize_with_pad


def decode(raw: npt.NDArray[np.float32], box: Letterbox, min_score: float = 0.2) -> list[Person]:
    """Turn one [6, 56] output into people in frame pixels, dropping rows under ``min_score``."""
    if raw.shape != (MAX_PEOPLE, ROW):
        raise ValueError(f"MoveNet output must be ({MAX_PEOPLE}, {ROW}), got {raw.shape}")
    # Normalised tensor coordinates -> frame pixels: x * in_w / scale, then clip to the frame.
    sx = box.in_w / box.scale
    sy = box.in_h / box.scale
    people: list[Person] = []
    for row in raw:
        score = float(row[55])
        if score < min_score:
            continue
        kp = np.empty((17, 3), dtype=np.float32)
        yxs = row[:51].reshape(17, 3)
        kp[:, 0] = np.clip(yxs[:, 1] * sx, 0, box.frame_w - 1)
        kp[:, 1] = np.clip(yxs[:, 0] * sy, 0, box.frame_h - 1)
        kp[:, 2] = yxs[:, 2]
        ymin, xmin, ymax, xmax = (float(v) for v in row[51:55])
        x1 = min(max(xmin * sx, 0.0), box.frame_w)
        y1 = min(max(ymin * sy, 0.0), box.frame_h)
        x2 = min(max(xmax * sx, 0.0), box.frame_w)
        y2 = min(max(ymax * sy, 0.0), box.frame_h)
        if x2 <= x1 or y2 <= y1:
            continue
        people.append(Person(box=(x1, y1, x2, y2), score=score, keypoints=kp))
    return people
