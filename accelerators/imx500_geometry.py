"""The AI camera's pure geometry (no camera): where the on-sensor network may look without seeing a privacy
region (the inference ROI, :func:`clear_roi`), and where the people it found are in the frame (:func:`decode_ssd`).
See :mod:`accelerators.imx500` for the camera and the coordinate facts these rely on."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from accelerators.types import Person
from wardsight.errors import WardSightError

PERSON_CLASS = 0
ROI_GRID = (64, 48)  # privacy masks are pooled to this many cells (any privacy pixel taints its cell)

BoolMask = npt.NDArray[np.bool_]
MaskFor = Callable[[int, int], BoolMask]  # (width, height) -> True where the privacy regions are
Rect = tuple[int, int, int, int]  # (x, y, w, h)


class Imx500Error(WardSightError):
    """The AI camera cannot be used; the message says why."""


def largest_clear_rect(dirty: BoolMask) -> tuple[int, int, int, int] | None:
    """The largest axis-aligned rectangle (col, row, cols, rows) of False cells, or None if every cell is True."""
    rows, cols = dirty.shape
    heights = np.zeros(cols + 1, np.int64)  # sentinel 0 at the end
    best: tuple[int, int, int, int] | None = None
    best_area = 0
    for r in range(rows):
        heights[:cols] = np.where(dirty[r], 0, heights[:cols] + 1)
        stack: list[int] = []
        for c in range(cols + 1):
            while stack and heights[stack[-1]] >= heights[c]:
                h = int(heights[stack.pop()])
                left = stack[-1] + 1 if stack else 0
                area = h * (c - left)
                if area > best_area:
                    best_area, best = area, (left, r - h + 1, c - left, h)
            stack.append(c)
    return best


def clear_roi(mask: BoolMask | None, crop: Rect, grid: tuple[int, int] = ROI_GRID) -> Rect | None:
    """The inference ROI in sensor pixels: the largest rectangle of ``crop`` (the sensor area the frame shows)
    holding no privacy pixel of ``mask`` (frame-sized, True = private). None when there is none."""
    cx, cy, cw, ch = crop
    if mask is None or not mask.any():
        return crop
    h, w = mask.shape
    gw, gh = min(grid[0], w), min(grid[1], h)
    # Cell (i, j) covers frame rows [i*h//gh, (i+1)*h//gh) etc.; dirty if any pixel in it is private.
    ys = np.arange(gh + 1) * h // gh
    xs = np.arange(gw + 1) * w // gw
    dirty = np.logical_or.reduceat(np.logical_or.reduceat(mask, ys[:-1], axis=0), xs[:-1], axis=1)
    found = largest_clear_rect(dirty)
    if found is None:
        return None
    c0, r0, nc, nr = found
    fx0, fx1, fy0, fy1 = xs[c0], xs[c0 + nc], ys[r0], ys[r0 + nr]
    # Frame pixels -> sensor pixels, rounded inwards so the ROI never grows into a private cell.
    sx0 = cx + int(np.ceil(fx0 * cw / w))
    sx1 = cx + int(np.floor(fx1 * cw / w))
    sy0 = cy + int(np.ceil(fy0 * ch / h))
    sy1 = cy + int(np.floor(fy1 * ch / h))
    if sx1 - sx0 < 2 or sy1 - sy0 < 2:
        return None
    return (sx0, sy0, sx1 - sx0, sy1 - sy0)


def decode_ssd(
    outputs: list[npt.NDArray[np.float32]],
    *,
    input_size: tuple[int, int],
    roi: Rect,
    scaler_crop: Rect,
    frame_size: tuple[int, int],
    bbox_normalization: bool = False,
    bbox_order: str = "yx",
    min_score: float = 0.4,
    person_class: int = PERSON_CLASS,
) -> list[Person]:
    """People from a post-processed SSD network's outputs (as ``get_outputs(..., add_batch=True)`` returns them),
    boxes in frame pixels."""
    if len(outputs) < 3:
        raise Imx500Error(f"expected boxes, scores and classes tensors; got {len(outputs)} tensors")
    boxes = np.asarray(outputs[0][0], np.float32)
    scores = np.asarray(outputs[1][0], np.float32).reshape(-1)
    classes = np.asarray(outputs[2][0], np.float32).reshape(-1)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(scores) != len(boxes) or len(classes) != len(boxes):
        raise Imx500Error(f"not SSD outputs: boxes {boxes.shape}, scores {scores.shape}, classes {classes.shape}")
    if bbox_normalization:
        boxes = boxes / float(input_size[1])
    if bbox_order == "xy":
        boxes = boxes[:, [1, 0, 3, 2]]
    rx, ry, rw, rh = roi
    cx, cy, cw, ch = scaler_crop
    fw, fh = frame_size
    people: list[Person] = []
    for (y0, x0, y1, x1), score, cls in zip(boxes, scores, classes, strict=True):
        if round(float(cls)) != person_class or not score >= min_score:
            continue
        y0, x0, y1, x1 = (float(np.clip(v, 0.0, 1.0)) for v in (y0, x0, y1, x1))
        if x1 <= x0 or y1 <= y0:
            continue
        # ROI-normalised -> sensor pixels -> frame pixels (the frame shows the ScalerCrop area of the sensor).
        fx = [((rx + v * rw) - cx) * fw / cw for v in (x0, x1)]
        fy = [((ry + v * rh) - cy) * fh / ch for v in (y0, y1)]
        box = (
            min(max(fx[0], 0.0), float(fw)),
            min(max(fy[0], 0.0), float(fh)),
            min(max(fx[1], 0.0), float(fw)),
            min(max(fy[1], 0.0), float(fh)),
        )
        if box[2] <= box[0] or box[3] <= box[1]:
            continue  # the part of the sensor the network saw lies outside this frame
        kps = np.zeros((17, 3), np.float32)
        kps[:, 0], kps[:, 1] = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        people.append(Person(box, min(1.0, float(score)), kps))
    people.sort(key=lambda p: -p.score)
    return people


# -- YOLOv8 pose (imx500_network_yolov8n_pose.rpk) -------------------------------------------------------------

YOLO_STRIDES = (8, 16, 32)  # feature maps of an input side / stride cells each, in this order, row-major


def yolo_anchors(input_size: tuple[int, int]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Anchor centres (N, 2) in grid units (column + 0.5, row + 0.5) and their strides (N,), as YOLOv8 orders them."""
    w, h = input_size
    centres, strides = [], []
    for stride in YOLO_STRIDES:
        cols, rows = w // stride, h // stride
        ys, xs = np.meshgrid(np.arange(rows) + 0.5, np.arange(cols) + 0.5, indexing="ij")
        centres.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full(rows * cols, stride))
    return np.concatenate(centres).astype(np.float32), np.concatenate(strides).astype(np.float32)


