"""Blackout at capture: the model only ever sees frames with privacy regions already zeroed."""

import re
from pathlib import Path

import numpy as np
import pytest

from accelerators.base import Backend
from accelerators.cpu import CpuPoseBackend
from firmware.agent import Agent
from firmware.apps.occupancy import OccupancyApp
from firmware.privacy import PrivacyMask
from firmware.sources import ReplaySource, VideoFileSource
from tests.conftest import ROOT
from tests.device.helpers import read_rgb
from wardsight.footage import DEMO_FOOTAGE

LEFT_HALF = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]


class SeenByModel(Backend):
    """Wraps a real backend and keeps a copy of each input, to inspect what inference received."""

    name = "recording"

    def __init__(self, inner: Backend | None = None) -> None:
        self.inner, self.seen = inner, []

    def detect(self, frame):
        self.seen.append(frame.copy())
        return self.inner.detect(frame) if self.inner else []


def test_mask_geometry():
    mask = PrivacyMask([LEFT_HALF]).mask_for(100, 40)
    assert mask[:, :49].all() and not mask[:, 51:].any()


def test_region_zeroed_before_inference_on_real_footage(model_store):
    path = model_store.path(DEMO_FOOTAGE)
    source = VideoFileSource(path, realtime=False, privacy=PrivacyMask([LEFT_HALF]))
    raw = VideoFileSource(path, realtime=False)
    recorder = SeenByModel()
    agent = Agent(source, recorder, [], emit=lambda e: None)
    for _ in range(30):
        assert agent.step()
    w = source.frame_size[0]
    for i, frame in enumerate(recorder.seen):
        original = raw.read().image
        assert original[:, : w // 2 - 1].any(), "the footage has content on the left"
        assert not frame[:, : w // 2 - 1].any(), f"frame {i}: privacy region reached the model"
        np.testing.assert_array_equal(frame[:, w // 2 + 1 :], original[:, w // 2 + 1 :])


def test_person_inside_a_privacy_region_is_invisible_to_the_model(movenet_path, shared):
    photo = read_rgb(shared / "media" / "astronaut.png")
    backend = CpuPoseBackend(movenet_path)
    whole = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    events = []
    for polygons, expected in (([], 1), ([whole], 0)):
        source = ReplaySource([photo] * 15, fps=10, privacy=PrivacyMask(polygons))
        app = OccupancyApp(stable_seconds=0.5)
        recorder = SeenByModel(backend)
        Agent(source, recorder, [app], emit=events.append).run()
        assert app.reported == expected
        if polygons:
            assert all(not f.any() for f in recorder.seen)
    # The caller's image was never modified: the source masks its own copy.
    assert photo.any()


def test_no_pixel_writing_calls_in_device_code():
    pattern = re.compile(r"imwrite\(|imencode\(|VideoWriter|np\.save\(|\.tofile\(|PIL|Image\.fromarray")
    offenders = []
    for pkg in ("firmware", "accelerators", "wardsight"):
        for path in (ROOT / pkg).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize("level", ["DEBUG"])
def test_agent_logs_carry_no_pixels(movenet_path, shared, caplog, level):
    photo = read_rgb(shared / "media" / "astronaut.png")
    source = ReplaySource([photo] * 12, fps=10)
    with caplog.at_level(level):
        Agent(source, CpuPoseBackend(movenet_path), [OccupancyApp(stable_seconds=0.5)], emit=lambda e: None).run()
    text = caplog.text
    assert len(text) < 10_000 and "array(" not in text and not re.search(r"\[\[?\s*\d+\s+\d+\s+\d+", text)


def test_sources_report_health(model_store):
    source = VideoFileSource(Path(model_store.path(DEMO_FOOTAGE)), realtime=False)
    source.read()
    health = source.health()
    assert health["width"] == 640 and health["height"] == 272 and health["captured"] == 1


def test_a_failing_model_or_app_does_not_end_the_agent(shared):
    import cv2

    photo = read_rgb(shared / "media" / "astronaut.png")

    class Flaky(Backend):
        name = "flaky"

        def __init__(self):
            self.calls = 0

        def detect(self, frame):
            self.calls += 1
            if self.calls % 2:
                raise cv2.error("decoder failed")
            return []

    class Broken:
        name, needs = "broken", frozenset()

        def update(self, scene):
            raise KeyError("bug")

    emitted = []
    stats = Agent(ReplaySource([photo] * 6), Flaky(), [Broken(), OccupancyApp()], emit=emitted.append).run()
    assert stats.failed == 3 and stats.processed == 3 and stats.app_errors == 3
