"""Faces with and without a mask: the AIZOO FaceMaskDetection SSD on LiteRT, and its decoder (pure functions).

The model takes float32 RGB / 255 [1, 260, 260, 3] and returns, per anchor, box offsets [1, 5972, 4]
(centre x, centre y, width, height) and class scores [1, 5972, 2] (Mask, NoMask). As AIZOO's reference does,
the whole frame is resized to 260x260 (no letterbox), so normalised outputs map back to any aspect ratio by
scaling x by the frame width and y by its height.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from accelerators.base import Frame
from accelerators.catalog import ModelManifest
from accelerators.litert import ModelLoadError, load_interpreter, outputs_by_shape
from wardsight.fetch import Artifact, UrlSource

INPUT_SIZE = 260  # pixels, square
FEATURE_MAPS: tuple[int, ...] = (33, 17, 9, 5, 3)
ANCHOR_SIZES: tuple[tuple[float, float], ...] = ((0.04, 0.056), (0.08, 0.11), (0.16, 0.22), (0.32, 0.45), (0.64, 0.72))
ANCHOR_RATIOS: tuple[float, ...] = (1.0, 0.62, 0.42)
ANCHORS_PER_CELL = 4  # both sizes at ratio 1, then the first size at the other two ratios
NUM_ANCHORS = sum(n * n for n in FEATURE_MAPS) * ANCHORS_PER_CELL  # 5972
VARIANCES: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)

Label = Literal["mask", "no_mask"]
LABELS: tuple[Label, Label] = ("mask", "no_mask")  # the model's class order: Mask, NoMask

FACEMASK_AIZOO_NAME = "face-mask-aizoo"
FACEMASK_AIZOO = ModelManifest(
    name=FACEMASK_AIZOO_NAME,
    version="tflite-1",
    task="face_mask",
    runtime="litert",
    input_long_side=INPUT_SIZE,
    input_multiple=INPUT_SIZE,  # fixed 260x260 input: the frame is stretched to it, not letterboxed
    input_dtype="float32",  # RGB / 255
    decoder="aizoo_ssd",
    artifact=Artifact(
        name=FACEMASK_AIZOO_NAME,
        # The offline mirror (and a user's mirror directory) holds the file under this name.
        filename="aizoo_face_mask_detection.tflite",
        sha256="d2347acf155858681619bc009368f730288aa0447d2c97209be4a26d9be4e928",
        size=4_060_180,
        licence="MIT (AIZOOTech FaceMaskDetection)",
        description="AIZOO face-mask SSD: faces with a box and mask / no-mask, 260x260 input",
        sources=(
            UrlSource(
                "https://raw.githubusercontent.com/AIZOOTech/FaceMaskDetection/master/models/face_mask_detection.tflite"
            ),
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Face:
    """One detected face: ``box`` (x1, y1, x2, y2) in pixels of the frame given, the mask call and its score."""

    box: tuple[float, float, float, float]
    label: Label
    score: float


@cache
def _anchors() -> npt.NDArray[np.float32]:
    per_map: list[npt.NDArray[np.float64]] = []
    for n, (s1, s2) in zip(FEATURE_MAPS, ANCHOR_SIZES, strict=True):
        # (width, height) of the four anchors of a cell: sizes s1, s2 at ratio 1, then s1 at the other ratios.
        shapes = [(s, s) for s in (s1, s2)] + [(s1 * np.sqrt(r), s1 / np.sqrt(r)) for r in ANCHOR_RATIOS[1:]]
        wh = np.array(shapes, dtype=np.float64)  # (4, 2)
        centres = (np.arange(n, dtype=np.float64) + 0.5) / n
        cy, cx = np.meshgrid(centres, centres, indexing="ij")  # row-major: y outer, x inner
        c = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)  # (n*n, 1, 2)
        boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=-1)  # (n*n, 4, 4)
        per_map.append(boxes.reshape(-1, 4))
    out = np.concatenate(per_map).astype(np.float32)
    out.setflags(write=False)
    return out


def anchors() -> npt.NDArray[np.float32]:
    """The (5972, 4) anchors as normalised (xmin, ymin, xmax, ymax), in the model's output order (a copy)."""
    return _anchors().copy()


