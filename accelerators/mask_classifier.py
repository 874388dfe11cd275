"""A mask call on a face crop: a small softmax head over MediaPipe's face landmark model (Apache-2.0) on the crop.

:class:`LandmarkFeatures` runs MediaPipe's face mesh model (``face_landmark.tflite``, 192x192 RGB in [0, 1],
468 landmarks and a face-presence logit; from the same mediapipe 0.10.14 wheel as BlazeFace) on the square
crop around a face (``CROP_MARGIN`` times its box's longer side, centred) with every tensor kept, and reads
:data:`FEATURE_DIM` numbers: the last hidden maps of the landmark and face-presence branches (3x3x32 each),
the face-presence logit, the crop-normalised positions of 26 landmarks (forehead, nose, lips, chin, cheeks,
eyes), and the colour (CIE Lab, blurred) at those landmarks relative to the forehead's, plus the forehead's own.
A mask changes the colour under the nose and lips against the forehead's skin; the networks' hidden maps
describe the lower face the mesh had to guess.

:class:`MaskClassifier` is the head (pure numpy): standardise, one linear layer, softmax over three classes,
``mask``, ``no_mask`` (worn incorrectly included) and ``not_face`` (a proposal that is no face). A call is made
only when its probability reaches its threshold; otherwise, or for ``not_face``, the call is "unknown",
which never counts as non-compliant. The head is a small ``.npz`` built by ``bench/train_mask_classifier.py``.
"""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from accelerators.base import Frame
from accelerators.litert import ModelLoadError
from accelerators.mediapipe_models import LICENCE, MEDIAPIPE_PIP_ARGS, MEDIAPIPE_REQUIREMENT
from wardsight.fetch import Artifact, MirrorSource, WheelSource

INPUT_SIZE = 192  # the face landmark model's input, pixels, square
CROP_MARGIN = 1.5  # the crop's side over the face box's longer side (MediaPipe's face mesh ROI is 1.5x)
CLASSES: tuple[str, str, str] = ("mask", "no_mask", "not_face")
FEATURE_VERSION = 1
# (tensor name, shape) of the tensors read; found by name, checked by shape.
MESH_BRANCH = ("p_re_lu_20", (1, 3, 3, 32))
FACE_BRANCH = ("p_re_lu_28", (1, 3, 3, 32))
FACE_LOGIT = ("conv2d_31", (1, 1, 1, 1))
LANDMARKS = ("conv2d_21", (1, 1, 1, 1404))
TENSORS = (MESH_BRANCH, FACE_BRANCH, FACE_LOGIT, LANDMARKS)
# Face mesh indices: forehead (2), nose bridge and tip, lips, chin, cheeks, face sides, eyes, nostrils.
POINTS: tuple[int, ...] = (10, 151, 9, 1, 4, 5, 195, 13, 14, 0, 17, 61, 291, 152, 50, 280, 234, 454, 33, 263, 168, 2,
                           98, 327, 200, 18)  # fmt: skip
REFERENCE = 2  # the first POINTS are the forehead: the colour reference
FEATURE_DIM = 288 + 288 + 1 + 2 * len(POINTS) + 3 * len(POINTS) + 3  # 710

FACE_LANDMARK = Artifact(
    name="face-landmark",
    filename="face_landmark.tflite",
    sha256="1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
    size=1_242_398,
    licence=LICENCE,
    description="Face mesh: 192x192 input in [0, 1]; 468 x 3 landmarks and a face-presence logit",
    sources=(
        WheelSource(
            MEDIAPIPE_REQUIREMENT,
            ("mediapipe/modules/face_landmark/face_landmark.tflite",),
            pip_args=MEDIAPIPE_PIP_ARGS,
        ),
    ),
)

# The head trained on mask-dev (every image) by ``bench/train_mask_classifier.py --write heads/mask_head.npz``, kept
# beside this module (15.6 KB: the head only; the landmark model comes from the mediapipe wheel). The script builds
# the same bytes on every run on this machine (the training settles); elsewhere the last bits of the features may
# differ, so a test rebuilds it and compares the weights, not the bytes. A new head is new code with a new pin.
HEADS = Path(__file__).resolve().parent / "heads"
MASK_HEAD = Artifact(
    name="face-mask-head",
    filename="mask_head.npz",
    sha256="a522cf36cf25b6df34b2fff410b627603ffeb232a2d8bc9f23dc15cd7f44eabf",
    size=15_596,
    licence="Apache-2.0 (WardSight; trained on mask-dev)",
    description="Mask head: (mask, no mask, not a face) from face-landmark features; thresholds 0.5 and 0.8",
    sources=(MirrorSource(HEADS),),
)

