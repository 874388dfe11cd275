"""Hands: MediaPipe palm detection + hand landmarks (lite models, Apache-2.0) on LiteRT, for the hand-hygiene app.

The pipeline follows MediaPipe's own graphs (``palm_detection_cpu.pbtxt``, ``palm_detection_detection_to_roi.pbtxt``,
``hand_landmark_cpu.pbtxt``), as pure functions plus one runner:

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
from functools import cache
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from accelerators import blaze
from accelerators.litert import ModelLoadError, load_interpreter, outputs_by_shape
from accelerators.types import Person

Box = tuple[float, float, float, float]  # (x1, y1, x2, y2)
Handedness = Literal["left", "right"]

PALM_INPUT = 192  # pixels, square
PALM_STRIDES: tuple[int, ...] = (8, 16, 16, 16)
PALM_ANCHORS_PER_LAYER = 2  # aspect ratio 1.0 and the interpolated scale (aspect ratio 1.0)
NUM_ANCHORS = 2016
NUM_PALM_KEYPOINTS = 7  # wrist centre, index MCP, middle MCP, ring MCP, pinky MCP, thumb CMC, thumb MCP
PALM_COORDS = 4 + 2 * NUM_PALM_KEYPOINTS  # 18
PALM_SCALE = 192.0  # x_scale = y_scale = w_scale = h_scale
SCORE_CLIP = 100.0

ROI_SCALE = 2.6
ROI_SHIFT_Y = -0.5
ROI_TARGET_ANGLE = math.pi / 2  # wrist -> middle MCP points up in the crop
WRIST_KEYPOINT = 0
MIDDLE_MCP_KEYPOINT = 2

HAND_INPUT = 224  # pixels, square
NUM_LANDMARKS = 21

WRIST_MIN_SCORE = 0.3


@dataclass(frozen=True, slots=True)
class Palm:
    """One palm detection: ``box`` (x1, y1, x2, y2), ``keypoints`` (7, 2) float32 (x, y) and the score.

    :func:`decode_palms` gives them normalised to the square detector input; :meth:`to_frame` maps them into
    frame pixels.
    """

    box: Box
    keypoints: npt.NDArray[np.float32]
    score: float

    def to_frame(self, x0: float, y0: float, size: float) -> Palm:
        """Map from the unit square of a crop whose top-left is (x0, y0) in the frame and whose side is ``size``."""
        x1, y1, x2, y2 = self.box
        kp = self.keypoints * np.float32(size) + np.array([x0, y0], dtype=np.float32)
        return Palm(
            box=(x0 + x1 * size, y0 + y1 * size, x0 + x2 * size, y0 + y2 * size),
            keypoints=kp.astype(np.float32),
            score=self.score,
        )


@dataclass(frozen=True, slots=True)
class HandRoi:
    """A square, rotated region in frame pixels: centre, side and rotation (radians, clockwise on screen)."""

    cx: float
    cy: float
    size: float
    rotation: float


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


# --- palm detection: anchors and decoding -----------------------------------------------------------------------


@cache
def _anchors() -> npt.NDArray[np.float32]:
    per_layer: list[npt.NDArray[np.float64]] = []
    layer = 0
    while layer < len(PALM_STRIDES):
        stride = PALM_STRIDES[layer]
        same = sum(1 for s in PALM_STRIDES[layer:] if s == stride)  # layers sharing a stride share one grid
        per_cell = PALM_ANCHORS_PER_LAYER * same
        n = math.ceil(PALM_INPUT / stride)
        centres = (np.arange(n, dtype=np.float64) + 0.5) / n
        cy, cx = np.meshgrid(centres, centres, indexing="ij")  # y outer, x inner
        c = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)
        per_layer.append(np.repeat(c, per_cell, axis=1).reshape(-1, 2))
        layer += same
    out = np.concatenate(per_layer).astype(np.float32)
    out.setflags(write=False)
    return out


def anchors() -> npt.NDArray[np.float32]:
    """The (2016, 2) anchor centres (x, y), normalised to the detector input, in the model's output order (a copy).

    Fixed anchor size: every anchor is 1 x 1, so decoding needs only the centres.
    """
    return _anchors().copy()


def weighted_nms(palms: Sequence[Palm], iou: float = 0.3) -> list[Palm]:
    """MediaPipe's WEIGHTED non-maximum suppression over palms (box and keypoints averaged by score)."""
    if not palms:
        return []
    boxes = np.array([p.box for p in palms], dtype=np.float32)
    scores = np.array([p.score for p in palms], dtype=np.float32)
    kps = np.stack([p.keypoints for p in palms]).astype(np.float32)
    return [
        Palm(box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])), keypoints=k, score=score)
        for b, score, k in blaze.weighted_nms(boxes, scores, kps, iou)
    ]


