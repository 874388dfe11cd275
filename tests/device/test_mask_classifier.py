"""The mask head on face crops: crops, features' shape, the head's maths and decisions, its file, a tiny training."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from accelerators.facemask import FACEMASK_AIZOO
from accelerators.faces import TwoStageMaskDetector
from accelerators.litert import ModelLoadError
from accelerators.mask_classifier import (
    CLASSES,
    FACE_LANDMARK,
    FEATURE_DIM,
    HEADS,
    MASK_HEAD,
    POINTS,
    HeadWeights,
    LandmarkFeatures,
    MaskClassifier,
    combine,
    decide,
    point_features,
    probabilities,
    square_crop,
)
from accelerators.mediapipe_models import FACE_FULL_RANGE
from bench.train_mask_classifier import TARGET, train
from bench.train_mask_classifier import main as train_main
from firmware.apps.mask import MaskApp, MaskConfig
from firmware.assembly import build_analyzers
from firmware.perception import FaceAnalyzer
from tests.conftest import SHARED
from tests.device.helpers import read_rgb
from wardsight.fetch import ArtifactStore

MASK_DEV = SHARED / "data" / "mask-dev"


@pytest.fixture(scope="module")
def landmark_path(request: pytest.FixtureRequest) -> Path:
    """MediaPipe's face landmark model from the mediapipe wheel on PyPI, verified by sha256."""
    store = ArtifactStore(Path(request.config.cache.mkdir("wardsight-models")))
    return store.ensure(FACE_LANDMARK)


@pytest.fixture(scope="module")
def extractor(landmark_path: Path) -> LandmarkFeatures:
    return LandmarkFeatures(landmark_path, num_threads=2)


