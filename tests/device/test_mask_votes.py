"""The mask app votes per person track over recent confident calls, at the device's sparse face cadence.

Scripted scenes: the face models run on every 5th frame (the device default ``mask.face_every_frames``), so a
person has at most one call a second at 5 frames/s, and some of those are "unknown" or missing.
"""

from collections import deque

import numpy as np
import pytest

from accelerators.faces import MaskedFace
from accelerators.types import KEYPOINT_INDEX, Person
from firmware.apps.mask import MaskApp, MaskConfig, _Call, tally_verdict, vote_of
from firmware.perception import FaceAnalyzer
from firmware.scene import Scene, ScenePerson
from firmware.tracking import TrackedPerson

FPS = 5
EVERY = 5  # face models on every 5th frame: one call a second at most
REQUIRED = MaskConfig(masks_required=True)


def tracked(tid, x=0.0):
    """A tracked person standing at ``x``: box 100 x 300, nose near the top centre."""
    kp = np.zeros((17, 3), np.float32)
    kp[KEYPOINT_INDEX["nose"]] = (x + 50, 30, 0.9)
    return TrackedPerson(tid, Person((x, 0, x + 100, 300), 0.8, kp), 0.0, 1)


def face(label, face_score=0.9, mask_score=0.8, x=0.0):
    return MaskedFace((x + 35, 15, x + 65, 45), label, face_score, 0.0 if label == "unknown" else mask_score)


def scene(t, calls):
    """calls: {track id: MaskedFace or None}."""
    return Scene(t, (1280, 720), tuple(ScenePerson(tracked(tid), frozenset(), f) for tid, f in calls.items()))


def run(app, seconds, start, per_frame):
    """Frames at FPS from ``start`` s; per_frame(frame index) -> {track id: face or None}. Returns the events."""
    events = []
    for i in range(round(seconds * FPS)):
        events += app.update(scene(start + i / FPS, per_frame(start * FPS + i)))
    return events