def decode_palms(
    regressors: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    min_score: float = 0.5,
    iou: float = 0.3,
) -> list[Palm]:
    """Turn the palm detector's outputs ([1,]2016x18, [1,]2016x1) into palms normalised to its input, best first."""
    if regressors.ndim == 3 and regressors.shape[0] == 1:
        regressors = regressors[0]
    if scores.ndim == 3 and scores.shape[0] == 1:
        scores = scores[0]
    if scores.ndim == 1:
        scores = scores[:, None]
    if regressors.shape != (NUM_ANCHORS, PALM_COORDS) or scores.shape != (NUM_ANCHORS, 1):
        raise ValueError(
            f"palm outputs must be ({NUM_ANCHORS}, {PALM_COORDS}) and ({NUM_ANCHORS}, 1), "
            f"got {regressors.shape} and {scores.shape}"
        )
    probs = 1.0 / (1.0 + np.exp(-np.clip(scores[:, 0].astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    idx = np.flatnonzero(probs >= min_score)
    if idx.size == 0:
        return []
    a = _anchors()[idx]  # (k, 2), anchor w = h = 1
    r = regressors[idx].astype(np.float64) / PALM_SCALE
    cx = r[:, 0] + a[:, 0]
    cy = r[:, 1] + a[:, 1]
    w = r[:, 2]
    h = r[:, 3]
    kp = r[:, 4:].reshape(-1, NUM_PALM_KEYPOINTS, 2) + a[:, None, :]
    palms = [
        Palm(
            box=(float(cx[k] - w[k] / 2), float(cy[k] - h[k] / 2), float(cx[k] + w[k] / 2), float(cy[k] + h[k] / 2)),
            keypoints=kp[k].astype(np.float32),
            score=float(probs[idx[k]]),
        )
        for k in range(idx.size)
        if w[k] > 0 and h[k] > 0
    ]
    return weighted_nms(palms, iou)


# --- hand ROI, crops and landmark mapping ------------------------------------------------------------------------


def roi_from_palm(palm: Palm) -> HandRoi:
    """The hand-landmark ROI for a palm in frame pixels (MediaPipe's PalmDetectionDetectionToRoi)."""
    x0, y0 = (float(v) for v in palm.keypoints[WRIST_KEYPOINT])
    x1, y1 = (float(v) for v in palm.keypoints[MIDDLE_MCP_KEYPOINT])
    rotation = ROI_TARGET_ANGLE - math.atan2(-(y1 - y0), x1 - x0)
    rotation = rotation - 2 * math.pi * math.floor((rotation + math.pi) / (2 * math.pi))  # to [-pi, pi)
    bx1, by1, bx2, by2 = palm.box
    width, height = bx2 - bx1, by2 - by1
    cx, cy = (bx1 + bx2) / 2, (by1 + by2) / 2
    # Shift along the rotated y axis (towards the fingers for a negative shift), then square on the long side.
    cx += -height * ROI_SHIFT_Y * math.sin(rotation)
    cy += height * ROI_SHIFT_Y * math.cos(rotation)
    size = max(width, height) * ROI_SCALE
    return HandRoi(cx=cx, cy=cy, size=size, rotation=rotation)


def roi_affine(roi: HandRoi, out_size: int) -> npt.NDArray[np.float64]:
    """The 2x3 matrix taking crop pixel coordinates (continuous, [0, out_size)) to frame pixel coordinates."""
    s = roi.size / out_size
    c, n = math.cos(roi.rotation), math.sin(roi.rotation)
    # frame = centre + R(rotation) @ ((p - out_size / 2) * s)
    half = out_size / 2
    return np.array(
        [
            [c * s, -n * s, roi.cx - (c * s * half - n * s * half)],
            [n * s, c * s, roi.cy - (n * s * half + c * s * half)],
        ],
        dtype=np.float64,
    )


def landmarks_to_frame(landmarks: npt.NDArray[np.float32], roi: HandRoi, input_size: int = HAND_INPUT) -> np.ndarray:
    """Map (21, 3) landmarks in hand-model input pixels to frame pixels (z scaled like x and y)."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(-1, 3)
    m = roi_affine(roi, input_size)
    out = np.empty_like(lm)
    out[:, :2] = lm[:, :2] @ m[:, :2].T + m[:, 2]
    out[:, 2] = lm[:, 2] * (roi.size / input_size)
    return out.astype(np.float32)


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
    "HandRoi",
    "Palm",
    "anchors",
    "decode_palms",
    "landmarks_to_frame",
    "roi_affine",
    "roi_from_palm",
    "square_around",
    "weighted_nms",
    "wrist_regions",
]
