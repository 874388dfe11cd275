"""Hands: MediaPipe palm detection + hand landmarks (lite models, Apache-2.0) on LiteRT, for the hand-hygiene app.

The pipeline follows MediaPipe's own graphs (``palm_detection_cpu.pbtxt``, ``palm_detection_detection_to_roi.pbtxt``,
``hand_landmark_cpu.pbtxt``), as pure functions (palms and ROIs: :mod:`accelerators.palms`) plus one runner:

1. Palm detection on a square crop (the whole frame, centred and zero-padded, or a region an app asks for, e.g.
   around a tracked person's wrists): 192x192 RGB in [0, 1]; outputs regressors [1, 2016, 18] (centre x, centre y,
   w, h, then 7 keypoints x, y, in input pixels relative to the anchor) and scores [1, 2016, 1] (logits; clipped to
   +-100, then a sigmoid). Anchors come from MediaPipe's SsdAnchorsCalculator with the palm options: 4 layers,
   strides 8, 16, 16, 16, fixed anchor size (w = h = 1), offset 0.5, aspect ratio 1 plus the interpolated one, so
   2 anchors per cell on the 24x24 map and 3 x 2 = 6 on the 12x12 map (24*24*2 + 12*12*6 = 2016), cells row-major.
   Decoding divides by 192 (x/y/w/h scale); detections under 0.5 are dropped; weighted NMS at IoU 0.3.
2. Hand ROI from a palm: rotated so that wrist (keypoint 0) -> middle finger MCP (keypoint 2) points up
   (``rotation = 90deg - atan2(-(y2 - y0), x2 - x0)``), shifted by -0.5 box heights along that axis, made square
   on the long side and scaled by 2.6.
3. Hand landmarks on that rotated ROI, 224x224 RGB in [0, 1] (border replicated): 21 x (x, y, z) in input pixels,
   hand presence and handedness (both already probabilities in [0, 1] in the lite model: MediaPipe thresholds
   the presence at 0.5 without a sigmoid), and world landmarks in metres. Outputs are told apart by shape,
   and the two pairs of equal shape by their tensor names (Identity = landmarks, Identity_3 = world landmarks,
   Identity_1 = presence, Identity_2 = handedness: the order of MediaPipe's SplitTensorVectorCalculator).

Handedness: MediaPipe's label map is ("Left", "Right") for a handedness score s and 1 - s, and it assumes a
mirrored (selfie) image. Ceiling and wall cameras are not mirrored, so s >= 0.5 is reported here as "right".

Coordinates are continuous frame pixels (pixel i spans [i, i + 1)), as the rest of ``accelerators`` uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from accelerators import blaze
from accelerators.litert import ModelLoadError, load_interpreter, outputs_by_shape
from accelerators.palms import (
    HAND_INPUT,
    NUM_ANCHORS,
    PALM_COORDS,
    PALM_INPUT,
    Box,
    HandRoi,
    Palm,
    decode_palms,
    landmarks_to_frame,
    roi_affine,
    roi_from_palm,
    weighted_nms,
)
from accelerators.types import Person

Handedness = Literal["left", "right"]

NUM_LANDMARKS = 21

WRIST_MIN_SCORE = 0.3


@dataclass(frozen=True, slots=True)
class Hand:
    """One hand: ``landmarks`` (21, 3) float32 (x, y, z) in frame pixels (z relative to the wrist, same scale),
    ``score`` the hand-presence probability, ``handedness`` with its probability, and the palm detection it came from.
    """

    landmarks: npt.NDArray[np.float32]
    score: float
    handedness: Handedness
    handedness_score: float
    palm_box: Box
    palm_score: float

    @property
    def wrist(self) -> tuple[float, float]:
        x, y = self.landmarks[0, :2]
        return float(x), float(y)

    @property
    def box(self) -> Box:
        """The landmarks' bounding box in frame pixels."""
        lo = self.landmarks[:, :2].min(axis=0)
        hi = self.landmarks[:, :2].max(axis=0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


# --- crops and regions -------------------------------------------------------------------------------------------


def _warp(frame: np.ndarray, m: npt.NDArray[np.float64], size: int, border: int) -> np.ndarray:
    """Sample ``frame`` into a (size, size, 3) image through ``m`` (crop -> frame, continuous coordinates)."""
    # cv2 samples pixel centres at integer coordinates: index = continuous - 0.5 on both sides.
    mi = m.copy()
    mi[:, 2] += m[:, 0] * 0.5 + m[:, 1] * 0.5 - 0.5
    return cv2.warpAffine(
        frame, mi, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border, borderValue=0
    )


def square_around(box: Box) -> tuple[float, float, float]:
    """(x0, y0, side) of the square on the long side of ``box``, centred on it."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1)
    return (x1 + x2) / 2 - side / 2, (y1 + y2) / 2 - side / 2, side


def wrist_regions(person: Person, scale: float = 2.5, min_size: float = 32.0) -> list[Box]:
    """Squares (x1, y1, x2, y2, frame pixels) where ``person``'s hands should be, one per wrist seen (score >= 0.3).

    The side is ``scale`` forearm lengths (elbow -> wrist) and the square is centred a third of a forearm beyond
    the wrist, where the palm is; without a usable elbow it is centred on the wrist and sized from the person's box
    (a forearm taken as 0.15 of its long side).
    """
    regions: list[Box] = []
    bx1, by1, bx2, by2 = person.box
    fallback_forearm = 0.15 * max(bx2 - bx1, by2 - by1)
    for side in ("left", "right"):
        wx, wy, ws = person.keypoint(f"{side}_wrist")
        if ws < WRIST_MIN_SCORE:
            continue
        ex, ey, es = person.keypoint(f"{side}_elbow")
        forearm = math.hypot(wx - ex, wy - ey) if es >= WRIST_MIN_SCORE else 0.0
        if forearm > 1.0:
            cx, cy = wx + (wx - ex) / 3, wy + (wy - ey) / 3
        else:
            forearm = fallback_forearm
            cx, cy = wx, wy
        half = max(scale * forearm, min_size) / 2
        regions.append((cx - half, cy - half, cx + half, cy + half))
    return regions


# --- the runner --------------------------------------------------------------------------------------------------


class HandDetector:
    """Palm detection + hand landmarks on LiteRT. ``detect`` keeps no reference to the frame."""

    def __init__(
        self,
        palm_model_path: Path,
        landmark_model_path: Path,
        num_threads: int = 2,
        *,
        min_palm_score: float = 0.5,
        min_presence: float = 0.5,
        max_hands: int = 4,
    ) -> None:
        self.min_palm_score = min_palm_score
        self.min_presence = min_presence
        self.max_hands = max_hands
        self._palm, self._palm_input = load_interpreter(palm_model_path, num_threads, PALM_INPUT, "a palm detector")
        outs = outputs_by_shape(self._palm)
        try:
            (self._palm_reg,) = outs[(1, NUM_ANCHORS, PALM_COORDS)]
            (self._palm_cls,) = outs[(1, NUM_ANCHORS, 1)]
        except (KeyError, ValueError):
            raise ModelLoadError(f"{palm_model_path} is not the palm detection model (outputs {list(outs)})") from None
        self._hand, self._hand_input = load_interpreter(
            landmark_model_path, num_threads, HAND_INPUT, "a hand-landmark model"
        )
        outs = outputs_by_shape(self._hand)
        try:
            self._lm, self._world = outs[(1, NUM_LANDMARKS * 3)]
            self._presence, self._handedness = outs[(1, 1)]
        except (KeyError, ValueError):
            raise ModelLoadError(
                f"{landmark_model_path} is not the hand landmark model (outputs {list(outs)})"
            ) from None
        self._palm_tensor = np.zeros((1, PALM_INPUT, PALM_INPUT, 3), dtype=np.float32)
        self._hand_tensor = np.zeros((1, HAND_INPUT, HAND_INPUT, 3), dtype=np.float32)

    def detect_palms(self, frame_rgb: np.ndarray, regions: Sequence[Box] | None = None) -> list[Palm]:
        """Palms in frame pixels: on the whole frame (centred, zero-padded to a square), or only inside ``regions``."""
        _check_frame(frame_rgb)
        h, w = frame_rgb.shape[:2]
        squares = (
            [square_around((0.0, 0.0, float(w), float(h)))] if regions is None else [square_around(r) for r in regions]
        )
        palms: list[Palm] = []
        for x0, y0, side in squares:
            if side <= 1:
                continue
            s = side / PALM_INPUT
            m = np.array([[s, 0.0, x0], [0.0, s, y0]], dtype=np.float64)
            crop = _warp(frame_rgb, m, PALM_INPUT, cv2.BORDER_CONSTANT)
            np.multiply(crop, np.float32(1.0 / 255.0), out=self._palm_tensor[0], casting="unsafe")
            self._palm.set_tensor(self._palm_input, self._palm_tensor)
            self._palm.invoke()
            reg = self._palm.get_tensor(self._palm_reg)[0]
            cls = self._palm.get_tensor(self._palm_cls)[0]
            palms.extend(p.to_frame(x0, y0, side) for p in decode_palms(reg, cls, self.min_palm_score))
        return weighted_nms(palms) if len(squares) > 1 else palms

    def landmarks(self, frame_rgb: np.ndarray, roi: HandRoi) -> tuple[np.ndarray, float, float]:
        """(21, 3) landmarks in frame pixels, presence and raw handedness score for one ROI."""
        crop = _warp(frame_rgb, roi_affine(roi, HAND_INPUT), HAND_INPUT, cv2.BORDER_REPLICATE)
        np.multiply(crop, np.float32(1.0 / 255.0), out=self._hand_tensor[0], casting="unsafe")
        self._hand.set_tensor(self._hand_input, self._hand_tensor)
        self._hand.invoke()
        lm = self._hand.get_tensor(self._lm).reshape(NUM_LANDMARKS, 3)
        presence = float(self._hand.get_tensor(self._presence).reshape(-1)[0])
        handed = float(self._hand.get_tensor(self._handedness).reshape(-1)[0])
        return landmarks_to_frame(lm, roi), presence, handed

    def detect(self, frame_rgb: np.ndarray, regions: Sequence[Box] | None = None) -> list[Hand]:
        """Hands in an RGB uint8 (H, W, 3) frame, best first; only inside ``regions`` (frame-pixel boxes) if given."""
        hands: list[Hand] = []
        for palm in self.detect_palms(frame_rgb, regions):
            lm, presence, handed = self.landmarks(frame_rgb, roi_from_palm(palm))
            if presence < self.min_presence:
                continue
            right = handed >= 0.5
            hand = Hand(
                landmarks=lm,
                score=presence,
                handedness="right" if right else "left",
                handedness_score=handed if right else 1.0 - handed,
                palm_box=palm.box,
                palm_score=palm.score,
            )
            # Two palms (e.g. from overlapping regions) can lead to one hand: keep the better one.
            if any(_box_iou(hand.box, other.box) > 0.5 for other in hands):
                continue
            hands.append(hand)
            if len(hands) >= self.max_hands:
                break
        return hands


def _box_iou(a: Box, b: Box) -> float:
    return float(blaze.iou_one(np.array(a, dtype=np.float32), np.array([b], dtype=np.float32))[0])


def _check_frame(frame: np.ndarray) -> None:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.shape} {frame.dtype}")


__all__ = [
    "Hand",
    "HandDetector",
    "square_around",
    "wrist_regions",
]
