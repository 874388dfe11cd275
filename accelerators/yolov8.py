"""YOLOv8 decoders for the tensors Hailo HEFs produce (pure functions, no HailoRT import).

Two layouts, both as documented for HailoRT 4.x (``/work/shared/reference/EDGE_APIS.md`` 2.5 and 2.6):

**YOLOv8-pose raw outputs** (no NMS on the chip). Per scale (strides 8, 16 and 32; a 640x640 input gives
80x80, 40x40 and 20x20 grids) three NHWC tensors, told apart by their channel count, not their names:

- box regression, 64 channels = 4 sides (left, top, right, bottom) x 16 DFL bins (regression length 15):
  softmax over the bins, the expectation is the distance from the anchor centre in strides;
- class score, 1 channel (person); the HEF ends this branch with a sigmoid, so it is already a probability
  (Picamera2's ``pose_utils`` thresholds it directly);
- keypoints, 51 channels = 17 x (x, y, visibility logit): ``x = (2 * raw + col) * stride`` (the same as
  ``stride * (2 * raw - 0.5) + anchor_centre``), likewise y with the row, visibility through a sigmoid.

The anchor centre of cell (row, col) is ``((col + 0.5) * stride, (row + 0.5) * stride)``. Outputs left in
the device's native uint8/uint16 format are dequantised with that output's quant info:
``float = (q - zero_point) * scale``. Then greedy NMS (IoU 0.7, as Hailo's example post-processing).

**NMS_BY_CLASS** (detection HEFs with HailoRT NMS): ``get_buffer()`` gives one float32 (n, 5) array per class,
rows ``[y_min, x_min, y_max, x_max, score]`` normalised 0..1 to the model input. Class 0 (COCO person) becomes
:class:`~accelerators.types.Person` with all keypoint scores 0.

Both map model-input pixels back to the frame through :class:`accelerators.movenet.Letterbox` (frame scaled to
fit the fixed HEF input, placed top-left, padded bottom/right), so any camera aspect ratio keeps its geometry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from accelerators.movenet import Letterbox
from accelerators.types import Person

REG_MAX = 15  # DFL regression length: 16 bins per side
BOX_CHANNELS = 4 * (REG_MAX + 1)
KEYPOINT_CHANNELS = 17 * 3
PAD_VALUE = 114  # the grey Ultralytics letterboxes with

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class QuantInfo:
    """One output's quantisation: ``float = (q - zero_point) * scale`` (HailoRT's ``qp_scale``/``qp_zp``)."""

    scale: float
    zero_point: float


def letterbox_for(frame_w: int, frame_h: int, in_w: int, in_h: int) -> Letterbox:
    """The transform that fits a frame into a fixed model input (e.g. 640x640), top-left, keeping aspect ratio."""
    if frame_w <= 0 or frame_h <= 0:
        raise ValueError(f"bad frame size {frame_w}x{frame_h}")
    return Letterbox(frame_w, frame_h, in_w, in_h, min(in_w / frame_w, in_h / frame_h))


def dequantize(raw: npt.NDArray[np.generic], quant: QuantInfo | None) -> FloatArray:
    """A float32 view of an output: integer outputs need their quant info, float outputs pass through."""
    if np.issubdtype(raw.dtype, np.floating):
        return np.asarray(raw, dtype=np.float32)
    if quant is None:
        raise ValueError(f"a {raw.dtype} output needs its quant info (scale, zero point) to be dequantised")
    return ((raw.astype(np.float32) - np.float32(quant.zero_point)) * np.float32(quant.scale)).astype(np.float32)


def _sigmoid(x: FloatArray) -> FloatArray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))).astype(np.float32)


def iou(a: FloatArray, b: FloatArray) -> FloatArray:
    """IoU of one box ``a`` (4,) against boxes ``b`` (n, 4), all x1, y1, x2, y2."""
    ix1 = np.maximum(a[0], b[:, 0])
    iy1 = np.maximum(a[1], b[:, 1])
    ix2 = np.minimum(a[2], b[:, 2])
    iy2 = np.minimum(a[3], b[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = max(float((a[2] - a[0]) * (a[3] - a[1])), 0.0)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(np.float32)


def nms(boxes: FloatArray, scores: FloatArray, iou_threshold: float, max_keep: int) -> list[int]:
    """Greedy non-maximum suppression: indices kept, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_keep:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        order = rest[iou(boxes[i], boxes[rest]) < iou_threshold]
    return keep


@dataclass(frozen=True)
class _Scale:
    stride: int
    rows: int
    cols: int
    box: str
    score: str
    keypoints: str


def _hwc(arr: npt.NDArray[np.generic], name: str) -> npt.NDArray[np.generic]:
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise ValueError(f"output {name!r} must be (H, W, C) or (1, H, W, C), got {arr.shape}")
    return arr


def pose_scales(shapes: Mapping[str, tuple[int, ...]], in_w: int, in_h: int) -> list[_Scale]:
    """Group the 9 pose outputs by grid size and tell box/score/keypoint tensors apart by channel count."""
    groups: dict[tuple[int, int], dict[int, str]] = {}
    for name, shape in shapes.items():
        hwc = shape[1:] if len(shape) == 4 and shape[0] == 1 else shape
        if len(hwc) != 3:
            raise ValueError(f"output {name!r} must be (H, W, C), got {shape}")
        rows, cols, ch = hwc
        by_ch = groups.setdefault((rows, cols), {})
        if ch in by_ch:
            raise ValueError(f"outputs {by_ch[ch]!r} and {name!r} both have shape {tuple(hwc)}")
        by_ch[ch] = name
    scales: list[_Scale] = []
    for (rows, cols), by_ch in groups.items():
        if set(by_ch) != {BOX_CHANNELS, 1, KEYPOINT_CHANNELS}:
            raise ValueError(
                f"the {rows}x{cols} outputs have channels {sorted(by_ch)}; a YOLOv8-pose HEF has "
                f"{BOX_CHANNELS} (box DFL), 1 (person score) and {KEYPOINT_CHANNELS} (keypoints) per scale"
            )
        stride = in_h // rows
        if stride * rows != in_h or stride * cols != in_w:
            raise ValueError(f"a {rows}x{cols} grid does not tile the {in_w}x{in_h} input")
        scales.append(_Scale(stride, rows, cols, by_ch[BOX_CHANNELS], by_ch[1], by_ch[KEYPOINT_CHANNELS]))
    if not scales:
        raise ValueError("no outputs to decode")
    return sorted(scales, key=lambda s: s.stride)


