"""Post-processing shared by MediaPipe's SSD-style detectors (BlazeFace, palm detection)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]


def iou_one(box: Array, others: Array) -> Array:
    """IoU of ``box`` (x1, y1, x2, y2) with each row of ``others``."""
    w = np.maximum(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0)
    h = np.maximum(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0)
    inter = w * h
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 0.0)
    areas = np.maximum(others[:, 2] - others[:, 0], 0) * np.maximum(others[:, 3] - others[:, 1], 0)
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def weighted_nms(boxes: Array, scores: Array, keypoints: Array, iou: float) -> list[tuple[Array, float, Array]]:
    """MediaPipe's WEIGHTED non-maximum suppression: each cluster (IoU > ``iou`` with its best box) becomes the
    score-weighted mean of its boxes and keypoints, with the best score. Returns (box, score, keypoints), best first.
    """
    order = np.argsort(-scores, kind="stable")
    out: list[tuple[Array, float, Array]] = []
    while order.size:
        best = int(order[0])
        overlap = iou_one(boxes[best], boxes[order])
        members = order[overlap > iou]
        members = members if members.size else order[:1]
        weights = scores[members][:, None]
        box = (boxes[members] * weights).sum(axis=0) / weights.sum()
        kp = (keypoints[members] * weights[:, :, None]).sum(axis=0) / weights.sum()
        out.append((box.astype(np.float32), float(scores[best]), kp.astype(np.float32)))
        order = order[overlap <= iou]
        order = order[order != best]
    return out


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """IoU of two (x1, y1, x2, y2) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
