"""Faces, then a mask call per face: BlazeFace full range (MediaPipe, Apache-2.0) and the AIZOO SSD on each crop.

Stage 1, :class:`FaceDetector`, is MediaPipe's full-range face detector
(``face_detection_full_range_sparse.tflite``) run the way MediaPipe's ``FaceDetectionFullRange`` graph runs
it: the frame letterboxed to 192x192 keeping its aspect ratio (zero border), RGB scaled to [-1, 1];
outputs regressors [1, 2304, 16] and score logits [1, 2304, 1]. The anchors are those of MediaPipe's
``SsdAnchorsCalculator`` with the graph's options (one layer, stride 4, anchor offset 0.5, aspect ratio 1,
``fixed_anchor_size``, ``interpolated_scale_aspect_ratio`` 0): a 48x48 grid, one anchor per cell, centres
((col + 0.5) / 48, (row + 0.5) / 48), rows outer, width = height = 1. The decoder is
``TensorsToDetectionsCalculator`` with ``reverse_output_order`` (x before y): centre x = raw[0] / 192 + anchor
x, centre y = raw[1] / 192 + anchor y, w = raw[2] / 192, h = raw[3] / 192, then six (x, y) keypoints the
same way; score = sigmoid(clip(logit, -100, 100)); weighted NMS at IoU 0.3. Because mask-dev style scenes hold
many small faces, the detector can also run on overlapping tiles and merge them with the full frame.

Stage 2, :class:`TwoStageMaskDetector`, crops each face with a margin, runs the AIZOO model on the crop
and takes the best AIZOO face at the crop's centre as the call; AIZOO's own faces from the whole frame are
added as proposals too (BlazeFace misses many masked faces, the lower half of which is hidden). A face
AIZOO cannot classify in its crop is "unknown", never guessed. With a mask head
(:class:`accelerators.mask_classifier.MaskClassifier`, when its file is on the device) the call is the head's on
the proposal's crop, or AIZOO's "mask" where the head is unsure (:func:`accelerators.mask_classifier.combine`):
every "no_mask" is then the head's, the more precise of the two.
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
from accelerators.blaze import box_iou, weighted_nms
from accelerators.facemask import CpuFaceMaskDetector, Face
from accelerators.litert import ModelLoadError, load_interpreter, outputs_by_shape
from accelerators.mask_classifier import MaskClassifier, combine

INPUT_SIZE = 192  # pixels, square
STRIDE = 4
GRID = INPUT_SIZE // STRIDE  # 48
NUM_ANCHORS = GRID * GRID  # 2304: one anchor per cell
NUM_COORDS = 16  # box (cx, cy, w, h) then 6 keypoints (x, y)
NUM_KEYPOINTS = 6
SCALE = 192.0  # x_scale = y_scale = w_scale = h_scale
SCORE_CLIP = 100.0

Box = tuple[float, float, float, float]
MaskLabel = Literal["mask", "no_mask", "unknown"]


@dataclass(frozen=True, slots=True)
class DetectedFace:
    """One face from stage 1: ``box`` (x1, y1, x2, y2) and six keypoints (x, y) in frame pixels, the score."""

    box: Box
    score: float
    keypoints: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True, slots=True)
class MaskedFace:
    """One face with its mask call; ``mask_score`` is AIZOO's score for the call (0 when ``unknown``)."""

    box: Box
    label: MaskLabel
    face_score: float
    mask_score: float


@cache
def _anchors() -> npt.NDArray[np.float32]:
    centres = (np.arange(GRID, dtype=np.float64) + 0.5) / GRID
    cy, cx = np.meshgrid(centres, centres, indexing="ij")  # rows (y) outer, columns (x) inner
    out = np.stack([cx.ravel(), cy.ravel()], axis=1).astype(np.float32)
    out.setflags(write=False)
    return out


def anchors() -> npt.NDArray[np.float32]:
    """The (2304, 2) anchor centres (x, y), normalised, in the model's output order (a copy); all are 1 x 1."""
    return _anchors().copy()