def _nms(boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression, highest score first."""
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou]
    return keep


def decode(
    loc: npt.NDArray[np.float32],
    cls: npt.NDArray[np.float32],
    frame_w: int,
    frame_h: int,
    min_score: float = 0.5,
    iou: float = 0.4,
) -> list[Face]:
    """Turn the model's outputs ([1,]5972x4 offsets, [1,]5972x2 scores) into faces in frame pixels.

    Each anchor keeps its best class; anchors under ``min_score`` are dropped, then NMS across classes
    (as AIZOO's reference does: one face is one box, whichever its call) removes overlaps above ``iou``.
    """
    if frame_w <= 0 or frame_h <= 0:
        raise ValueError(f"bad frame size {frame_w}x{frame_h}")
    if loc.ndim == 3 and loc.shape[0] == 1:
        loc = loc[0]
    if cls.ndim == 3 and cls.shape[0] == 1:
        cls = cls[0]
    if loc.shape != (NUM_ANCHORS, 4) or cls.shape != (NUM_ANCHORS, 2):
        raise ValueError(
            f"AIZOO outputs must be ({NUM_ANCHORS}, 4) and ({NUM_ANCHORS}, 2), got {loc.shape} and {cls.shape}"
        )
    scores = cls.max(axis=1)
    classes = cls.argmax(axis=1)
    idx = np.flatnonzero(scores >= min_score)
    if idx.size == 0:
        return []
    a = _anchors()[idx]
    d = loc[idx] * np.array(VARIANCES, dtype=np.float32)
    aw = a[:, 2] - a[:, 0]
    ah = a[:, 3] - a[:, 1]
    cx = (a[:, 0] + a[:, 2]) / 2 + d[:, 0] * aw
    cy = (a[:, 1] + a[:, 3]) / 2 + d[:, 1] * ah
    w = np.exp(d[:, 2]) * aw
    h = np.exp(d[:, 3]) * ah
    boxes = np.clip(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1), 0.0, 1.0)
    kept_scores = scores[idx]
    faces: list[Face] = []
    for k in _nms(boxes, kept_scores, iou):
        x1, y1, x2, y2 = (float(v) for v in boxes[k])
        if x2 <= x1 or y2 <= y1:
            continue
        faces.append(
            Face(
                box=(x1 * frame_w, y1 * frame_h, x2 * frame_w, y2 * frame_h),
                label=LABELS[int(classes[idx[k]])],
                score=float(kept_scores[k]),
            )
        )
    return faces


def preprocess(frame: Frame, out: npt.NDArray[np.float32]) -> None:
    """Write ``frame`` resized to 260x260 (stretched, as AIZOO's reference does) and scaled to [0, 1] into ``out``."""
    resized = cv2.resize(frame, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    np.multiply(resized, np.float32(1.0 / 255.0), out=out, casting="unsafe")


class CpuFaceMaskDetector:
    """The AIZOO face-mask detector on LiteRT. ``detect`` keeps no reference to the frame."""

    name = "cpu"

    def __init__(
        self,
        model_path: Path,
        num_threads: int = 2,
        min_score: float = 0.5,
        iou: float = 0.4,
        *,
        manifest: ModelManifest = FACEMASK_AIZOO,
    ) -> None:
        self.manifest = manifest
        self.min_score = min_score
        self.iou = iou
        self._interp, self._input_index = load_interpreter(
            model_path, num_threads, INPUT_SIZE, "the AIZOO face-mask model"
        )
        # loc is [1, N, 4], cls is [1, N, 2]
        outputs = outputs_by_shape(self._interp)
        try:
            self._loc_index: int = outputs[(1, NUM_ANCHORS, 4)][0]
            self._cls_index: int = outputs[(1, NUM_ANCHORS, 2)][0]
        except KeyError:
            raise ModelLoadError(f"{model_path} is not the AIZOO face-mask model (outputs {list(outputs)})") from None
        self._tensor = np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.float32)

    def detect(self, frame: Frame) -> list[Face]:
        """Faces in an RGB uint8 (H, W, 3) frame, in that frame's pixel coordinates, best first."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
        preprocess(frame, self._tensor[0])
        self._interp.set_tensor(self._input_index, self._tensor)
        self._interp.invoke()
        loc = self._interp.get_tensor(self._loc_index)[0]
        cls = self._interp.get_tensor(self._cls_index)[0]
        return decode(loc, cls, frame.shape[1], frame.shape[0], self.min_score, self.iou)