Call = Literal["mask", "no_mask", "unknown"]
Box = tuple[float, float, float, float]
FloatArray = npt.NDArray[np.float32]


def square_crop(frame: Frame, box: Box, margin: float = CROP_MARGIN) -> Frame | None:
    """The square crop ``margin`` times the box's longer side around its centre, black outside the frame (the
    face stays centred), as the two-stage pipeline crops; None when the crop is degenerate or off the frame."""
    h, w = frame.shape[:2]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1]) * margin
    x1, y1 = round(cx - side / 2), round(cy - side / 2)
    x2, y2 = round(cx + side / 2), round(cy + side / 2)
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 - x1 < 2 or y2 - y1 < 2 or sx2 <= sx1 or sy2 <= sy1:
        return None
    crop = np.zeros((y2 - y1, x2 - x1, 3), dtype=np.uint8)
    crop[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = frame[sy1:sy2, sx1:sx2]
    return crop


def point_features(image: npt.NDArray[np.uint8], landmarks: npt.ArrayLike) -> FloatArray:
    """Positions (normalised to the input) and Lab colours (relative to the forehead's) at :data:`POINTS`.

    ``image`` is the model's (192, 192, 3) RGB uint8 input, ``landmarks`` its 1404 (or 468 x 3) outputs."""
    pts = np.asarray(landmarks, dtype=np.float32).reshape(468, 3)[list(POINTS), :2]
    lab = cv2.cvtColor(cv2.GaussianBlur(image, (5, 5), 0), cv2.COLOR_RGB2LAB).astype(np.float32)
    idx = np.clip(np.round(pts).astype(np.int64), 0, INPUT_SIZE - 1)
    colours = lab[idx[:, 1], idx[:, 0]]
    ref = colours[:REFERENCE].mean(axis=0)
    parts = [(pts / INPUT_SIZE).ravel(), ((colours - ref) / 20.0).ravel(), ref / 100.0]
    return np.concatenate(parts).astype(np.float32)


class LandmarkFeatures:
    """MediaPipe's face landmark model on LiteRT with every tensor kept, read as :data:`FEATURE_DIM` features."""

    def __init__(self, model_path: Path, num_threads: int = 2) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            with warnings.catch_warnings():  # the hidden maps read are only kept with every tensor kept (~2 MB)
                warnings.filterwarnings("ignore", "Warning: Enabling `experimental_preserve_all_tensors`")
                self._interp: Any = Interpreter(
                    model_path=str(model_path), num_threads=num_threads, experimental_preserve_all_tensors=True
                )
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot load model {model_path}: {exc}") from None
        inp = self._interp.get_input_details()[0]
        if tuple(inp["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 3) or inp["dtype"] != np.float32:
            raise ModelLoadError(f"{model_path} is not the face landmark model (input {list(inp['shape'])})")
        self._input_index = int(inp["index"])
        by_name = {d["name"]: d for d in self._interp.get_tensor_details()}
        self._indices = [self._index(by_name, n, s, model_path) for n, s in TENSORS]
        self._tensor = np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.float32)

    @staticmethod
    def _index(by_name: dict[str, Any], name: str, shape: tuple[int, ...], path: Path) -> int:
        d = by_name.get(name)
        if d is None or tuple(int(v) for v in d["shape"]) != shape:
            raise ModelLoadError(f"{path} is not the face landmark model (no tensor {name} {list(shape)})")
        return int(d["index"])

    def features(self, crop: Frame) -> FloatArray:
        """The features of an RGB uint8 square face crop (any size; it is resized to 192x192)."""
        if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 crop, got {crop.shape} {crop.dtype}")
        image = np.asarray(cv2.resize(crop, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR), np.uint8)
        np.multiply(image, np.float32(1.0 / 255.0), out=self._tensor[0], casting="unsafe")
        self._interp.set_tensor(self._input_index, self._tensor)
        self._interp.invoke()
        mesh, face, logit, landmarks = (self._interp.get_tensor(i) for i in self._indices)
        parts = [mesh.ravel(), face.ravel(), logit.ravel(), point_features(image, landmarks)]
        out = np.concatenate(parts).astype(np.float32)
        if out.shape != (FEATURE_DIM,):
            raise ValueError(f"features must be ({FEATURE_DIM},), got {out.shape}")
        return out


@dataclass(frozen=True)
class HeadWeights:
    """The head: feature mean and scale, a (FEATURE_DIM, 3) weight matrix, a (3,) bias, per-call thresholds."""

    mean: FloatArray
    scale: FloatArray
    weights: FloatArray
    bias: FloatArray
    mask_threshold: float = 0.6
    no_mask_threshold: float = 0.6

    def __post_init__(self) -> None:
        d, k = FEATURE_DIM, len(CLASSES)
        shapes = {"mean": (d,), "scale": (d,), "weights": (d, k), "bias": (k,)}
        for name, shape in shapes.items():
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(f"head {name} must be {shape}, got {np.shape(getattr(self, name))}")
        if not np.all(np.asarray(self.scale) > 0):
            raise ValueError("head scale must be positive")

    def save(self, path: Path) -> None:
        """An ``.npz`` byte-for-byte the same for the same weights (fixed member dates): its sha256 pins it."""
        arrays = {
            "version": np.int64(FEATURE_VERSION),
            "mean": self.mean,
            "scale": self.scale,
            "weights": self.weights,
            "bias": self.bias,
            "thresholds": np.array([self.mask_threshold, self.no_mask_threshold], dtype=np.float32),
        }
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, value in arrays.items():
                with zf.open(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), "w") as fh:
                    np.lib.format.write_array(fh, np.asarray(value), allow_pickle=False)

    @classmethod
    def load(cls, path: Path) -> HeadWeights:
        with np.load(path, allow_pickle=False) as data:
            if int(data["version"]) != FEATURE_VERSION:
                raise ValueError(f"{path}: feature version {int(data['version'])}, this code reads {FEATURE_VERSION}")
            t = data["thresholds"]
            return cls(
                mean=data["mean"].astype(np.float32),
                scale=data["scale"].astype(np.float32),
                weights=data["weights"].astype(np.float32),
                bias=data["bias"].astype(np.float32),
                mask_threshold=float(t[0]),
                no_mask_threshold=float(t[1]),
            )


def probabilities(head: HeadWeights, features: npt.ArrayLike) -> FloatArray:
    """Softmax over (mask, no_mask, not_face) for one feature vector (D,) or a batch (N, D)."""
    x = (np.asarray(features, dtype=np.float32) - head.mean) / head.scale
    z = x @ head.weights + head.bias
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def decide(head: HeadWeights, probs: npt.ArrayLike) -> tuple[Call, float]:
    """The call for one probability vector and its probability: "unknown" below the thresholds or for not_face."""
    p = np.asarray(probs, dtype=np.float32)
    best = int(np.argmax(p))
    if best == 0 and p[0] >= head.mask_threshold:
        return "mask", float(p[0])
    if best == 1 and p[1] >= head.no_mask_threshold:
        return "no_mask", float(p[1])
    return "unknown", float(p[best])


def combine(head: tuple[Call, float], aizoo: tuple[str, float]) -> tuple[Call, float]:
    """The product's call on a face from the head's call and AIZOO's call on the same crop: every "no_mask" is the
    head's (it is the more precise: a warning a nurse acts on), a "mask" is the head's or, where the head is
    unsure, AIZOO's (a mask call can never raise a false warning; it only leaves a face the head could not judge
    less often "unknown"); anything else is "unknown". Both are (call, probability or score)."""
    if head[0] == "mask" and aizoo[0] == "mask":
        return "mask", max(head[1], aizoo[1])  # (the surer of two agreeing calls: the app counts calls above a cut)
    if head[0] != "unknown":
        return head
    if aizoo[0] == "mask":
        return "mask", aizoo[1]
    return "unknown", head[1]


class MaskClassifier:
    """A face crop to a mask call: the landmark model's features, then the head. Keeps no reference to the crop."""

    def __init__(self, head: HeadWeights, landmark_model_path: Path, num_threads: int = 2) -> None:
        self.head = head
        self.features = LandmarkFeatures(landmark_model_path, num_threads)

    @classmethod
    def from_files(cls, weights_path: Path, landmark_model_path: Path, num_threads: int = 2) -> MaskClassifier:
        return cls(HeadWeights.load(weights_path), landmark_model_path, num_threads)

    def classify(self, crop: Frame) -> tuple[Call, float]:
        """The call on a square face crop (the face centred, :data:`CROP_MARGIN` times its box) and its probability."""
        return decide(self.head, probabilities(self.head, self.features.features(crop)))

    def classify_box(self, frame: Frame, box: Box) -> tuple[Call, float]:
        """The call on the face at ``box`` (frame pixels): crops as :func:`square_crop`, "unknown" off the frame."""
        crop = square_crop(frame, box)
        return ("unknown", 0.0) if crop is None else self.classify(crop)
