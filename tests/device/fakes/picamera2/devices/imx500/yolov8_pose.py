"""The raw YOLOv8-pose output of the IMX500 pose network (``imx500_network_yolov8n_pose.rpk``), for the fake.

Layout, as Picamera2's ``picamera2/devices/imx500/postprocess_yolov8.py`` ``postprocess_yolov8_keypoints`` consumes
it from ``IMX500.get_outputs(metadata, add_batch=True)`` (EDGE_APIS.md 1.8; examples/imx500/
imx500_pose_estimation_yolov8n_demo.py):

- three tensors, shapes (1, 4, 8400), (1, 1, 8400), (1, 51, 8400) with the batch axis (the ``CnnOutputTensorInfo``
  shapes are (4, 8400), (1, 8400), (51, 8400));
- 8400 anchors: feature maps 80x80 (stride 8), 40x40 (stride 16), 20x20 (stride 32) of the 640x640 input, in that
  order, each row-major (y outer, x inner); anchor point = (column + 0.5, row + 0.5) in grid units;
- boxes: distances (left, top, right, bottom) from the anchor point in units of the anchor's stride
  (``dist2bbox_yolo_v8(..., xywh=True) * stride`` gives (xc, yc, w, h) in input pixels);
- score: the person probability, already in [0, 1];
- keypoints: 17 x (x, y, visibility) interleaved; decoded x = (raw * 2 + (anchor_x - 0.5)) * stride, likewise y,
  visibility = sigmoid(raw).

``encode_people`` writes people (in 640x640 input pixels) into that layout: each person at one anchor (the stride
chosen by the box size, the cell holding the box centre), plus ``echoes`` weaker, slightly smaller copies at
neighbouring anchors, as a real detector answers one person at several anchors (so a decoder without NMS reports
duplicates). Every other anchor has score 0 and very negative visibility logits.

``reference_postprocess_yolov8_keypoints`` re-implements the real post-processing (score threshold, sort, boxes to
(ymin, xmin, ymax, xmax), NMS with Picamera2's +1-pixel areas). It exists for the fake's own tests only: product
code carries its own decoder and must not import this.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

INPUT_SIZE = (640, 640)  # (width, height): postprocess_yolov8_keypoints hard-codes the 80/40/20 grids of 640x640
FEATURE_SIZES = (80, 40, 20)
STRIDES = (8, 16, 32)
NUM_KEYPOINTS = 17
NUM_ANCHORS = sum(n * n for n in FEATURE_SIZES)  # 8400
LEVEL_OFFSETS = (0, 6400, 8000)
SCORE_EPS = 1e-4  # visibilities are clipped to [eps, 1 - eps] before the logit
ABSENT_LOGIT = -20.0  # visibility logit of anchors without a person: sigmoid(-20) ~ 2e-9
ECHO_SCORE = 0.85  # each echo's score is the person's times this (per echo)
ECHO_SHRINK = 0.03  # and its box is this much smaller (per echo), about the same centre

Box = tuple[float, float, float, float]
PoseDetection = tuple[Box, float, np.ndarray]  # box (x1, y1, x2, y2), score, keypoints (17, 3) x, y, score
_NEIGHBOURS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))


def anchors() -> tuple[np.ndarray, np.ndarray]:
    """Anchor points (8400, 2) as (x, y) in grid units, and each anchor's stride (8400,): make_anchors_yolo_v8."""
    points, strides = [], []
    for n, stride in zip(FEATURE_SIZES, STRIDES, strict=True):
        ys, xs = np.mgrid[0:n, 0:n]
        points.append(np.stack([xs.reshape(-1) + 0.5, ys.reshape(-1) + 0.5], axis=1))
        strides.append(np.full(n * n, stride, np.float64))
    return np.concatenate(points), np.concatenate(strides)


def _level_for(box: Box) -> int:
    """The largest stride whose cell is smaller than half the box's shorter side (else the finest)."""
    half_short = min(box[2] - box[0], box[3] - box[1]) / 2
    fitting = [i for i, s in enumerate(STRIDES) if s < half_short]
    return fitting[-1] if fitting else 0


def _cell(level: int, x: float, y: float, dc: int = 0, dr: int = 0) -> int | None:
    """The anchor index of the cell holding (x, y) at this level, moved by (dc, dr) cells; None off the grid."""
    n, s = FEATURE_SIZES[level], STRIDES[level]
    col = min(max(int(np.floor(x / s)), 0), n - 1) + dc
    row = min(max(int(np.floor(y / s)), 0), n - 1) + dr
    if not (0 <= col < n and 0 <= row < n):
        return None
    return LEVEL_OFFSETS[level] + row * n + col


def _write(
    index: int,
    box: Box,
    score: float,
    keypoints: np.ndarray,
    out: tuple[np.ndarray, np.ndarray, np.ndarray],
    points: np.ndarray,
    strides: np.ndarray,
) -> None:
    boxes, scores, kpts = out
    ax, ay = points[index]
    s = strides[index]
    x1, y1, x2, y2 = box
    boxes[:, index] = (ax - x1 / s, ay - y1 / s, x2 / s - ax, y2 / s - ay)
    scores[0, index] = min(max(score, 0.0), 1.0)
    p = np.clip(keypoints[:, 2].astype(np.float64), SCORE_EPS, 1 - SCORE_EPS)
    kpts[0::3, index] = (keypoints[:, 0] / s - (ax - 0.5)) / 2
    kpts[1::3, index] = (keypoints[:, 1] / s - (ay - 0.5)) / 2
    kpts[2::3, index] = np.log(p / (1 - p))


