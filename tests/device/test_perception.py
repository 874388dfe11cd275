"""Face and hand models run per frame only when an app needs them, and reach apps as per-person metadata."""

from pathlib import Path

import pytest

from accelerators.cpu import CpuPoseBackend
from accelerators.facemask import FACEMASK_AIZOO
from accelerators.faces import TwoStageMaskDetector
from accelerators.hands import HandDetector
from accelerators.mediapipe_models import FACE_FULL_RANGE, HAND_LANDMARK, PALM_DETECTION
from firmware.agent import Agent
from firmware.perception import FaceAnalyzer, HandAnalyzer
from firmware.sources import ReplaySource
from tests.device.helpers import read_rgb
from wardsight.fetch import ArtifactStore


class Recorder:
    """An app that keeps what it was shown."""

    name = "recorder"

    def __init__(self, needs=frozenset()):
        self.needs = frozenset(needs)
        self.scenes = []

    def update(self, scene):
        self.scenes.append(scene)
        return []


class Counting:
    def __init__(self, inner):
        self.inner, self.need, self.calls = inner, inner.need, 0

    def annotate(self, frame, people):
        self.calls += 1
        return self.inner.annotate(frame, people)


@pytest.fixture(scope="module")
def analyzers(request, shared):
    store = ArtifactStore(Path(request.config.cache.mkdir("wardsight-models")), mirrors=(shared / "models",))
    face, mask, palm, hand = store.ensure_all([FACE_FULL_RANGE, FACEMASK_AIZOO.artifact, PALM_DETECTION, HAND_LANDMARK])
    return FaceAnalyzer(TwoStageMaskDetector(face, mask)), HandAnalyzer(HandDetector(palm, hand))


def test_faces_reach_the_app_as_a_mask_call_on_the_person(movenet_path, shared, analyzers):
    photo = read_rgb(shared / "media" / "astronaut.png")
    app = Recorder({"faces"})
    faces = Counting(analyzers[0])
    hands = Counting(analyzers[1])
    Agent(
        ReplaySource([photo] * 3), CpuPoseBackend(movenet_path), [app], lambda e: None, analyzers=[faces, hands]
    ).run()
    assert faces.calls == 3 and hands.calls == 0  # nobody asked for hands
    person = app.scenes[-1].people[0]
    assert person.face is not None and person.face.label == "no_mask"
    x1, y1, x2, y2 = person.face.box
    assert 150 <= (x1 + x2) / 2 <= 290 and 30 <= (y1 + y2) / 2 <= 210


def test_no_extra_models_run_when_no_app_needs_them(movenet_path, shared, analyzers):
    photo = read_rgb(shared / "media" / "astronaut.png")
    faces, hands = Counting(analyzers[0]), Counting(analyzers[1])
    app = Recorder()
    Agent(
        ReplaySource([photo] * 2), CpuPoseBackend(movenet_path), [app], lambda e: None, analyzers=[faces, hands]
    ).run()
    assert faces.calls == hands.calls == 0
    assert app.scenes[-1].people[0].face is None


def test_hands_run_only_around_wrists(movenet_path, shared, analyzers):
    photo = read_rgb(shared / "media" / "astronaut.png")
    app = Recorder({"hands"})
    hands = Counting(analyzers[1])
    Agent(ReplaySource([photo]), CpuPoseBackend(movenet_path), [app], lambda e: None, analyzers=[hands]).run()
    assert hands.calls == 1
    for person in app.scenes[-1].people:
        for hand in person.hands:  # any hand found lies near one of the person's wrists
            wx, wy = hand.wrist
            near = [person.track.person.keypoint(k) for k in ("left_wrist", "right_wrist")]
            assert min(((wx - x) ** 2 + (wy - y) ** 2) ** 0.5 for x, y, _ in near) < 150


def test_an_app_needing_a_missing_analyzer_is_refused(movenet_path, shared):
    photo = read_rgb(shared / "media" / "astronaut.png")
    with pytest.raises(ValueError, match="needs hands"):
        Agent(ReplaySource([photo]), CpuPoseBackend(movenet_path), [Recorder({"hands"})], lambda e: None)


def test_faces_every_nth_frame_leave_the_frames_between_without_an_observation(movenet_path, shared, analyzers):
    photo = read_rgb(shared / "media" / "astronaut.png")
    app = Recorder({"faces"})
    faces = FaceAnalyzer(analyzers[0].detector, every_frames=3)
    Agent(ReplaySource([photo] * 6), CpuPoseBackend(movenet_path), [app], lambda e: None, analyzers=[faces]).run()
    seen = [scene.people[0].face is not None for scene in app.scenes]
    assert seen == [True, False, False, True, False, False]