def sparse(label_of_call, tid=1):
    """A face only on every EVERY-th frame; label_of_call(n) for the n-th analysed frame (None: no face)."""

    def per_frame(i):
        if i % EVERY:
            return {tid: None}
        label = label_of_call(i // EVERY)
        return {tid: None if label is None else face(label)}

    return per_frame


def test_sparse_calls_still_make_a_vote_and_the_grace_runs_from_the_first_no_mask_call():
    # one call a second, every third of them "unknown": at most two confident calls in any 3 s, which a vote
    # over 3 s alone could never decide; the vote reaches back to the latest three calls instead
    app = MaskApp(REQUIRED)
    events = run(app, 40, 0, sparse(lambda n: "unknown" if n % 3 == 2 else "no_mask"))
    (alert,) = [e for e in events if e.type == "no_mask"]
    assert alert.time == pytest.approx(30.0)  # first no-mask call at 0 s, grace 30 s: as with dense calls
    assert alert.data["observations"] == 3 and alert.data["no_mask_fraction"] == 1.0
    assert app.state_of(1) == "no_mask"


def test_two_confident_calls_are_not_a_vote():
    app = MaskApp(MaskConfig(masks_required=True, grace_seconds=1.0))
    run(app, 60, 0, sparse(lambda n: "no_mask" if n in (0, 1) else "unknown"))
    assert app.state_of(1) == "unknown"


def test_calls_older_than_the_vote_age_never_vote():
    config = MaskConfig(masks_required=True, grace_seconds=1.0, vote_max_age_seconds=15.0)
    app = MaskApp(config)  # one confident call every 8 s: never three within 15 s
    events = run(app, 80, 0, sparse(lambda n: "no_mask" if n % 8 == 0 else None))
    assert [e for e in events if e.type == "no_mask"] == [] and app.state_of(1) == "unknown"
    app = MaskApp(config)  # one every 7 s: three within 14 s make a vote
    events = run(app, 80, 0, sparse(lambda n: "no_mask" if n % 7 == 0 else None))
    assert [e.time for e in events if e.type == "no_mask"] == pytest.approx([14.0])


def test_unknown_calls_never_count_as_non_compliant():
    app = MaskApp(MaskConfig(masks_required=True, grace_seconds=1.0, window_seconds=60.0))
    events = run(app, 61, 0, lambda i: {1: face("unknown"), 2: face("unknown") if i % 2 else None})
    assert [e.type for e in events] == ["window_counts"]
    assert events[0].data == {
        "people_seen": 2,
        "masked": 0,
        "unmasked": 0,
        "unknown": 2,
        "window_seconds": 60.0,
        "masks_required": True,
    }
    assert app.state_of(1) == app.state_of(2) == "unknown"


def test_calls_below_the_call_score_do_not_count():
    per_frame = {1: face("no_mask", mask_score=0.6)}
    app = MaskApp(MaskConfig(masks_required=True, grace_seconds=1.0, window_seconds=30.0))
    events = run(app, 31, 0, lambda i: per_frame)
    assert [e.type for e in events] == ["window_counts"] and events[0].data["unknown"] == 1
    app = MaskApp(MaskConfig(masks_required=True, grace_seconds=1.0, min_call_score=0.5))
    assert [e.type for e in run(app, 5, 0, lambda i: per_frame)] == ["no_mask"]


def test_mask_on_needs_a_vote_of_mask_calls_not_one():
    app = MaskApp(REQUIRED)
    events = run(app, 35, 0, sparse(lambda n: "no_mask"))  # alert at 30 s
    # then the face is hidden for 10 s, and comes back masked, one call a second
    events += run(app, 10, 35, lambda i: {1: None})
    events += run(app, 10, 45, sparse(lambda n: "mask"))
    assert [e.type for e in events] == ["no_mask", "mask_on"]
    # votes: [no, no, mask] at 45 s, [no, mask, mask] at 46 s (2/3 < 0.7), [mask] x3 at 47 s
    assert [e.time for e in events] == pytest.approx([30.0, 47.0])


def test_window_counts_vote_over_confident_calls_only():
    app = MaskApp(MaskConfig(window_seconds=60.0))
    people = {
        1: lambda n: "no_mask" if n == 10 else None,  # one frame: not a vote
        2: lambda n: "no_mask" if n in (5, 30) else "unknown",  # two confident calls among unknowns: too few
        3: lambda n: ("no_mask", "no_mask", "mask", "mask", "mask")[n % 5],  # 60% mask: the calls disagree
        4: lambda n: "no_mask" if n in (0, 20, 40) else None,  # three calls, all unmasked, sparse
        5: lambda n: "mask" if n % 4 else "no_mask",  # 75% mask
    }

    def per_frame(i):
        return {tid: sparse(fn, tid)(i)[tid] for tid, fn in people.items()}

    events = run(app, 60.2, 0, per_frame)
    (counts,) = [e for e in events if e.type == "window_counts"]
    assert counts.data["people_seen"] == 5
    assert (counts.data["masked"], counts.data["unmasked"], counts.data["unknown"]) == (1, 1, 3)


def test_tally_verdict_and_vote_exact():
    c = MaskConfig()  # at least 3 calls, 70% agreeing
    assert [tally_verdict(m, n, c) for m, n in [(0, 0), (2, 0), (0, 3), (3, 0), (7, 3), (6, 4), (3, 7)]] == [
        "unknown",
        "unknown",
        "no_mask",
        "mask",
        "mask",
        "unknown",
        "no_mask",
    ]
    calls = [_Call(t, True, 0.8) for t in (1.0, 5.0, 9.0, 9.5)]
    assert [v.t for v in vote_of(deque(calls), 10.0, c)] == [5.0, 9.0, 9.5]  # only two in the last 3 s
    assert [v.t for v in vote_of(deque(calls), 9.5, MaskConfig(smoothing_seconds=9.0))] == [1.0, 5.0, 9.0, 9.5]
    assert vote_of(deque(calls[:2]), 10.0, c) == []
    with pytest.raises(ValueError):
        MaskConfig(smoothing_seconds=20.0, vote_max_age_seconds=15.0)


class ScriptedFaces:
    """A face detector that returns the faces a test gives it."""

    def __init__(self):
        self.faces = []

    def detect_all(self, frame):
        return list(self.faces)


def test_each_track_gets_its_own_faces_and_its_own_vote():
    detector = ScriptedFaces()
    analyzer = FaceAnalyzer(detector, every_frames=EVERY)
    app = MaskApp(MaskConfig(masks_required=True, grace_seconds=10.0))
    people = [tracked(1, x=0.0), tracked(2, x=400.0)]
    # person 1 (left) unmasked, person 2 (right) masked; a stray face off both heads belongs to no one
    detector.faces = [face("mask", x=400.0), face("no_mask", x=0.0), face("no_mask", x=900.0)]
    frame = np.zeros((720, 1280, 3), np.uint8)
    events = []
    for i in range(15 * FPS):
        calls = analyzer.annotate(frame, people)
        assert set(calls) <= {1, 2}
        scene_people = tuple(ScenePerson(p, frozenset(), calls.get(p.track_id)) for p in people)
        events += app.update(Scene(i / FPS, (1280, 720), scene_people))
    assert [(e.type, e.track_id, e.time) for e in events] == [("no_mask", 1, 10.0)]
    assert (app.state_of(1), app.state_of(2)) == ("no_mask", "mask")
