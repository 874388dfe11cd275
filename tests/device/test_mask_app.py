"""The mask rules on scripted face calls: grace, smoothing, policy, cooldown, resolution, window counts."""

import numpy as np
import pytest

from accelerators.faces import MaskedFace
from accelerators.types import Person
from firmware.apps.mask import MaskApp, MaskConfig
from firmware.scene import Scene, ScenePerson
from firmware.tracking import TrackedPerson
from tests.device.helpers import assert_on_the_wire

FPS = 10

REQUIRED = MaskConfig(masks_required=True)


def face(label, face_score=0.9, mask_score=0.8):
    return MaskedFace((0.0, 0.0, 10.0, 10.0), label, face_score, mask_score if label != "unknown" else 0.0)


def person(tid, label=None, face_score=0.9):
    """A tracked person with a face call ``label`` ("mask", "no_mask", "unknown") or no face (None)."""
    p = Person((0, 0, 100, 300), 0.8, np.zeros((17, 3), np.float32))
    return ScenePerson(TrackedPerson(tid, p, 0.0, 1), frozenset(), None if label is None else face(label, face_score))


class Script:
    def __init__(self, config=REQUIRED):
        self.app, self.frame, self.events = MaskApp(config), 0, []

    @property
    def t(self):
        return self.frame / FPS  # exact multiples of 0.1 s: no accumulated drift at the boundaries

    def frames(self, seconds, people_fn):
        """people_fn(frame index within this call) -> list of (track_id, label or None)."""
        for i in range(round(seconds * FPS)):
            scene = Scene(self.t, (1280, 720), tuple(person(tid, label) for tid, label in people_fn(i)))
            self.events += self.app.update(scene)
            self.frame += 1
        return self

    def of(self, *types):
        return [e for e in self.events if e.type in types]

    def types(self, *exclude):
        return [e.type for e in self.events if e.type not in exclude]


def steady(label, tid=1):
    return lambda i: [(tid, label)]


def test_app_declares_name_and_needs():
    app = MaskApp()
    assert app.name == "mask" and app.needs == frozenset({"faces"})
    assert MaskConfig().grace_seconds == 30.0 and MaskConfig().window_seconds == 300.0


def test_alert_exactly_after_the_grace_period_not_before():
    s = Script().frames(29.9, steady("no_mask"))  # frames at 0.0 .. 29.8 s
    assert s.of("no_mask") == []
    s.frames(0.1, steady("no_mask"))  # the frame at 29.9 s: still inside the grace period
    assert s.of("no_mask") == []
    s.frames(0.1, steady("no_mask"))  # 30.0 s after the first unmasked sighting
    (alert,) = s.of("no_mask")
    assert alert.time == pytest.approx(30.0) and alert.severity == "warning" and alert.track_id == 1
    assert alert.data["seconds_unmasked"] == pytest.approx(30.0) and alert.data["no_mask_fraction"] == 1.0
    assert alert.confidence == pytest.approx(0.8)
    s.frames(60, steady("no_mask"))
    assert len(s.of("no_mask")) == 1  # one alert per incident


def test_grace_counts_from_when_the_mask_came_off():
    s = Script().frames(10, steady("mask")).frames(40, steady("no_mask"))
    (alert,) = s.of("no_mask")
    assert alert.time == pytest.approx(10.0 + 30.0)


def test_a_flicker_of_no_mask_frames_does_not_alert():
    config = MaskConfig(masks_required=True, grace_seconds=1.0)
    s = Script(config).frames(5, steady("mask"))
    s.frames(1, steady("no_mask"))  # one second of misclassified frames: a third of the smoothing window
    s.frames(5, steady("mask"))
    s.frames(60, lambda i: [(1, "no_mask" if i % 3 == 0 else "mask")])  # every third frame wrong, for a minute
    assert s.of("no_mask") == [] and s.app.state_of(1) == "mask"


def test_one_masked_frame_does_not_end_an_unmasked_incident():
    s = Script(MaskConfig(masks_required=True, grace_seconds=5.0)).frames(3, steady("no_mask"))
    s.frames(0.1, steady("mask")).frames(2.9, steady("no_mask"))
    assert s.types("window_counts") == ["no_mask"] and s.of("no_mask")[0].time == pytest.approx(5.0)


def test_unknown_faces_and_missing_faces_count_neither_way():
    config = MaskConfig(masks_required=True, grace_seconds=5.0)
    # a person whose face is never classified: no state, no alert
    s = Script(config).frames(60, lambda i: [(1, "unknown" if i % 2 else None)])
    assert s.of("no_mask") == [] and s.app.state_of(1) == "unknown"
    # unknown calls interleaved with no_mask ones do not dilute the no-mask evidence
    s = Script(config).frames(10, lambda i: [(2, "unknown" if i % 2 else "no_mask")])
    (alert,) = s.of("no_mask")
    assert alert.time == pytest.approx(5.0) and alert.data["no_mask_fraction"] == 1.0
    # nor do they end an incident: the unmasked state holds while the face is unreadable
    s.frames(30, steady("unknown", 2))
    assert s.types("window_counts") == ["no_mask"] and s.app.state_of(2) == "no_mask"


