"""Hands (MediaPipe palm detection + hand landmarks): anchors, decoding and ROI geometry from MediaPipe's
graphs, then real hand-washing footage, whole frame and regions."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from accelerators import hands
from accelerators import palms as palm_ops
from accelerators.cpu import ModelLoadError
from accelerators.hands import Hand, HandDetector
from accelerators.mediapipe_models import HAND_LANDMARK, PALM_DETECTION
from accelerators.palms import HandRoi, Palm
from accelerators.types import Person
from tests.conftest import SHARED
from tests.device.helpers import assert_refuses_bad_frames, read_rgb, truncated_model
from wardsight.fetch import ArtifactStore

HANDWASH = SHARED / "data" / "handwash-dev"
FRAMES_PER_CLIP = 10
# Where the hands are in every clip (overhead camera on a sink, hands come in from the bottom edge).
HAND_AREA = (150.0, 150.0, 570.0, 480.0)
NO_HAND_AREA = (0.0, 0.0, 150.0, 150.0)  # the top-left corner: a bottle and the worktop


@pytest.fixture(scope="module")
def model_paths(request) -> tuple[Path, Path]:
    store = ArtifactStore(Path(request.config.cache.mkdir("wardsight-models")))
    palm, landmark = store.ensure_all([PALM_DETECTION, HAND_LANDMARK])
    return palm, landmark


@pytest.fixture(scope="module")
def detector(model_paths) -> HandDetector:
    return HandDetector(*model_paths, num_threads=2)


def _sample_frames(path: Path, count: int = FRAMES_PER_CLIP) -> list[np.ndarray]:
    """``count`` frames spread over the clip, RGB (decoded in order: cheaper than seeking in an mp4)."""
    cap = cv2.VideoCapture(str(path))
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        wanted = {int((k + 0.5) * total / count) for k in range(count)}
        frames = []
        for i in range(max(wanted) + 1):
            if not cap.grab():
                break
            if i in wanted:
                ok, bgr = cap.retrieve()
                assert ok, f"{path.name}: frame {i}"
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        assert len(frames) == count, f"{path.name}: {len(frames)} frames"
        return frames
    finally:
        cap.release()


@pytest.fixture(scope="module")
def clips() -> dict[str, list[np.ndarray]]:
    paths = sorted(HANDWASH.glob("*.mp4"))
    assert len(paths) == 6, f"expected the 6 handwash-dev clips in {HANDWASH}"
    return {p.stem: _sample_frames(p) for p in paths}


@pytest.fixture(scope="module")
def found(detector, clips) -> dict[str, list[list[Hand]]]:
    return {name: [detector.detect(f) for f in frames] for name, frames in clips.items()}


# --- pure functions -----------------------------------------------------------------------------------------------


def test_anchor_count_and_centres():
    a = palm_ops.anchors()
    assert a.shape == (2016, 2) == (24 * 24 * 2 + 12 * 12 * 6, 2)
    # Stride 8: a 24x24 grid, 2 anchors per cell, x fastest. Cell (0, 0) centre 0.5/24.
    assert a[0] == pytest.approx((0.5 / 24, 0.5 / 24))
    assert a[1] == pytest.approx((0.5 / 24, 0.5 / 24))
    assert a[2] == pytest.approx((1.5 / 24, 0.5 / 24))
    # Row 1, column 0 starts after one row of 24 cells x 2.
    assert a[48] == pytest.approx((0.5 / 24, 1.5 / 24))
    assert a[1151] == pytest.approx((23.5 / 24, 23.5 / 24))
    # The three stride-16 layers share a 12x12 grid with 6 anchors per cell, from index 1152.
    assert a[1152] == pytest.approx((0.5 / 12, 0.5 / 12))
    assert a[1157] == pytest.approx((0.5 / 12, 0.5 / 12))
    assert a[1158] == pytest.approx((1.5 / 12, 0.5 / 12))
    assert a[1152 + (5 * 12 + 7) * 6 + 3] == pytest.approx((7.5 / 12, 5.5 / 12))
    assert a[-1] == pytest.approx((11.5 / 12, 11.5 / 12))


def test_decode_a_constructed_palm():
    index = 1152 + (5 * 12 + 7) * 6  # 12x12 grid, row 5, column 7: anchor centre (7.5/12, 5.5/12)
    ax, ay = 7.5 / 12, 5.5 / 12
    reg = np.zeros((1, 2016, 18), np.float32)
    scores = np.full((1, 2016, 1), -10.0, np.float32)
    # Centre shifted by +19.2 px in x (0.1 of the input), box 48 x 38.4 px (0.25 x 0.2), keypoints at k px.
    reg[0, index, :4] = (19.2, -9.6, 48.0, 38.4)
    reg[0, index, 4:] = np.arange(14, dtype=np.float32) * 1.92
    scores[0, index, 0] = 2.0  # sigmoid(2) = 0.8808
    palms = palm_ops.decode_palms(reg, scores)
    assert len(palms) == 1
    p = palms[0]
    assert p.score == pytest.approx(1 / (1 + math.exp(-2.0)), abs=1e-5)
    cx, cy = ax + 0.1, ay - 0.05
    assert p.box == pytest.approx((cx - 0.125, cy - 0.1, cx + 0.125, cy + 0.1), abs=1e-5)
    expected_kp = np.arange(14).reshape(7, 2) * 0.01 + np.array([ax, ay])
    np.testing.assert_allclose(p.keypoints, expected_kp, atol=1e-5)
    # Scores are clipped to +-100 before the sigmoid (no overflow), and under min_score nothing is kept.
    scores[0, index, 0] = 1e6
    assert palm_ops.decode_palms(reg, scores)[0].score == pytest.approx(1.0)
    scores[0, index, 0] = -0.5
    assert palm_ops.decode_palms(reg, scores) == []
    with pytest.raises(ValueError):
        palm_ops.decode_palms(np.zeros((2016, 4), np.float32), scores)


def test_weighted_nms_averages_overlapping_palms():
    kp = np.zeros((7, 2), np.float32)
    a = Palm((0.0, 0.0, 1.0, 1.0), kp, 0.9)
    b = Palm((0.1, 0.0, 1.1, 1.0), kp + 1, 0.3)  # IoU 0.82 with a
    c = Palm((5.0, 5.0, 6.0, 6.0), kp, 0.6)
    kept = palm_ops.weighted_nms([b, c, a], iou=0.3)
    assert [k.score for k in kept] == pytest.approx([0.9, 0.6])
    assert kept[0].box == pytest.approx((0.025, 0.0, 1.025, 1.0))  # (0.9 * 0 + 0.3 * 0.1) / 1.2
    assert kept[0].keypoints[0] == pytest.approx((0.25, 0.25))


def test_palm_maps_from_a_crop_to_the_frame():
    p = Palm((0.25, 0.5, 0.75, 1.0), np.array([[0.5, 0.5]] * 7, np.float32), 0.8)
    q = p.to_frame(100.0, 50.0, 200.0)
    assert q.box == pytest.approx((150.0, 150.0, 250.0, 250.0))
    assert q.keypoints[0] == pytest.approx((200.0, 150.0))


def _palm(wrist, middle, box) -> Palm:
    kp = np.zeros((7, 2), np.float32)
    kp[0] = wrist
    kp[2] = middle
    return Palm(box, kp, 0.9)


def test_roi_from_an_upright_palm_shifts_towards_the_fingers_and_scales():
    # Fingers point up the image (middle MCP above the wrist): no rotation; box 100 x 80 centred (200, 300).
    roi = palm_ops.roi_from_palm(_palm((200, 340), (200, 260), (150.0, 260.0, 250.0, 340.0)))
    assert roi.rotation == pytest.approx(0.0)
    assert roi.cx == pytest.approx(200.0)
    assert roi.cy == pytest.approx(300.0 - 0.5 * 80)  # shift_y -0.5 box heights: towards the fingers
    assert roi.size == pytest.approx(100 * 2.6)  # square on the long side, then x2.6


def test_roi_from_a_palm_pointing_right_is_rotated_a_quarter_turn():
    # Fingers point right (+x): rotation 90 degrees, and the shift goes along +x.
    roi = palm_ops.roi_from_palm(_palm((160, 300), (240, 300), (150.0, 260.0, 250.0, 340.0)))
    assert roi.rotation == pytest.approx(math.pi / 2)
    assert (roi.cx, roi.cy) == pytest.approx((200.0 + 0.5 * 80, 300.0))
    # Pointing down the image: rotation 180 degrees (normalised to -pi), shift along +y.
    roi = palm_ops.roi_from_palm(_palm((200, 260), (200, 340), (150.0, 260.0, 250.0, 340.0)))
    assert abs(roi.rotation) == pytest.approx(math.pi)
    assert (roi.cx, roi.cy) == pytest.approx((200.0, 300.0 + 40.0))
    # 45 degrees up-left: wrist -> MCP = (-1, -1); rotation = 90 - 135 = -45 degrees.
    roi = palm_ops.roi_from_palm(_palm((200, 300), (150, 250), (150.0, 250.0, 250.0, 350.0)))
    assert roi.rotation == pytest.approx(-math.pi / 4)
    d = 0.5 * 100 / math.sqrt(2)
    assert (roi.cx, roi.cy) == pytest.approx((200.0 - d, 300.0 - d))


def test_landmarks_map_through_the_rotated_roi():
    lm = np.array([[112.0, 112.0, 5.0], [112.0, 0.0, 0.0], [224.0, 112.0, 0.0]], np.float32)
    # Unrotated: the crop's centre is the ROI centre, scaled by size / 224.
    out = palm_ops.landmarks_to_frame(lm, HandRoi(cx=300.0, cy=200.0, size=448.0, rotation=0.0))
    np.testing.assert_allclose(out, [[300, 200, 10], [300, -24, 0], [524, 200, 0]], atol=1e-3)
    # Rotated 90 degrees (fingers pointing right): the crop's top (fingers) is the frame's right.
    out = palm_ops.landmarks_to_frame(lm, HandRoi(cx=300.0, cy=200.0, size=224.0, rotation=math.pi / 2))
    np.testing.assert_allclose(out[:, :2], [[300, 200], [412, 200], [300, 312]], atol=1e-3)


def test_wrist_regions_from_forearms_and_from_the_box():
    kp = np.zeros((17, 3), np.float32)
    kp[7] = (100, 100, 0.9)  # left elbow
    kp[9] = (100, 160, 0.8)  # left wrist: forearm 60 px pointing down
    kp[10] = (300, 200, 0.5)  # right wrist, right elbow unseen
    kp[8] = (0, 0, 0.1)
    person = Person(box=(50.0, 0.0, 350.0, 400.0), score=0.9, keypoints=kp)
    left, right = hands.wrist_regions(person, scale=2.0)
    assert left == pytest.approx((100 - 60, 180 - 60, 100 + 60, 180 + 60))  # centred a third of a forearm on
    assert right == pytest.approx((300 - 60, 200 - 60, 300 + 60, 200 + 60))  # 2 x 0.15 x 400 around the wrist
    kp[10, 2] = 0.2  # under 0.3: no region
    assert len(hands.wrist_regions(Person(person.box, 0.9, kp))) == 1


# --- the models ---------------------------------------------------------------------------------------------------


def test_truncated_model_file_is_a_clear_error(model_paths, tmp_path):
    palm, landmark = model_paths
    with pytest.raises(ModelLoadError, match="cannot load model"):
        HandDetector(truncated_model(palm, tmp_path), landmark)
    with pytest.raises(ModelLoadError):
        HandDetector(landmark, palm)  # swapped: wrong input sizes


def test_bad_frame_is_refused(detector):
    assert_refuses_bad_frames(detector)


def test_no_hands_in_an_empty_frame_or_a_photo_without_hands(detector):
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert detector.detect(read_rgb(SHARED / "media" / "astronaut.png")) == []


def test_hands_are_found_while_washing(found):
    # Measured (whole frame, 10 frames per clip, palm score 0.5): at least one hand in 47 of 60 frames; 5 of 6
    # clips in >= 6 of 10, the 7th WHO step (rotational rubbing of the thumbs, hands clasped) in 2 of 10.
    # Rubbing hands overlap, so the palm detector usually finds one of them: two hands in 8 of 60 frames only.
    per_clip = {name: sum(1 for h in hs if h) for name, hs in found.items()}
    assert sum(per_clip.values()) >= 42, per_clip
    assert sum(n >= 6 for n in per_clip.values()) >= 5, per_clip
    assert sum(1 for hs in found.values() for h in hs if len(h) >= 2) >= 4


def test_landmarks_lie_on_the_hands_inside_the_frame(found):
    for name, per_frame in found.items():
        for frame_hands in per_frame:
            for h in frame_hands:
                assert h.landmarks.shape == (21, 3) and h.landmarks.dtype == np.float32
                x, y = h.landmarks[:, 0], h.landmarks[:, 1]
                # Inside the 720x480 frame, with a small margin for a wrist at the bottom edge.
                assert x.min() >= -10 and x.max() <= 730 and y.min() >= -10 and y.max() <= 500, name
                # Over the sink, where the hands are, and hand-sized (tens to a few hundred pixels).
                assert 100 <= float(x.mean()) <= 620 and 100 <= float(y.mean()) <= 480, name
                x1, y1, x2, y2 = h.box
                assert 40 <= max(x2 - x1, y2 - y1) <= 400, name
                assert 0.5 <= h.score <= 1.0 and h.handedness in ("left", "right")


def test_two_hands_rubbing_have_their_wrists_close(found):
    pairs = [hs for per_frame in found.values() for hs in per_frame if len(hs) >= 2]
    assert pairs
    for hs in pairs:
        # Measured: 74-274 px apart for hands 160-212 px long; furthest in WHO step 4 (fingers interlocked, the
        # hands come in from either side of the sink): at most 1.5 hand lengths.
        (ax, ay), (bx, by) = hs[0].wrist, hs[1].wrist
        hand_length = max(max(h.box[2] - h.box[0], h.box[3] - h.box[1]) for h in hs[:2])
        assert math.hypot(ax - bx, ay - by) < min(1.7 * hand_length, 320.0)


def test_regions_mode_finds_the_hands_only_inside_the_region(detector, clips, found):
    frames = [(f, hs) for name in clips for f, hs in zip(clips[name], found[name], strict=True) if hs]
    assert len(frames) >= 40
    inside = 0
    for frame, _whole in frames[::4]:
        in_region = detector.detect(frame, regions=[HAND_AREA])
        inside += bool(in_region)
        assert detector.detect(frame, regions=[NO_HAND_AREA]) == []
    assert inside >= 0.8 * len(frames[::4])


def test_wrist_regions_of_a_person_reaching_into_the_sink(detector, clips):
    # A person standing at the sink, seen from above: elbows below the frame, wrists at the bottom of the hands.
    kp = np.zeros((17, 3), np.float32)
    kp[7] = (260, 560, 0.6)
    kp[9] = (300, 400, 0.7)
    kp[8] = (460, 560, 0.6)
    kp[10] = (400, 400, 0.7)
    person = Person(box=(150.0, 150.0, 600.0, 480.0), score=0.8, keypoints=kp)
    regions = hands.wrist_regions(person)
    assert len(regions) == 2
    frames = clips["HandWash_007_A_02_G_01"]
    with_hands = sum(1 for f in frames if detector.detect(f, regions=regions))
    assert with_hands >= 8  # measured: 10 of 10 (scale 2.0 gave 7 of 10: too tight a crop)
    assert all(detector.detect(f, regions=[(600.0, 0.0, 720.0, 120.0)]) == [] for f in frames[:3])
