"""Palm detection outputs and hand regions as pure functions (steps 1 and 2 of :mod:`accelerators.hands`).

Palm detection: 2016 anchors (MediaPipe's SsdAnchorsCalculator with the palm options), regressors divided by
192, a sigmoid on scores clipped to +-100, weighted NMS. The hand ROI from a palm: rotated so that wrist ->
middle finger MCP points up, shifted by -0.5 box heights along that axis, squared on the long side and scaled by
2.6; :func:`landmarks_to_frame` maps the landmark model's output back through it. Coordinates are continuous frame
pixels (pixel i spans [i, i + 1)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from accelerators import blaze

Box = tuple[float, float, float, float]  # (x1, y1, x2, y2)

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

HAND_INPUT = 224  # pixels, square (the landmark model)


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


# --- hand ROI and landmark mapping -------------------------------------------------------------------------------


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


__all__ = [
    "HandRoi",
    "Palm",
    "anchors",
    "decode_palms",
    "landmarks_to_frame",
    "roi_affine",
    "roi_from_palm",
    "weighted_nms",
]