def decode_pose(
    outputs: Mapping[str, npt.NDArray[np.generic]],
    box: Letterbox,
    *,
    quant: Mapping[str, QuantInfo] | None = None,
    min_score: float = 0.25,
    iou_threshold: float = 0.7,
    max_people: int = 20,
) -> list[Person]:
    """YOLOv8-pose raw outputs (name -> NHWC tensor, float or uint8/uint16) to people in frame pixels."""
    quant = quant or {}
    scales = pose_scales({n: a.shape for n, a in outputs.items()}, box.in_w, box.in_h)
    all_boxes: list[FloatArray] = []
    all_scores: list[FloatArray] = []
    all_kps: list[FloatArray] = []
    bins = np.arange(REG_MAX + 1, dtype=np.float32)
    for sc in scales:
        scores = dequantize(_hwc(outputs[sc.score], sc.score), quant.get(sc.score)).reshape(-1)
        cand = np.flatnonzero(scores >= min_score)  # decode only the candidates: ~8400 anchors at 640x640
        if cand.size == 0:
            continue
        rows, cols = np.divmod(cand, sc.cols)
        cx = ((cols + 0.5) * sc.stride).astype(np.float32)
        cy = ((rows + 0.5) * sc.stride).astype(np.float32)
        raw_box = _hwc(outputs[sc.box], sc.box).reshape(-1, 4, REG_MAX + 1)[cand]
        logits = dequantize(raw_box, quant.get(sc.box))
        logits = logits - logits.max(axis=-1, keepdims=True)
        prob = np.exp(logits)
        dist = (prob / prob.sum(axis=-1, keepdims=True)) @ bins * sc.stride  # (n, 4): left, top, right, bottom
        boxes = np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], axis=1)
        raw_kp = _hwc(outputs[sc.keypoints], sc.keypoints).reshape(-1, 17, 3)[cand]
        kp = dequantize(raw_kp, quant.get(sc.keypoints))
        out_kp = np.empty_like(kp)
        out_kp[:, :, 0] = (2.0 * kp[:, :, 0] + cols[:, None]) * sc.stride
        out_kp[:, :, 1] = (2.0 * kp[:, :, 1] + rows[:, None]) * sc.stride
        out_kp[:, :, 2] = _sigmoid(kp[:, :, 2])
        all_boxes.append(boxes.astype(np.float32))
        all_scores.append(scores[cand])
        all_kps.append(out_kp)
    if not all_boxes:
        return []
    boxes_in = np.concatenate(all_boxes)
    scores_in = np.concatenate(all_scores)
    kps_in = np.concatenate(all_kps)
    people: list[Person] = []
    for i in nms(boxes_in, scores_in, iou_threshold, max_people):
        person = _to_frame(boxes_in[i], float(scores_in[i]), kps_in[i], box)
        if person is not None:
            people.append(person)
    return people


def decode_nms_by_class(
    per_class: Sequence[npt.NDArray[np.floating]],
    box: Letterbox,
    *,
    class_id: int = 0,
    min_score: float = 0.25,
) -> list[Person]:
    """HailoRT NMS_BY_CLASS output (one (n, 5) [y0, x0, y1, x1, score] array per class) to people of ``class_id``."""
    if class_id >= len(per_class):
        raise ValueError(f"NMS output has {len(per_class)} classes, class {class_id} is missing")
    dets = np.asarray(per_class[class_id], dtype=np.float32).reshape(-1, 5)
    people: list[Person] = []
    for y0, x0, y1, x1, score in dets[np.argsort(-dets[:, 4], kind="stable")]:
        if score < min_score:
            continue
        b = np.array([x0 * box.in_w, y0 * box.in_h, x1 * box.in_w, y1 * box.in_h], dtype=np.float32)
        person = _to_frame(b, float(score), np.zeros((17, 3), dtype=np.float32), box, keypoints_valid=False)
        if person is not None:
            people.append(person)
    return people


def _to_frame(
    b: FloatArray, score: float, kp: FloatArray, box: Letterbox, *, keypoints_valid: bool = True
) -> Person | None:
    """Model-input pixels -> frame pixels (divide by the letterbox scale), clipped to the frame."""
    s = box.scale
    x1 = min(max(float(b[0]) / s, 0.0), float(box.frame_w))
    y1 = min(max(float(b[1]) / s, 0.0), float(box.frame_h))
    x2 = min(max(float(b[2]) / s, 0.0), float(box.frame_w))
    y2 = min(max(float(b[3]) / s, 0.0), float(box.frame_h))
    if x2 <= x1 or y2 <= y1:
        return None
    out = np.zeros((17, 3), dtype=np.float32)
    if keypoints_valid:
        out[:, 0] = np.clip(kp[:, 0] / s, 0, box.frame_w - 1)
        out[:, 1] = np.clip(kp[:, 1] / s, 0, box.frame_h - 1)
        out[:, 2] = kp[:, 2]
    return Person(box=(x1, y1, x2, y2), score=score, keypoints=out)