def encode_people(people: Sequence[PoseDetection], echoes: int = 2) -> list[np.ndarray]:
    """People in 640x640 input pixels -> [boxes (4, 8400), scores (1, 8400), keypoints (51, 8400)] float32."""
    boxes = np.zeros((4, NUM_ANCHORS), np.float64)
    scores = np.zeros((1, NUM_ANCHORS), np.float64)
    kpts = np.zeros((3 * NUM_KEYPOINTS, NUM_ANCHORS), np.float64)
    kpts[2::3] = ABSENT_LOGIT
    out = (boxes, scores, kpts)
    points, strides = anchors()
    taken: set[int] = set()

    def free_anchor(level_order: Sequence[int], x: float, y: float) -> int | None:
        for level in level_order:
            for dc, dr in _NEIGHBOURS:
                index = _cell(level, x, y, dc, dr)
                if index is not None and index not in taken:
                    return index
        return None

    for box, score, keypoints in sorted(people, key=lambda p: -p[1]):
        keypoints = np.asarray(keypoints, np.float64).reshape(NUM_KEYPOINTS, 3)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        level = _level_for(box)
        order = sorted(range(len(STRIDES)), key=lambda i: abs(i - level))
        index = free_anchor(order, cx, cy)
        if index is None:
            raise RuntimeError("fake IMX500: more people than anchors around them")  # cannot happen in a test
        taken.add(index)
        _write(index, box, score, keypoints, out, points, strides)
        for k in range(1, echoes + 1):
            echo = free_anchor([level], cx, cy)
            if echo is None:
                break
            taken.add(echo)
            f = (1 - ECHO_SHRINK * k) / 2
            w, h = box[2] - box[0], box[3] - box[1]
            echo_box = (cx - w * f, cy - h * f, cx + w * f, cy + h * f)
            _write(echo, echo_box, score * ECHO_SCORE**k, keypoints, out, points, strides)
    return [boxes.astype(np.float32), scores.astype(np.float32), kpts.astype(np.float32)]


def _nms(yxyx: np.ndarray, scores: np.ndarray, iou_thres: float, max_out_dets: int) -> list[int]:
    """Greedy NMS as Picamera2's ``postprocess.nms``: areas and intersections count (x2 - x1 + 1) pixels."""
    y1, x1, y2, x2 = yxyx.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    remaining = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while remaining:
        best, rest = remaining[0], np.array(remaining[1:], dtype=np.int64)
        keep.append(int(best))
        if rest.size == 0:
            break
        iw = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        ih = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = iw * ih
        iou = inter / (areas[best] + areas[rest] - inter)
        remaining = [int(i) for i in rest[iou <= iou_thres]]
    return keep[:max_out_dets]


def reference_postprocess_yolov8_keypoints(
    outputs: Sequence[np.ndarray], conf: float = 0.3, iou_thres: float = 0.7, max_out_dets: int = 300
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FOR THE FAKE'S OWN TESTS. The math of Picamera2's postprocess_yolov8_keypoints on the batched outputs:
    returns boxes (N, 4) as (ymin, xmin, ymax, xmax) in input pixels, scores (N,), keypoints (N, 51) as
    x, y, visibility per keypoint (input pixels, probability)."""
    dist, score, raw = (np.asarray(o, np.float64) for o in outputs)
    if dist.shape != (1, 4, NUM_ANCHORS) or score.shape != (1, 1, NUM_ANCHORS):
        raise ValueError(f"not a YOLOv8-pose output: {dist.shape}, {score.shape}")
    if raw.shape != (1, 3 * NUM_KEYPOINTS, NUM_ANCHORS):
        raise ValueError(f"not a YOLOv8-pose keypoint output: {raw.shape}")
    points, strides = anchors()
    ax, ay = points[:, 0], points[:, 1]
    left, top, right, bottom = dist[0]
    x1, y1, x2, y2 = (ax - left) * strides, (ay - top) * strides, (ax + right) * strides, (ay + bottom) * strides
    kx = (raw[0, 0::3] * 2 + (ax - 0.5)) * strides
    ky = (raw[0, 1::3] * 2 + (ay - 0.5)) * strides
    kv = 1 / (1 + np.exp(-raw[0, 2::3]))
    keypoints = np.stack([kx, ky, kv], axis=1).transpose(2, 0, 1).reshape(NUM_ANCHORS, 3 * NUM_KEYPOINTS)
    scores = score[0, 0]
    candidates = np.flatnonzero(scores > conf)
    candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
    yxyx = np.stack([y1, x1, y2, x2], axis=1)[candidates]
    keep = candidates[_nms(yxyx, scores[candidates], iou_thres, max_out_dets)]
    return np.stack([y1, x1, y2, x2], axis=1)[keep], scores[keep], keypoints[keep]
