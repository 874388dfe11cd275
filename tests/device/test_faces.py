"""Two-stage faces: BlazeFace full-range anchors and decoder from MediaPipe's options, real photos, small faces."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from accelerators import faces
from accelerators.cpu import ModelLoadError
from accelerators.facemask import FACEMASK_AIZOO, Face
from accelerators.faces import FaceDetector, MaskedFace, TwoStageMaskDetector
from accelerators.mediapipe_models import FACE_FULL_RANGE
from tests.conftest import SHARED
from tests.device.helpers import read_rgb
from wardsight.fetch import ArtifactStore

MEDIA = SHARED / "media"
ASTRONAUT_FACE = (160.0, 40.0, 280.0, 200.0)  # x1, y1, x2, y2: the face region in astronaut.png


@pytest.fixture(scope="module")
def model_paths(request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """BlazeFace (from the mediapipe wheel on PyPI) and AIZOO (from the shared mirror), verified by sha256."""
    store = ArtifactStore(Path(request.config.cache.mkdir("wardsight-models")), mirrors=(SHARED / "models",))
    face, mask = store.ensure_all([FACE_FULL_RANGE, FACEMASK_AIZOO.artifact])
    return face, mask


@pytest.fixture(scope="module")
def two_stage(model_paths: tuple[Path, Path]) -> TwoStageMaskDetector:
    return TwoStageMaskDetector(*model_paths, num_threads=2)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_anchor_grid_from_the_graph_options():
    a = faces.anchors()
    # One layer, stride 4 on 192 px: a 48 x 48 grid, one anchor per cell (aspect 1, no interpolated scale).
    assert a.shape == (2304, 2)
    # First cell: (0 + 0.5) / 48 = 0.0104167 in x and y; the next one moves along x (columns inner).
    assert a[0] == pytest.approx((0.0104167, 0.0104167), abs=1e-6)
    assert a[1] == pytest.approx((1.5 / 48, 0.5 / 48), abs=1e-6)
    # Start of the second row: x back to 0.5 / 48, y 1.5 / 48 = 0.03125.
    assert a[48] == pytest.approx((0.0104167, 0.03125), abs=1e-6)
    # Last cell: (47 + 0.5) / 48 = 0.9895833.
    assert a[-1] == pytest.approx((0.9895833, 0.9895833), abs=1e-6)


def test_decode_a_constructed_tensor():
    raw = np.zeros((1, 2304, 16), dtype=np.float32)
    logits = np.full((1, 2304, 1), -10.0, dtype=np.float32)
    # Anchor 50 is row 1, column 2: centre (2.5 / 48, 1.5 / 48) = (0.0520833, 0.03125).
    # Offsets are in 192 px units (x before y): +9.6 px right, -4.8 px up, a 38.4 x 57.6 px box.
    raw[0, 50, :4] = (9.6, -4.8, 38.4, 57.6)
    raw[0, 50, 4:6] = (19.2, 0.0)  # first keypoint 0.1 to the right of the anchor centre
    logits[0, 50, 0] = 2.0  # sigmoid(2) = 0.8808
    out = faces.decode(raw, logits, min_score=0.5)
    assert len(out) == 1
    box, score, kp = out[0]
    cx, cy = 2.5 / 48 + 0.05, 1.5 / 48 - 0.025
    assert box == pytest.approx((cx - 0.1, cy - 0.15, cx + 0.1, cy + 0.15), abs=1e-6)
    assert score == pytest.approx(0.8807971, abs=1e-6)
    assert kp[0] == pytest.approx((2.5 / 48 + 0.1, 1.5 / 48), abs=1e-6)
    assert kp.shape == (6, 2)
    # Logits are clipped at +-100 before the sigmoid (no overflow to nan), and a low score is dropped.
    logits[0, 50, 0] = -1e6
    assert faces.decode(raw, logits, min_score=0.5) == []
    assert faces.scores_from_logits(np.full(2304, 1e6, dtype=np.float32))[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2304"):
        faces.decode_boxes(np.zeros((896, 16), dtype=np.float32))


def test_weighted_nms_merges_a_cluster_by_score():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.9, 0.3, 0.8], dtype=np.float32)
    kps = np.zeros((3, 6, 2), dtype=np.float32)
    out = faces.weighted_nms(boxes, scores, kps, 0.3)
    assert [round(s, 2) for _, s, _ in out] == [0.9, 0.8]
    assert out[0][0] == pytest.approx((0.25, 0, 10.25, 10))  # (0.9 * 0 + 0.3 * 1) / 1.2


def test_letterbox_keeps_the_aspect_ratio_and_maps_back():
    image = np.full((100, 200, 3), 255, dtype=np.uint8)
    out = np.zeros((192, 192, 3), dtype=np.float32)
    scale, px, py = faces.letterbox(image, out)
    assert (scale, px, py) == (0.96, 0.0, 48.0)
    assert out[0, 0, 0] == -1.0 and out[96, 96, 0] == pytest.approx(1.0)


def test_blazeface_finds_the_astronaut(model_paths):
    detector = FaceDetector(model_paths[0], num_threads=2)
    found = detector.detect(read_rgb(MEDIA / "astronaut.png"))
    assert len(found) == 1
    assert found[0].score > 0.8
    assert _iou(found[0].box, ASTRONAUT_FACE) > 0.4
    assert len(found[0].keypoints) == 6


def test_two_stage_labels_real_photos(two_stage):
    astronaut = two_stage.detect(read_rgb(MEDIA / "astronaut.png"))
    assert len(astronaut) == 1 and isinstance(astronaut[0], Face)
    assert astronaut[0].label == "no_mask"
    assert _iou(astronaut[0].box, ASTRONAUT_FACE) > 0.4
    masked = two_stage.detect(read_rgb(MEDIA / "aizoo_demo2_mask.jpg"))
    assert masked and {f.label for f in masked} == {"mask"}
    every = two_stage.detect_all(read_rgb(MEDIA / "astronaut.png"))
    assert all(isinstance(f, MaskedFace) and f.label in ("mask", "no_mask", "unknown") for f in every)


def test_tiles_find_a_small_face_the_full_frame_misses(model_paths):
    small = cv2.resize(read_rgb(MEDIA / "astronaut.png"), (192, 192), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((750, 1000, 3), dtype=np.uint8)
    canvas[40:232, 60:252] = small  # the face is now about 45 x 60 px in a 1000 px frame (9 px at 192)
    k = 192 / 512
    face_box = (60 + 160 * k, 40 + 40 * k, 60 + 280 * k, 40 + 200 * k)
    whole = FaceDetector(model_paths[0], tile_grid=1).detect(canvas)
    tiled = FaceDetector(model_paths[0], tile_grid=2).detect(canvas)
    assert not any(_iou(f.box, face_box) > 0.3 for f in whole)
    assert any(_iou(f.box, face_box) > 0.3 for f in tiled)
    assert faces.tiles(1000, 750, 2)[0] == (0, 0, 625, 469)


def test_nothing_on_a_blank_frame(two_stage):
    assert two_stage.detect(np.zeros((300, 400, 3), dtype=np.uint8)) == []
    with pytest.raises(ValueError, match="uint8"):
        two_stage.detect(np.zeros((300, 400, 3), dtype=np.float32))  # type: ignore[arg-type]


def test_truncated_model_is_a_load_error(model_paths, tmp_path):
    bad = tmp_path / "face.tflite"
    bad.write_bytes(model_paths[0].read_bytes()[:5000])
    with pytest.raises(ModelLoadError):
        FaceDetector(bad)
    with pytest.raises(ModelLoadError, match="not BlazeFace"):
        FaceDetector(model_paths[1])  # the AIZOO model: wrong input shape
