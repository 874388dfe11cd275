"""The AIZOO face-mask detector: anchor geometry from the published spec, the decoder, real photos, the store."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from accelerators import facemask
from accelerators.cpu import ModelLoadError
from accelerators.facemask import FACEMASK_AIZOO, CpuFaceMaskDetector, Face
from tests.conftest import SHARED as _SHARED
from tests.device.helpers import assert_refuses_bad_frames, read_rgb, truncated_model
from wardsight.errors import FetchError
from wardsight.fetch import ArtifactStore

SHARED = _SHARED
MIRROR = SHARED / "models"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """The model obtained as a user's machine with a mirror directory would: verified, then renamed into place."""
    store = ArtifactStore(tmp_path_factory.mktemp("models"), mirrors=(MIRROR,))
    return store.ensure(FACEMASK_AIZOO.artifact)


@pytest.fixture(scope="module")
def detector(model_path) -> CpuFaceMaskDetector:
    return CpuFaceMaskDetector(model_path, num_threads=2)


def test_manifest_names_the_publisher_and_the_pinned_file():
    art = FACEMASK_AIZOO.artifact
    assert (FACEMASK_AIZOO.name, FACEMASK_AIZOO.task, FACEMASK_AIZOO.runtime) == (
        "face-mask-aizoo",
        "face_mask",
        "litert",
    )
    assert art.size == 4_060_180
    assert art.sha256 == "d2347acf155858681619bc009368f730288aa0447d2c97209be4a26d9be4e928"
    assert [s.describe() for s in art.sources] == [
        "https://raw.githubusercontent.com/AIZOOTech/FaceMaskDetection/master/models/face_mask_detection.tflite"
    ]


def test_store_fetches_from_the_mirror_and_verifies(model_path, tmp_path):
    assert model_path.name == "aizoo_face_mask_detection.tflite"
    assert model_path.stat().st_size == 4_060_180
    assert ArtifactStore(model_path.parent.parent).is_present(FACEMASK_AIZOO.artifact)
    # A mirror holding other bytes under that name is refused and leaves nothing behind; the publisher's URL
    # is then tried (unreachable here, or reachable: either way the store must not accept the bad copy).
    bad = tmp_path / "mirror"
    bad.mkdir()
    (bad / FACEMASK_AIZOO.artifact.filename).write_bytes(b"x" * 1000)
    store = ArtifactStore(tmp_path / "store", mirrors=(bad,))
    try:
        path = store.ensure(FACEMASK_AIZOO.artifact)
    except FetchError as exc:
        assert "got 1000 bytes" in str(exc)
        assert not list((tmp_path / "store").rglob("*.tflite*"))
    else:
        assert store.is_present(FACEMASK_AIZOO.artifact) and path.stat().st_size == 4_060_180


def test_anchor_count_and_geometry_from_the_spec():
    a = facemask.anchors()
    # 4 anchors per cell on maps 33, 17, 9, 5, 3: 4 * (1089 + 289 + 81 + 25 + 9).
    assert a.shape == (5972, 4)
    # First anchor: cell (0, 0) of the 33 map, centre 0.5/33 = 0.0151515, size 0.04 at ratio 1.
    c = 0.5 / 33
    assert a[0] == pytest.approx((c - 0.02, c - 0.02, c + 0.02, c + 0.02), abs=1e-6)
    # Second anchor of the same cell: the second size, 0.056, at ratio 1.
    assert a[1] == pytest.approx((c - 0.028, c - 0.028, c + 0.028, c + 0.028), abs=1e-6)
    # Third: the first size at ratio 0.62: w = 0.04 * sqrt(0.62) = 0.0314960, h = 0.04 / sqrt(0.62) = 0.0508001.
    assert a[2] == pytest.approx((c - 0.0157480, c - 0.0254000, c + 0.0157480, c + 0.0254000), abs=1e-6)
    # Next cell along x (x changes fastest, then y): centre x 1.5/33 = 0.0454545.
    assert a[4] == pytest.approx((0.0454545 - 0.02, c - 0.02, 0.0454545 + 0.02, c + 0.02), abs=1e-6)
    # First anchor of the 17 map starts after 33*33*4 = 4356 rows: centre 0.5/17 = 0.0294118, size 0.08.
    assert a[4356] == pytest.approx((0.0294118 - 0.04, 0.0294118 - 0.04, 0.0294118 + 0.04, 0.0294118 + 0.04), abs=1e-6)
    # Last anchor: cell (2, 2) of the 3 map, centre 2.5/3 = 0.8333333, size 0.64 at ratio 0.42:
    # w = 0.64 * sqrt(0.42) = 0.4147674, h = 0.64 / sqrt(0.42) = 0.9875415.
    assert a[-1] == pytest.approx(
        (0.8333333 - 0.2073837, 0.8333333 - 0.4937708, 0.8333333 + 0.2073837, 0.8333333 + 0.4937708), abs=1e-6
    )