def _head(weights: np.ndarray | None = None, bias: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> HeadWeights:
    w = np.zeros((FEATURE_DIM, 3), np.float32) if weights is None else weights
    return HeadWeights(
        np.zeros(FEATURE_DIM, np.float32), np.ones(FEATURE_DIM, np.float32), w, np.array(bias, np.float32)
    )


def test_square_crop_keeps_the_face_centred_and_pads_black():
    frame = np.full((100, 200, 3), 200, np.uint8)
    crop = square_crop(frame, (0.0, 0.0, 20.0, 40.0), margin=1.5)  # centre (10, 20), side 60
    assert crop is not None and crop.shape == (60, 60, 3)
    assert (crop[:, :20] == 0).all() and (crop[:10] == 0).all()  # from (-20, -10): off the frame is black
    assert (crop[10:, 20:] == 200).all()
    assert square_crop(frame, (50.0, 50.0, 50.5, 50.5)) is None  # degenerate
    assert square_crop(frame, (300.0, 300.0, 340.0, 340.0)) is None  # off the frame


def test_point_features_are_relative_to_the_forehead():
    image = np.zeros((192, 192, 3), np.uint8)
    image[:96] = (200, 160, 140)  # skin above, a blue mask below
    image[96:] = (60, 90, 200)
    landmarks = np.zeros((468, 3), np.float32)
    landmarks[:, :2] = (96.0, 150.0)
    landmarks[[10, 151], :2] = (96.0, 30.0)  # the forehead points
    out = point_features(image, landmarks.ravel())
    n = len(POINTS)
    assert out.shape == (5 * n + 3,) and out.dtype == np.float32
    colours = out[2 * n : 5 * n].reshape(n, 3)
    assert np.allclose(colours[:2], 0.0)  # the forehead against itself
    assert np.abs(colours[2:]).max() > 1.0  # the mask is far from the skin
    assert np.allclose(out[:2], (0.5, 30 / 192))


def test_probabilities_sum_to_one_for_one_or_many():
    rng = np.random.default_rng(0)
    head = _head(rng.normal(0, 0.1, (FEATURE_DIM, 3)).astype(np.float32))
    x = rng.normal(0, 1, (5, FEATURE_DIM))
    p = probabilities(head, x)
    assert p.shape == (5, 3) and np.allclose(p.sum(axis=1), 1.0)
    assert np.allclose(probabilities(head, x[0]), p[0], atol=1e-6)


def test_decide_is_unknown_below_the_thresholds_and_for_not_a_face():
    head = replace(_head(), mask_threshold=0.5, no_mask_threshold=0.8)
    assert decide(head, [0.7, 0.2, 0.1]) == ("mask", pytest.approx(0.7))
    assert decide(head, [0.1, 0.85, 0.05]) == ("no_mask", pytest.approx(0.85))
    assert decide(head, [0.25, 0.7, 0.05])[0] == "unknown"  # no mask, but not sure enough
    assert decide(head, [0.3, 0.3, 0.4])[0] == "unknown"  # most likely no face at all
    assert decide(head, [0.45, 0.1, 0.45])[0] == "unknown"


def test_head_file_round_trips_and_refuses_bad_shapes(tmp_path: Path):
    rng = np.random.default_rng(1)
    head = HeadWeights(
        rng.normal(size=FEATURE_DIM).astype(np.float32),
        rng.uniform(0.5, 2, FEATURE_DIM).astype(np.float32),
        rng.normal(size=(FEATURE_DIM, 3)).astype(np.float32),
        rng.normal(size=3).astype(np.float32),
        0.55,
        0.75,
    )
    head.save(tmp_path / "head.npz")
    back = HeadWeights.load(tmp_path / "head.npz")
    assert (back.mask_threshold, back.no_mask_threshold) == pytest.approx((0.55, 0.75))
    assert np.array_equal(back.weights, head.weights) and np.array_equal(back.scale, head.scale)
    with pytest.raises(ValueError, match="weights"):
        HeadWeights(head.mean, head.scale, head.weights[:, :2], head.bias)
    with pytest.raises(ValueError, match="scale"):
        HeadWeights(head.mean, np.zeros(FEATURE_DIM, np.float32), head.weights, head.bias)


def test_features_of_any_crop_have_the_documented_shape(extractor: LandmarkFeatures):
    for side in (24, 64, 300):
        crop = np.random.default_rng(side).integers(0, 255, (side, side, 3), dtype=np.uint8)
        x = extractor.features(crop)
        assert x.shape == (FEATURE_DIM,) and np.isfinite(x).all()
    with pytest.raises(ValueError):
        extractor.features(np.zeros((10, 10), np.uint8))


def test_classifier_calls_through_its_head(landmark_path: Path, tmp_path: Path):
    _head(bias=(0.0, 5.0, 0.0)).save(tmp_path / "head.npz")  # always "no mask", p ~ 0.99
    clf = MaskClassifier.from_files(tmp_path / "head.npz", landmark_path)
    frame = np.full((120, 160, 3), 128, np.uint8)
    call, p = clf.classify_box(frame, (40.0, 30.0, 80.0, 80.0))
    assert call == "no_mask" and p > 0.9
    assert clf.classify_box(frame, (500.0, 500.0, 540.0, 540.0)) == ("unknown", 0.0)


def test_a_file_that_is_not_the_landmark_model_is_a_load_error(tmp_path: Path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError):
        LandmarkFeatures(bad)


def test_a_head_trained_on_a_few_mask_dev_photos_calls_other_photos(extractor: LandmarkFeatures):
    """Trained on 30 photos' labelled faces of 24 px and up, called on 20 others: well above the majority class."""
    rows: dict[str, list[tuple[tuple[float, float, float, float], str]]] = {}
    for line in (MASK_DEV / "labels.csv").read_text().splitlines()[1:]:
        image, *coords, label = line.split(",")
        box = tuple(float(v) for v in coords)
        if min(box[2] - box[0], box[3] - box[1]) >= 24:
            rows.setdefault(image, []).append((box, label))  # type: ignore[arg-type]
    names = sorted(rows)[:50]
    data: list[tuple[int, np.ndarray, int]] = []
    for i, name in enumerate(names):
        rgb = cv2.cvtColor(cv2.imread(str(MASK_DEV / name)), cv2.COLOR_BGR2RGB)
        for box, label in rows[name]:
            crop = square_crop(rgb, box)
            if crop is not None:
                data.append((i, extractor.features(crop), TARGET[label]))
    test = np.array([i >= 30 for i, _, _ in data])
    x = np.stack([d[1] for d in data])
    y = np.array([d[2] for d in data])
    head = train(x[~test], y[~test], l2=0.1)  # (the script's default)
    pred = probabilities(head, x[test])[:, :2].argmax(axis=1)  # mask or no mask: every crop here is a face
    majority = max(np.mean(y[test] == 0), np.mean(y[test] == 1))
    accuracy = float(np.mean(pred == y[test]))
    assert len(CLASSES) == 3 and test.sum() >= 20
    assert accuracy >= max(0.75, majority + 0.05), (accuracy, majority)


def test_the_same_head_writes_the_same_bytes(tmp_path: Path):
    head = _head(bias=(1.0, 2.0, 3.0))
    head.save(tmp_path / "a.npz")
    time.sleep(1.1)  # zip member dates would differ by now
    head.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_combine_takes_every_no_mask_from_the_head_and_a_mask_from_either():
    assert combine(("no_mask", 0.9), ("mask", 0.95)) == ("no_mask", 0.9)  # the head's call stands
    assert combine(("mask", 0.6), ("no_mask", 0.95)) == ("mask", 0.6)
    assert combine(("unknown", 0.4), ("mask", 0.8)) == ("mask", 0.8)  # the head unsure: AIZOO's mask
    assert combine(("unknown", 0.4), ("no_mask", 0.99)) == ("unknown", 0.4)  # never AIZOO's no-mask
    assert combine(("unknown", 0.4), ("unknown", 0.0)) == ("unknown", 0.4)
    assert combine(("mask", 0.55), ("mask", 0.9)) == ("mask", 0.9)  # agreeing: the surer (the app cuts at 0.7)


def test_the_head_beside_the_code_is_the_pinned_one(tmp_path: Path):
    assert hashlib.sha256((HEADS / MASK_HEAD.filename).read_bytes()).hexdigest() == MASK_HEAD.sha256
    store = ArtifactStore(tmp_path / "models")  # no mirror, no network: from the package
    head = HeadWeights.load(store.ensure(MASK_HEAD))
    assert (head.mask_threshold, head.no_mask_threshold) == pytest.approx((0.5, 0.8))


@pytest.fixture(scope="module")
def face_models(request: pytest.FixtureRequest) -> tuple[Path, Path]:
    store = ArtifactStore(Path(request.config.cache.mkdir("wardsight-models")), mirrors=(SHARED / "models",))
    face, mask = store.ensure_all([FACE_FULL_RANGE, FACEMASK_AIZOO.artifact])
    return face, mask


def test_two_stage_with_a_head_calls_no_mask_only_through_the_head(face_models, landmark_path: Path):
    astronaut = read_rgb(SHARED / "media" / "astronaut.png")  # no mask: AIZOO says so
    masked = read_rgb(SHARED / "media" / "aizoo_demo2_mask.jpg")
    plain = TwoStageMaskDetector(*face_models, num_threads=2)
    unsure = TwoStageMaskDetector(*face_models, num_threads=2, classifier=MaskClassifier(_head(), landmark_path))
    sure = MaskClassifier(_head(bias=(0.0, 10.0, 0.0)), landmark_path)  # says "no mask" on anything
    always = TwoStageMaskDetector(*face_models, num_threads=2, classifier=sure)
    assert [f.label for f in plain.detect_all(astronaut)] == ["no_mask"]
    assert [f.label for f in unsure.detect_all(astronaut)] == ["unknown"]  # AIZOO's no-mask alone is not enough
    assert [f.box for f in unsure.detect_all(astronaut)] == [f.box for f in plain.detect_all(astronaut)]
    assert {f.label for f in unsure.detect_all(masked)} == {"mask"}  # AIZOO's mask where the head is unsure
    assert {f.label for f in always.detect_all(masked)} == {"no_mask"}


@pytest.fixture(scope="module")
def built_head(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """The head as ``bench/train_mask_classifier.py --write`` builds it from mask-dev (models from the mirror)."""
    out = tmp_path_factory.mktemp("head") / MASK_HEAD.filename
    train_main(["--labels", str(MASK_DEV / "labels.csv"), "--folds", "0", "--write", str(out)])
    return out


def test_the_training_script_rebuilds_the_head_beside_the_code(built_head: Path):
    """The same weights (on this machine the same bytes; elsewhere the features' last bits may differ)."""
    rebuilt, shipped = HeadWeights.load(built_head), HeadWeights.load(HEADS / MASK_HEAD.filename)
    for name in ("mean", "scale", "weights", "bias"):
        np.testing.assert_allclose(getattr(rebuilt, name), getattr(shipped, name), rtol=1e-3, atol=1e-4)
    assert (rebuilt.mask_threshold, rebuilt.no_mask_threshold) == (shipped.mask_threshold, shipped.no_mask_threshold)


def _analyzer_head(store: ArtifactStore) -> MaskClassifier | None:
    (analyzer,) = build_analyzers([MaskApp(MaskConfig())], store, threads=2)
    assert isinstance(analyzer, FaceAnalyzer)
    return analyzer.detector.classifier


def test_the_agent_uses_the_head_once_the_landmark_model_is_on_the_device(
    landmark_path: Path, face_models, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    mirrors = (landmark_path.parent, face_models[0].parent, face_models[1].parent)
    store = ArtifactStore(tmp_path / "models", mirrors=mirrors)
    store.ensure_all([FACE_FULL_RANGE, FACEMASK_AIZOO.artifact])  # what the mask app needs in any case
    with caplog.at_level(logging.WARNING, logger="wardsight.device"):
        assert _analyzer_head(store) is None
    assert "AIZOO alone" in caplog.text and "face-landmark is missing or damaged" in caplog.text
    store.ensure(FACE_LANDMARK)
    head = _analyzer_head(store)  # the head itself comes from beside the code
    assert isinstance(head, MaskClassifier) and head.head.no_mask_threshold == pytest.approx(0.8)
    store.path(MASK_HEAD).write_bytes(b"PK damaged")  # a damaged head is replaced from the package
    assert isinstance(_analyzer_head(store), MaskClassifier)
    store.path(FACE_LANDMARK).write_bytes(b"truncated")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="wardsight.device"):
        assert _analyzer_head(store) is None  # the agent goes on with AIZOO's calls
    assert "face-landmark is missing or damaged" in caplog.text
    two_stage = TwoStageMaskDetector(*face_models, num_threads=2, classifier=head)  # (photos it was not trained on)
    assert [
        (f.label, f.mask_score >= 0.8) for f in two_stage.detect_all(read_rgb(SHARED / "media" / "astronaut.png"))
    ] == [("no_mask", True)]
    assert {f.label for f in two_stage.detect_all(read_rgb(SHARED / "media" / "aizoo_demo2_mask.jpg"))} == {"mask"}