def _iou_one(box: npt.NDArray[np.float32], others: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    x0 = np.maximum(box[0], others[:, 0])
    y0 = np.maximum(box[1], others[:, 1])
    x1 = np.minimum(box[2], others[:, 2])
    y1 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _candidates(
    dist: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    anchors: npt.NDArray[np.float32],
    strides: npt.NDArray[np.float32],
    min_score: float,
    iou_threshold: float,
    max_people: int,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    """The anchors kept (best first) and their boxes (x0, y0, x1, y1) in input pixels, after non-maximum suppression."""
    keep = np.flatnonzero(scores >= min_score)
    keep = keep[np.argsort(-scores[keep])]
    a, s = anchors[keep], strides[keep][:, None]
    boxes = np.concatenate([(a - dist[:2, keep].T) * s, (a + dist[2:, keep].T) * s], axis=1)
    chosen: list[int] = []
    suppressed = np.zeros(len(keep), bool)
    for i in range(len(keep)):
        if suppressed[i]:
            continue
        chosen.append(i)
        if len(chosen) >= max_people:
            break
        suppressed[i + 1 :] |= _iou_one(boxes[i], boxes[i + 1 :]) > iou_threshold
    return keep[chosen], boxes[chosen]


def decode_yolov8_pose(
    outputs: list[npt.NDArray[np.float32]],
    *,
    input_size: tuple[int, int],
    roi: Rect,
    scaler_crop: Rect,
    frame_size: tuple[int, int],
    min_score: float = 0.4,
    iou_threshold: float = 0.7,
    max_people: int = 20,
) -> list[Person]:
    """People with 17 COCO keypoints from the YOLOv8 pose network's raw outputs (as ``get_outputs(...,
    add_batch=True)`` returns them: box distances (1, 4, N), person scores (1, 1, N), keypoints (1, 51, N)), in
    frame pixels. The decoding is YOLOv8's, as Picamera2's ``postprocess_yolov8_keypoints`` does it on the CPU:
    per anchor, the box is (l, t, r, b) distances from the anchor centre in stride units; each keypoint's x and y
    are ``(raw * 2 + anchor - 0.5) * stride`` input pixels and its visibility a logit; then score threshold and
    non-maximum suppression. Input pixels map to the frame through the inference ROI and ``ScalerCrop``."""
    if len(outputs) < 3:
        raise Imx500Error(f"expected box, score and keypoint tensors; got {len(outputs)} tensors")
    anchors, strides = yolo_anchors(input_size)
    n = len(anchors)
    dist = np.asarray(outputs[0], np.float32).reshape(4, -1)
    scores = np.asarray(outputs[1], np.float32).reshape(-1)
    raw_kps = np.asarray(outputs[2], np.float32).reshape(51, -1)
    if dist.shape[1] != n or len(scores) != n or raw_kps.shape[1] != n:
        raise Imx500Error(
            f"not YOLOv8 pose outputs for a {input_size[0]}x{input_size[1]} input ({n} anchors): "
            f"{[np.asarray(o).shape for o in outputs[:3]]}"
        )
    keep, boxes = _candidates(dist, scores, anchors, strides, min_score, iou_threshold, max_people)
    rx, ry, rw, rh = roi
    cx, cy, cw, ch = scaler_crop
    fw, fh = frame_size
    iw, ih = input_size
    sx, sy = rw / iw * fw / cw, rh / ih * fh / ch  # input pixels -> frame pixels
    ox, oy = (rx - cx) * fw / cw, (ry - cy) * fh / ch

    def to_frame(x: npt.NDArray[np.float32], y: npt.NDArray[np.float32]) -> tuple[npt.NDArray, npt.NDArray]:
        return np.clip(ox + x * sx, 0, fw), np.clip(oy + y * sy, 0, fh)

    people: list[Person] = []
    for i, j in enumerate(keep):
        bx, by = to_frame(boxes[i, [0, 2]], boxes[i, [1, 3]])
        if bx[1] <= bx[0] or by[1] <= by[0]:
            continue  # the part of the sensor the network saw lies outside this frame
        k = raw_kps[:, j].reshape(17, 3)
        kx = (k[:, 0] * 2.0 + anchors[j, 0] - 0.5) * strides[j]
        ky = (k[:, 1] * 2.0 + anchors[j, 1] - 0.5) * strides[j]
        fx, fy = to_frame(kx, ky)
        visible = 1.0 / (1.0 + np.exp(-np.clip(k[:, 2], -60.0, 60.0)))
        kps = np.stack([fx, fy, visible], axis=1).astype(np.float32)
        box = (float(bx[0]), float(by[0]), float(bx[1]), float(by[1]))
        people.append(Person(box, min(1.0, float(scores[j])), kps))
    return people