def test_weak_faces_are_not_observations():
    app = MaskApp(MaskConfig(masks_required=True, grace_seconds=1.0, min_face_score=0.6))
    events = []
    for i in range(50):
        p = person(1, "no_mask", face_score=0.55)
        events += app.update(Scene(i / FPS, (640, 480), (p,)))
    assert events == [] and app.state_of(1) == "unknown"


def test_no_alert_when_the_room_does_not_require_masks_but_counts_still_come():
    s = Script(MaskConfig(masks_required=False, window_seconds=60.0)).frames(130, steady("no_mask"))
    assert s.types("window_counts") == []
    counts = s.of("window_counts")
    assert [e.time for e in counts] == pytest.approx([60.0, 120.0])
    assert counts[0].data["unmasked"] == 1 and counts[0].data["masks_required"] is False
    assert all(e.severity == "info" for e in counts)


def test_mask_on_resolves_the_alert():
    s = Script().frames(35, steady("no_mask")).frames(5, steady("mask"))
    assert s.types("window_counts") == ["no_mask", "mask_on"]
    on = s.of("mask_on")[0]
    assert on.severity == "info" and on.track_id == 1
    assert 35.0 < on.time <= 37.1  # hysteresis: 70% of the last 3 s of calls must be "mask"
    assert on.data["seconds_unmasked"] == pytest.approx(on.time)


def test_no_mask_on_event_without_an_alert():
    s = Script().frames(10, steady("no_mask")).frames(5, steady("mask"))
    assert s.types("window_counts") == []


def test_cooldown_between_incidents_of_the_same_person():
    config = MaskConfig(masks_required=True, grace_seconds=10.0, cooldown_seconds=120.0)
    s = Script(config).frames(12, steady("no_mask"))  # alert at 10 s
    s.frames(10, steady("mask"))  # mask_on
    s.frames(60, steady("no_mask"))  # off again at 22 s: grace ends at 32 s, but the cooldown runs to 130 s
    assert s.types("window_counts") == ["no_mask", "mask_on"]
    s.frames(60, steady("no_mask"))  # still unmasked when the cooldown ends
    assert s.types("window_counts") == ["no_mask", "mask_on", "no_mask"]
    assert [e.time for e in s.of("no_mask")] == pytest.approx([10.0, 130.0])
    # once the cooldown (to 250 s) is over, a further incident alerts on its own grace period
    s.frames(130, steady("mask")).frames(20, steady("no_mask"))  # masked 142-272 s, off at 272 s
    assert [e.time for e in s.of("no_mask")] == pytest.approx([10.0, 130.0, 282.0])
    assert s.types("window_counts") == ["no_mask", "mask_on", "no_mask", "mask_on", "no_mask"]


def test_people_are_alerted_separately():
    config = MaskConfig(masks_required=True, grace_seconds=5.0)
    s = Script(config).frames(3, lambda i: [(1, "no_mask"), (2, "mask")])
    s.frames(6, lambda i: [(1, "no_mask"), (2, "no_mask")])  # 2 takes the mask off at 3 s
    assert [e.track_id for e in s.of("no_mask")] == [1, 2]
    assert [e.time for e in s.of("no_mask")] == pytest.approx([5.0, 8.0])


def test_window_counts_with_several_people():
    config = MaskConfig(masks_required=True, window_seconds=60.0)
    s = Script(config)
    # window 1 (0-60 s): 1 masked throughout; 2 unmasked; 3 face never seen; 4 mostly masked; 5 a tie
    s.frames(
        60,
        lambda i: [
            (1, "mask"),
            (2, "no_mask"),
            (3, None),
            (4, "no_mask" if i % 4 == 0 else "mask"),
            (5, ("mask", "no_mask")[i % 2] if i < 20 else "unknown"),
        ],
    )
    # window 2 (60-120 s): only person 1, now unmasked, and a newcomer 6 with a mask
    s.frames(60, lambda i: [(1, "no_mask"), (6, "mask")])
    s.frames(0.1, lambda i: [])
    first, second = s.of("window_counts")
    assert first.time == pytest.approx(60.0) and second.time == pytest.approx(120.0)
    assert first.data == {
        "people_seen": 5,
        "masked": 2,
        "unmasked": 1,
        "unknown": 2,
        "window_seconds": 60.0,
        "masks_required": True,
    }
    assert (second.data["people_seen"], second.data["masked"], second.data["unmasked"]) == (2, 1, 1)
    assert second.data["unknown"] == 0


def test_a_gap_in_frames_does_not_emit_empty_windows():
    app = MaskApp(MaskConfig(window_seconds=10.0))
    assert app.update(Scene(0.0, (640, 480), (person(1, "mask"),))) == []
    (event,) = app.update(Scene(35.0, (640, 480), ()))  # 3.5 windows later
    assert event.data["people_seen"] == 1
    assert app.update(Scene(39.9, (640, 480), ())) == []
    (event,) = app.update(Scene(40.0, (640, 480), ()))  # windows stay aligned to the first frame
    assert event.data["people_seen"] == 0


def test_events_fit_the_wire_schema():
    s = Script(MaskConfig(masks_required=True, window_seconds=40.0)).frames(35, steady("no_mask"))
    s.frames(10, steady("mask"))
    assert s.types() == ["no_mask", "mask_on", "window_counts"]
    assert_on_the_wire(s.events)
