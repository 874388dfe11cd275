"""Bed-exit warning on scripted tracks."""

import numpy as np

from accelerators.types import KEYPOINT_INDEX, Person
from firmware.apps.bed_exit import BedExitApp, BedExitConfig
from firmware.scene import Scene, ScenePerson
from firmware.tracking import TrackedPerson

SIZE = (1000, 1000)
BED = ((0.3, 0.4), (0.7, 0.4), (0.7, 0.9), (0.3, 0.9))  # bed spans x 300-700, y 400-900 in pixels


def body(hip, shoulder, legs):
    kp = np.zeros((17, 3), np.float32)
    for name in ("left_hip", "right_hip"):
        kp[KEYPOINT_INDEX[name]] = (*hip, 0.9)
    for name in ("left_shoulder", "right_shoulder"):
        kp[KEYPOINT_INDEX[name]] = (*shoulder, 0.9)
    for name, point in legs.items():
        kp[KEYPOINT_INDEX[name]] = (*point, 0.9)
    xs = [hip[0], shoulder[0], *(p[0] for p in legs.values())]
    ys = [hip[1], shoulder[1], *(p[1] for p in legs.values())]
    return Person((min(xs), min(ys), max(xs) + 1, max(ys) + 1), 0.8, kp)


LYING = body((500, 650), (500, 450), {"left_knee": (500, 760), "left_ankle": (500, 860)})  # along the bed
SITTING = body((500, 650), (500, 450), {"left_knee": (600, 660), "left_ankle": (650, 760)})
# hips in bed, torso upright, knees and ankles beyond the bed's right edge
LEGS_OVER = body((650, 650), (650, 450), {"left_knee": (760, 660), "left_ankle": (780, 800)})


def lying_flat():
    # lying: torso horizontal (shoulder beside the hip)
    return body((500, 650), (330, 640), {"left_knee": (600, 655), "left_ankle": (690, 660)})


def run(app, seq, start=0.0):
    events, t = [], start
    for person, seconds in seq:
        for _ in range(int(seconds * 10)):
            events += app.update(Scene(t, SIZE, (ScenePerson(TrackedPerson(1, person, 0.0, 1), frozenset()),)))
            t += 0.1
    return events


def test_patient_sitting_up_with_legs_over_the_edge_is_warned_once():
    app = BedExitApp(BedExitConfig(BED))
    events = run(app, [(lying_flat(), 5), (SITTING, 2), (LEGS_OVER, 3)])
    assert [e.type for e in events] == ["bed_exit"]
    e = events[0]
    assert e.severity == "warning" and e.data["legs_outside"] >= 1 and e.time >= 6.95
    assert e.time < 7.2  # raised on the first frame with the legs over, before standing


def test_sitting_up_without_legs_over_is_not_warned():
    assert run(BedExitApp(BedExitConfig(BED)), [(lying_flat(), 5), (SITTING, 10)]) == []


def test_a_visitor_sitting_on_the_edge_who_never_lay_there_is_not_warned():
    assert run(BedExitApp(BedExitConfig(BED)), [(LEGS_OVER, 10)]) == []


def test_rearms_after_lying_down_again():
    app = BedExitApp(BedExitConfig(BED))
    events = run(app, [(lying_flat(), 3), (LEGS_OVER, 2), (lying_flat(), 3), (LEGS_OVER, 2)])
    assert [e.type for e in events] == ["bed_exit", "bed_exit"]


def test_too_long_since_lying_is_not_a_bed_exit():
    app = BedExitApp(BedExitConfig(BED, memory_seconds=5))
    assert run(app, [(lying_flat(), 2), (SITTING, 8), (LEGS_OVER, 2)]) == []