def decode_boxes(raw: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Regressors ([1,] 2304 x 16) to boxes (2304, 4) as normalised (x1, y1, x2, y2) and keypoints (2304, 6, 2)."""
    if raw.ndim == 3 and raw.shape[0] == 1:
        raw = raw[0]
    if raw.shape != (NUM_ANCHORS, NUM_COORDS):
        raise ValueError(f"BlazeFace regressors must be ({NUM_ANCHORS}, {NUM_COORDS}), got {raw.shape}")
    a = _anchors()
    cx = raw[:, 0] / SCALE + a[:, 0]  # anchor width and height are 1 (fixed_anchor_size)
    cy = raw[:, 1] / SCALE + a[:, 1]
    w = raw[:, 2] / SCALE
    h = raw[:, 3] / SCALE
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
    kp = raw[:, 4:].reshape(NUM_ANCHORS, NUM_KEYPOINTS, 2) / SCALE + a[:, None, :]
    return boxes, kp.astype(np.float32)


def scores_from_logits(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """sigmoid(clip(logit, -100, 100)) for ([1,] 2304 [x 1]) logits, as a flat (2304,) array."""
    flat = np.asarray(logits, dtype=np.float64).reshape(-1)  # float64: exp(100) overflows float32
    if flat.shape != (NUM_ANCHORS,):
        raise ValueError(f"BlazeFace scores must hold {NUM_ANCHORS} values, got {np.shape(logits)}")
    return (1.0 / (1.0 + np.exp(-np.clip(flat, -SCORE_CLIP, SCORE_CLIP)))).astype(np.float32)


def decode(
    raw: npt.NDArray[np.float32],
    logits: npt.NDArray[np.float32],
    min_score: float = 0.5,
    iou: float = 0.3,
) -> list[tuple[npt.NDArray[np.float32], float, npt.NDArray[np.float32]]]:
    """Model outputs to faces in normalised input-tensor coordinates: (box x1 y1 x2 y2, score, keypoints 6 x 2)."""
    scores = scores_from_logits(logits)
    boxes, kps = decode_boxes(raw)
    idx = np.flatnonzero(scores >= min_score)
    if idx.size == 0:
        return []
    return weighted_nms(boxes[idx], scores[idx], kps[idx], iou)


def letterbox(image: Frame, out: npt.NDArray[np.float32]) -> tuple[float, float, float]:
    """Write ``image`` into ``out`` (192, 192, 3) keeping its aspect ratio, centred on a black border (MediaPipe's
    BORDER_ZERO), RGB scaled to [-1, 1].

    Returns (scale, pad_x, pad_y): tensor pixel = image pixel * scale + pad.
    """
    h, w = image.shape[:2]
    scale = INPUT_SIZE / max(h, w)
    nw, nh = max(round(w * scale), 1), max(round(h * scale), 1)
    pad_x, pad_y = (INPUT_SIZE - nw) // 2, (INPUT_SIZE - nh) // 2
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out[...] = -1.0
    out[pad_y : pad_y + nh, pad_x : pad_x + nw] = resized.astype(np.float32) * np.float32(2.0 / 255.0) - 1.0
    return scale, float(pad_x), float(pad_y)


def tiles(width: int, height: int, grid: int, overlap: float = 0.25) -> list[tuple[int, int, int, int]]:
    """``grid`` x ``grid`` overlapping tiles (x1, y1, x2, y2) covering a frame; each side is 1/grid of the frame
    plus ``overlap`` of that on each inner edge."""
    if grid <= 1:
        return [(0, 0, width, height)]
    out: list[tuple[int, int, int, int]] = []
    tw, th = width / grid, height / grid
    for r in range(grid):
        for c in range(grid):
            x1 = max(0, round((c - overlap) * tw))
            y1 = max(0, round((r - overlap) * th))
            x2 = min(width, round((c + 1 + overlap) * tw))
            y2 = min(height, round((r + 1 + overlap) * th))
            out.append((x1, y1, x2, y2))
    return out


def _check_frame(frame: Frame) -> None:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")


class FaceDetector:
    """BlazeFace full range on LiteRT. ``tile_grid`` 2 also runs 2x2 overlapping tiles (small faces) and merges
    them with the full frame. ``detect`` keeps no reference to the frame."""

    def __init__(
        self,
        model_path: Path,
        num_threads: int = 2,
        min_score: float = 0.5,
        iou: float = 0.3,
        tile_grid: int = 1,
    ) -> None:
        self.min_score = min_score
        self.iou = iou
        self.tile_grid = tile_grid
        self._interp, self._input_index = load_interpreter(model_path, num_threads, INPUT_SIZE, "BlazeFace full range")
        outputs = outputs_by_shape(self._interp)
        try:
            self._raw_index: int = outputs[(1, NUM_ANCHORS, NUM_COORDS)][0]
            self._score_index: int = outputs[(1, NUM_ANCHORS, 1)][0]
        except KeyError:
            raise ModelLoadError(f"{model_path} is not BlazeFace full range (outputs {list(outputs)})") from None
        self._tensor = np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.float32)

    def _run(self, image: Frame, ox: float, oy: float) -> list[tuple[npt.NDArray[np.float32], float]]:
        """Faces of one image (a frame or a tile at offset ox, oy) as rows x1 y1 x2 y2 kx ky ... in frame pixels."""
        scale, px, py = letterbox(image, self._tensor[0])
        self._interp.set_tensor(self._input_index, self._tensor)
        self._interp.invoke()
        raw = self._interp.get_tensor(self._raw_index)[0]
        logits = self._interp.get_tensor(self._score_index)[0]
        found: list[tuple[npt.NDArray[np.float32], float]] = []
        for box, score, kp in decode(raw, logits, self.min_score, self.iou):
            pts = np.concatenate([box.reshape(2, 2), kp]) * INPUT_SIZE  # tensor pixels, (8, 2)
            pts = (pts - np.array([px, py], dtype=np.float32)) / scale + np.array([ox, oy], dtype=np.float32)
            found.append((pts.reshape(-1).astype(np.float32), score))
        return found

    def detect(self, frame: Frame) -> list[DetectedFace]:
        """Faces in an RGB uint8 (H, W, 3) frame, in that frame's pixel coordinates, best first."""
        _check_frame(frame)
        h, w = frame.shape[:2]
        rows = self._run(frame, 0.0, 0.0)
        if self.tile_grid > 1:
            for x1, y1, x2, y2 in tiles(w, h, self.tile_grid):
                rows.extend(self._run(np.ascontiguousarray(frame[y1:y2, x1:x2]), float(x1), float(y1)))
        if not rows:
            return []
        data = np.stack([r[0] for r in rows])
        scores = np.array([r[1] for r in rows], dtype=np.float32)
        merged = (
            weighted_nms(data[:, :4], scores, data[:, 4:].reshape(-1, NUM_KEYPOINTS, 2), self.iou)
            if len(rows) > 1
            else [(data[0, :4], float(scores[0]), data[0, 4:].reshape(NUM_KEYPOINTS, 2))]
        )
        faces: list[DetectedFace] = []
        for box, score, kp in merged:
            bx1, by1, bx2, by2 = (float(v) for v in np.clip(box, 0, [w, h, w, h]))
            if bx2 - bx1 < 1 or by2 - by1 < 1:
                continue
            faces.append(
                DetectedFace(
                    box=(bx1, by1, bx2, by2), score=score, keypoints=tuple((float(x), float(y)) for x, y in kp)
                )
            )
        return faces


class TwoStageMaskDetector:
    """Faces from BlazeFace (full frame and tiles) and AIZOO (whole frame), merged; then AIZOO on each face crop.

    ``detect`` returns only faces with a call (the :class:`~accelerators.facemask.Face` type: "mask" or
    "no_mask"); ``detect_all`` also returns the faces AIZOO could not classify, labelled "unknown".
    """

    def __init__(
        self,
        face_model_path: Path,
        mask_model_path: Path,
        num_threads: int = 2,
        *,
        face_min_score: float = 0.6,
        tile_grid: int = 2,
        aizoo_proposals: bool = True,
        proposal_min_score: float = 0.5,
        crop_margin: float = 1.6,
        mask_min_score: float = 0.7,
        merge_iou: float = 0.4,
        box_source: Literal["crop", "proposal"] = "crop",
        classifier: MaskClassifier | None = None,
    ) -> None:
        self.faces = FaceDetector(face_model_path, num_threads, min_score=face_min_score, tile_grid=tile_grid)
        self.mask = CpuFaceMaskDetector(mask_model_path, num_threads, min_score=min(mask_min_score, 0.5))
        self.aizoo_proposals = aizoo_proposals
        self.proposal_min_score = proposal_min_score
        self.crop_margin = crop_margin
        self.mask_min_score = mask_min_score
        self.merge_iou = merge_iou
        self.box_source = box_source
        self.classifier = classifier

    def proposals(self, frame: Frame) -> list[tuple[Box, float]]:
        """Stage 1: face boxes and scores from both detectors, overlaps (IoU > ``merge_iou``) merged, best first."""
        boxes: list[tuple[Box, float]] = [(f.box, f.score) for f in self.faces.detect(frame)]
        if self.aizoo_proposals:
            boxes += [(f.box, f.score) for f in self.mask.detect(frame) if f.score >= self.proposal_min_score]
        boxes.sort(key=lambda bs: -bs[1])
        kept: list[tuple[Box, float]] = []
        for box, score in boxes:
            if all(box_iou(box, k) <= self.merge_iou for k, _ in kept):
                kept.append((box, score))
        return kept

    def classify(self, frame: Frame, box: Box) -> tuple[MaskLabel, float, Box]:
        """Stage 2: AIZOO on a square crop around ``box``; the call, its score and AIZOO's box (frame pixels)."""
        h, w = frame.shape[:2]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = max(box[2] - box[0], box[3] - box[1]) * self.crop_margin
        x1, y1 = round(cx - side / 2), round(cy - side / 2)
        x2, y2 = round(cx + side / 2), round(cy + side / 2)
        if x2 - x1 < 2 or y2 - y1 < 2:
            return "unknown", 0.0, box
        # Pad with black outside the frame so the crop stays square and the face stays centred.
        crop = np.zeros((y2 - y1, x2 - x1, 3), dtype=np.uint8)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if sx2 <= sx1 or sy2 <= sy1:
            return "unknown", 0.0, box
        crop[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = frame[sy1:sy2, sx1:sx2]
        best: Face | None = None
        ccx, ccy = cx - x1, cy - y1
        for f in self.mask.detect(crop):
            inside = f.box[0] <= ccx <= f.box[2] and f.box[1] <= ccy <= f.box[3]
            if inside and f.score >= self.mask_min_score and (best is None or f.score > best.score):
                best = f
        if best is None:
            return "unknown", 0.0, box
        bx = (best.box[0] + x1, best.box[1] + y1, best.box[2] + x1, best.box[3] + y1)
        return best.label, best.score, bx

    def detect_all(self, frame: Frame) -> list[MaskedFace]:
        """Every proposed face with its call ("mask", "no_mask" or "unknown"), in frame pixels, best first."""
        _check_frame(frame)
        out: list[MaskedFace] = []
        for box, score in self.proposals(frame):
            label, mask_score, crop_box = self.classify(frame, box)
            final = crop_box if self.box_source == "crop" and label != "unknown" else box
            if self.classifier is not None:  # the head's call, AIZOO's "mask" where the head is unsure
                label, mask_score = combine(self.classifier.classify_box(frame, box), (label, mask_score))
            out.append(MaskedFace(box=final, label=label, face_score=score, mask_score=mask_score))
        return out

    def detect(self, frame: Frame) -> list[Face]:
        """Faces with a mask call only (``unknown`` left out), as the AIZOO detector's :class:`Face`."""
        return [
            Face(box=f.box, label=f.label, score=f.mask_score)
            for f in self.detect_all(frame)
            if f.label == "mask" or f.label == "no_mask"
        ]