def test_decode_an_anchor_with_zero_offsets_is_that_anchor_in_frame_pixels():
    index = 4356 + (8 * 17 + 5) * 4  # 17 map, row 8, column 5, first anchor (size 0.08, ratio 1)
    cx, cy = 5.5 / 17, 8.5 / 17
    loc = np.zeros((1, 5972, 4), np.float32)
    cls = np.zeros((1, 5972, 2), np.float32)
    cls[0, index] = (0.05, 0.93)
    faces = facemask.decode(loc, cls, frame_w=640, frame_h=480, min_score=0.5, iou=0.4)
    assert len(faces) == 1
    face = faces[0]
    assert face.label == "no_mask"
    assert face.score == pytest.approx(0.93)
    expected = ((cx - 0.04) * 640, (cy - 0.04) * 480, (cx + 0.04) * 640, (cy + 0.04) * 480)
    assert face.box == pytest.approx(expected, abs=1e-3)


def test_decode_offsets_variances_and_nms():
    index = 4356 + (8 * 17 + 5) * 4
    cx, cy = 5.5 / 17, 8.5 / 17
    loc = np.zeros((5972, 4), np.float32)
    cls = np.zeros((5972, 2), np.float32)
    # Shift the centre by 1 anchor width (offset 10 * variance 0.1) and double its size (offset 5 * 0.2 = ln e).
    loc[index] = (10.0, 0.0, 5.0 * math.log(2.0), 0.0)
    cls[index] = (0.9, 0.1)
    # A neighbouring anchor (the second size of the same cell) with a lower score overlaps it: suppressed.
    loc[index + 1] = (10.0, 0.0, 5.0 * math.log(2.0) * 0.9, 0.0)
    cls[index + 1] = (0.2, 0.7)
    faces = facemask.decode(loc, cls, 1000, 1000, min_score=0.5, iou=0.4)
    assert len(faces) == 1
    assert faces[0].label == "mask"
    ncx = cx + 0.08
    assert faces[0].box == pytest.approx(
        ((ncx - 0.08) * 1000, (cy - 0.04) * 1000, (ncx + 0.08) * 1000, (cy + 0.04) * 1000)
    )
    assert facemask.decode(loc, cls, 1000, 1000, min_score=0.95, iou=0.4) == []
    with pytest.raises(ValueError):
        facemask.decode(np.zeros((100, 4), np.float32), cls, 1000, 1000)


def test_masked_face_in_real_photo(detector):
    faces = detector.detect(read_rgb(SHARED / "media" / "aizoo_demo2_mask.jpg"))
    assert any(f.label == "mask" for f in faces)
    assert all(isinstance(f, Face) for f in faces)


def test_unmasked_astronaut_face_is_found_on_the_face(detector):
    # Eileen Collins' face occupies roughly x 160-280, y 40-200 in this 512x512 photo.
    faces = detector.detect(read_rgb(SHARED / "media" / "astronaut.png"))
    no_mask = [f for f in faces if f.label == "no_mask"]
    assert len(no_mask) >= 1
    x1, y1, x2, y2 = no_mask[0].box
    assert 150 <= x1 < x2 <= 290 and 30 <= y1 < y2 <= 210
    assert (x2 - x1) > 50 and (y2 - y1) > 60


def test_boxes_map_back_for_any_aspect_ratio(detector):
    # The whole frame is stretched to 260x260, so a wide canvas squeezes the face; its box must still land on it.
    photo = read_rgb(SHARED / "media" / "astronaut.png")
    canvas = np.zeros((512, 1024, 3), np.uint8)
    canvas[:, 512:] = photo
    faces = [f for f in detector.detect(canvas) if f.label == "no_mask"]
    assert faces
    x1, y1, x2, y2 = faces[0].box
    assert 512 + 150 <= x1 < x2 <= 512 + 290 and 30 <= y1 < y2 <= 210


def test_truncated_model_file_is_a_clear_error(model_path, tmp_path):
    with pytest.raises(ModelLoadError, match="cannot load model"):
        CpuFaceMaskDetector(truncated_model(model_path, tmp_path))


def test_bad_frame_is_refused(detector):
    assert_refuses_bad_frames(detector)
