"""Hand hygiene rules on scripted tracks (door -> dispenser -> rubbing -> patient zone and back), and the
rubbing detector on real hand-washing footage."""

from __future__ import annotations

import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from accelerators.hands import Hand, HandDetector
from accelerators.mediapipe_models import HAND_LANDMARK, PALM_DETECTION
from accelerators.types import KEYPOINT_INDEX, Person
from firmware.apps.hygiene import (
    HandHygieneApp,
    HygieneConfig,
    WristSample,
    is_rubbing,
    rub_measures,
    wrists_from_hands,
)
from firmware.scene import Scene, ScenePerson
from firmware.tracking import TrackedPerson
from firmware.zones import Zone, ZoneMap
from tests.conftest import SHARED
from tests.device.helpers import assert_on_the_wire
from wardsight.fetch import ArtifactStore

FPS = 10.0
H = 400.0  # box height in pixels (a standing person)
DOOR, DISPENSER, BED = ("door",), ("dispenser",), ("bed",)
CONFIG = HygieneConfig(door_zones=frozenset(DOOR), dispenser_zones=frozenset(DISPENSER), patient_zones=frozenset(BED))


def person(cx, wrists):
    """A standing person centred at ``cx`` with the given wrist positions (pixels)."""
    kp = np.zeros((17, 3), np.float32)
    for name, y in (("left_shoulder", 330), ("right_shoulder", 330), ("left_hip", 450), ("right_hip", 450)):
        kp[KEYPOINT_INDEX[name]] = (cx, y, 0.9)
    for name, (x, y) in zip(("left_wrist", "right_wrist"), wrists, strict=True):
        kp[KEYPOINT_INDEX[name]] = (x, y, 0.9)
    return Person((cx - 60, 650 - H, cx + 60, 650), 0.8, kp)


def hand(x, y):
    lm = np.zeros((21, 3), np.float32)
    lm[:, 0], lm[:, 1] = x, y - np.linspace(0, 60, 21)  # fingers "up" from the wrist
    return Hand(lm, 0.9, "right", 0.9, (x - 30, y - 60, x + 30, y), 0.9)


# Hand postures: wrist positions at time t for a person centred at cx.
def at_sides(cx, t):
    return (cx - 60, 470), (cx + 60, 470)  # 0.3 box heights apart


def still_together(cx, t):
    return (cx - 8, 430), (cx + 8, 430)


def rubbing(cx, t):
    dx = 12 * math.sin(2 * math.pi * 2.3 * t)  # 2.3 Hz back and forth, opposite hands
    return (cx - 8 + dx, 430 + dx / 2), (cx + 8 - dx, 430 - dx / 2)


def far_apart_moving(cx, t):
    dx = 12 * math.sin(2 * math.pi * 2.3 * t)
    return (cx - 70 + dx, 470), (cx + 70 - dx, 470)


class Script:
    def __init__(self, config=CONFIG, zone_map=None):
        self.app, self.t, self.events = HandHygieneApp(config), 0.0, []
        self.zone_map = zone_map  # when given, zones come from the keypoints, as in the agent

    def frames(self, seconds, *people):
        """Each of ``people`` is (track_id, cx or cx(f), zones, posture[, hands posture]); f runs 0..1."""
        n = max(1, round(seconds * FPS))
        for i in range(n):
            f = i / max(n - 1, 1)
            scene_people = []
            for tid, cx, zones, posture, *hands_posture in people:
                x = cx(f) if callable(cx) else cx
                hs = tuple(hand(*w) for w in hands_posture[0](x, self.t)) if hands_posture else ()
                track = TrackedPerson(tid, person(x, posture(x, self.t)), self.t, 1)
                if self.zone_map is not None:
                    zones = self.zone_map.zones_of(track.person, (1280, 720))
                scene_people.append(ScenePerson(track, frozenset(zones), hands=hs))
            self.events += self.app.update(Scene(self.t, (1280, 720), tuple(scene_people)))
            self.t += 1 / FPS
        return self

    def nobody(self, seconds):
        return self.frames(seconds)

    def types(self):
        return [e.type for e in self.events]


def walk(a, b):
    return lambda f: a + (b - a) * f


# Room layout along x: door 100, dispenser 300, bed 900.
def entry(s, tid=1, dispenser=1.5, rub=25.0, rub_posture=rubbing, to_bed=True):
    s.frames(1, (tid, 100, DOOR, at_sides)).frames(1, (tid, walk(120, 300), (), at_sides))
    if dispenser:
        s.frames(dispenser, (tid, 300, DISPENSER, at_sides))
    if rub:
        s.frames(rub, (tid, 320, (), rub_posture))
    s.frames(2, (tid, walk(320, 880), (), at_sides))
    if to_bed:
        s.frames(2, (tid, 900, BED, at_sides))
    return s


def leave(s, tid=1, dispenser=1.5, rub=25.0, rub_posture=rubbing, bed=3.0):
    if bed:
        s.frames(bed, (tid, 900, BED, at_sides))
    s.frames(1, (tid, walk(880, 320), (), at_sides))
    if dispenser:
        s.frames(dispenser, (tid, 300, DISPENSER, at_sides))
    if rub:
        s.frames(rub, (tid, 300, (), rub_posture))
    s.frames(1, (tid, walk(300, 120), (), at_sides)).frames(1, (tid, 100, DOOR, at_sides))
    return s


def only(s):
    assert len(s.events) == 1, s.types()
    return s.events[0]


def test_compliant_entry():
    e = only(entry(Script()))
    assert (e.type, e.severity, e.app, e.track_id) == ("opportunity", "info", "hand_hygiene", 1)
    assert e.data["entry"] is True and e.data["compliant"] is True and e.data["dispensed"] is True
    assert e.data["rub_seconds"] >= 20 and e.data["dwell_seconds"] >= 1.0


def test_compliant_exit():
    e = only(leave(Script()))
    assert e.type == "opportunity" and e.data["entry"] is False and e.data["compliant"] is True
    assert e.data["rub_seconds"] >= 20


def test_missed_entry_without_any_hygiene_warns():
    e = only(entry(Script(), dispenser=0, rub=0))
    assert (e.type, e.severity) == ("missed", "warning")
    assert e.data["entry"] is True and e.data["compliant"] is False and e.data["dispensed"] is False


def test_missed_exit():
    e = only(leave(Script(), dispenser=0, rub=0))
    assert (e.type, e.severity) == ("missed", "warning") and e.data["entry"] is False


def test_rubbing_too_short_is_missed_and_says_how_long():
    e = only(entry(Script(), rub=8.0))
    assert e.type == "missed" and e.data["dispensed"] is True
    assert 6.0 <= e.data["rub_seconds"] <= 9.0


def test_dispenser_visit_without_rubbing_is_missed():
    e = only(entry(Script(), rub=25.0, rub_posture=still_together))
    assert e.type == "missed" and e.data["dispensed"] is True and e.data["rub_seconds"] == 0.0


def test_rubbing_without_dispenser_visit_is_missed():
    e = only(entry(Script(), dispenser=0))
    assert e.type == "missed" and e.data["dispensed"] is False
    assert e.data["rub_seconds"] == 0.0 and e.data["any_rub_seconds"] >= 20  # the rubbing was seen, not counted


def test_rubbing_before_the_dispenser_does_not_count():
    s = Script().frames(1, (1, 100, DOOR, at_sides)).frames(25, (1, 320, (), rubbing))
    s.frames(1.5, (1, 300, DISPENSER, at_sides)).frames(2, (1, 900, BED, at_sides))
    assert only(s).type == "missed"


def test_a_short_pause_in_rubbing_still_counts_a_long_one_does_not():
    def rub_with_pause(pause):
        s = Script().frames(1, (1, 100, DOOR, at_sides)).frames(1.5, (1, 300, DISPENSER, at_sides))
        s.frames(12, (1, 320, (), rubbing)).frames(pause, (1, 320, (), still_together))
        return only(s.frames(12, (1, 320, (), rubbing)).frames(2, (1, 900, BED, at_sides)))

    assert rub_with_pause(1.0).type == "opportunity"
    e = rub_with_pause(5.0)
    assert e.type == "missed" and e.data["rub_seconds"] < 13


def test_exit_hygiene_must_follow_leaving_the_patient_zone():
    # hands rubbed at the bedside (inside the patient zone), then straight to the door
    s = Script().frames(3, (1, 900, BED, at_sides)).frames(1.5, (1, 900, BED + DISPENSER, at_sides))
    s.frames(25, (1, 900, BED, rubbing))
    e = only(leave(s, dispenser=0, rub=0, bed=0))
    assert e.type == "missed" and e.data["entry"] is False


def test_tracking_lost_mid_opportunity_is_unknown():
    s = Script().frames(1, (1, 100, DOOR, at_sides)).frames(1, (1, walk(120, 300), (), at_sides))
    s.frames(1.5, (1, 300, DISPENSER, at_sides)).frames(5, (1, 320, (), rubbing))
    s.nobody(2.0)
    assert s.events == []  # not yet lost_seconds (3 s)
    s.nobody(2.0)
    e = only(s)
    assert (e.type, e.severity, e.track_id) == ("unknown", "info", 1)
    assert e.data["lost"] is True and e.data["compliant"] is False and e.data["entry"] is True


def test_lost_while_still_in_the_doorway_is_no_opportunity():
    s = Script().frames(2, (1, 100, DOOR, at_sides)).nobody(10)
    assert s.events == []


def test_lost_on_the_way_out_is_unknown_exit():
    s = Script().frames(3, (1, 900, BED, at_sides)).frames(1, (1, walk(880, 500), (), at_sides)).nobody(5)
    e = only(s)
    assert e.type == "unknown" and e.data["entry"] is False


def test_the_patient_is_excluded():
    # in bed for two minutes, then to the door (bathroom) and back: never an opportunity
    s = Script().frames(120, (7, 900, BED, at_sides))
    s.frames(2, (7, walk(880, 120), (), at_sides)).frames(2, (7, 100, DOOR, at_sides))
    s.frames(2, (7, walk(120, 880), (), at_sides)).frames(10, (7, 900, BED, at_sides))
    s.frames(2, (7, walk(880, 500), (), at_sides)).nobody(5)  # and lost on the way: no "unknown" either
    assert s.events == []
    assert s.app.rates()["opportunities"] == 0


def test_two_staff_at_once_are_tracked_independently():
    s = Script()
    a_rubs = lambda cx, t: rubbing(cx, t)  # noqa: E731
    s.frames(1, (1, 100, DOOR, at_sides), (2, 140, DOOR, at_sides))
    s.frames(1.5, (1, 300, DISPENSER, at_sides), (2, walk(160, 500), (), at_sides))
    s.frames(25, (1, 320, (), a_rubs), (2, 520, (), at_sides))  # B stands still beside A, hands at the sides
    s.frames(2, (2, 900, BED, at_sides), (1, 330, (), at_sides))
    s.frames(2, (1, 900, BED, at_sides), (2, 950, BED, at_sides))
    by_track = {e.track_id: e for e in s.events}
    assert len(s.events) == 2
    assert by_track[1].type == "opportunity" and by_track[2].type == "missed"


def test_one_event_per_opportunity_and_cooldown():
    s = entry(Script(), dispenser=0, rub=0)
    s.frames(20, (1, 900, BED, at_sides))  # staying in the patient zone: still one event
    s.frames(1, (1, 780, (), at_sides)).frames(1, (1, 900, BED, at_sides))  # stepping out and back: no door
    assert s.types() == ["missed"]
    # someone going door / bed / door / bed within the cooldown (10 s): one entry and one exit only
    s = Script()
    for _ in range(3):
        s.frames(1, (1, 100, DOOR, at_sides)).frames(1, (1, 900, BED, at_sides))
    assert [(e.type, e.data["entry"]) for e in s.events] == [("missed", True), ("missed", False)]
    s.frames(11, (1, 900, BED, at_sides)).frames(1, (1, 100, DOOR, at_sides))  # after the cooldown: counted
    assert [e.data["entry"] for e in s.events] == [True, False, False]
    assert s.app.rates()["opportunities"] == 3


def test_rates():
    s = Script()
    assert s.app.rates()["compliance_rate"] is None
    entry(s, tid=1)
    entry(s, tid=2, dispenser=0, rub=0)
    leave(s, tid=3, rub=4)
    s.frames(1, (4, 100, DOOR, at_sides)).frames(1, (4, walk(120, 400), (), at_sides)).nobody(5)
    assert s.types() == ["opportunity", "missed", "missed", "unknown"]
    r = s.app.rates()
    assert {k: r[k] for k in ("opportunities", "compliant", "missed", "unknown", "entry", "exit")} == {
        "opportunities": 4,
        "compliant": 1,
        "missed": 2,
        "unknown": 1,
        "entry": 3,
        "exit": 1,
    }
    assert r["compliance_rate"] == pytest.approx(1 / 3)


def test_events_fit_the_wire_contract():
    s = entry(Script())
    leave(s, tid=2, rub=0)
    s.frames(1, (4, 100, DOOR, at_sides)).frames(1, (4, 300, (), at_sides)).nobody(5)
    assert len(s.events) == 3
    assert_on_the_wire(s.events)


def test_hands_are_used_when_two_are_found_and_pose_wrists_otherwise():
    # the pose puts the wrists apart (a poor pose estimate); the hand landmarks show rubbing
    def run(use_hands):
        config = HygieneConfig(
            door_zones=frozenset(DOOR),
            dispenser_zones=frozenset(DISPENSER),
            patient_zones=frozenset(BED),
            use_hands=use_hands,
        )
        s = Script(config).frames(1, (1, 100, DOOR, at_sides)).frames(1.5, (1, 300, DISPENSER, at_sides))
        s.frames(25, (1, 320, (), at_sides, rubbing)).frames(2, (1, 900, BED, at_sides))
        return s.app, only(s)

    app, e = run(True)
    assert app.needs == frozenset({"hands"}) and e.type == "opportunity"
    app, e = run(False)
    assert app.needs == frozenset() and e.type == "missed"
    # with a single hand found the pose wrists are used
    assert wrists_from_hands([hand(10, 10)]) == ()
    assert len(wrists_from_hands([hand(10, 10), hand(30, 10), hand(500, 10)])) == 2


def test_walking_with_the_hands_together_is_not_rubbing():
    s = Script().frames(1, (1, 100, DOOR, at_sides)).frames(1.5, (1, 300, DISPENSER, at_sides))
    s.frames(25, (1, walk(320, 880), (), lambda cx, t: still_together(cx, t)))  # wrists move with the body
    s.frames(2, (1, 900, BED, at_sides))
    e = only(s)
    assert e.type == "missed" and e.data["any_rub_seconds"] == 0.0


def test_zones_from_keypoints():
    def box(x1, x2, y1=0.0, y2=720.0):
        return ((x1 / 1280, y1 / 720), (x2 / 1280, y1 / 720), (x2 / 1280, y2 / 720), (x1 / 1280, y2 / 720))

    zone_map = ZoneMap(
        [
            Zone("door", "door", box(0, 200)),
            Zone("dispenser", "dispenser", box(200, 260, 440, 500)),  # reached by the left wrist at cx=300
            Zone("bed", "bed", box(800, 1280)),
        ]
    )
    s = entry(Script(zone_map=zone_map))
    e = only(s)
    assert e.type == "opportunity" and e.data["dwell_seconds"] >= 1.0


# --- the rubbing decision itself ----------------------------------------------------------------------------------


def window(posture, seconds=1.0, fps=FPS, scale=H):
    return [
        WristSample(t, tuple((x / scale, y / scale) for x, y in posture(0.0, t)))
        for t in np.arange(0, seconds, 1 / fps)
    ]


def test_is_rubbing_on_scripted_hands():
    assert is_rubbing(window(rubbing))
    assert not is_rubbing(window(still_together))
    assert not is_rubbing(window(far_apart_moving))
    assert not is_rubbing(window(at_sides))
    assert not is_rubbing(window(rubbing, seconds=0.3))  # too short a window to judge
    assert not is_rubbing([WristSample(t, ((0.0, 0.0),)) for t in np.arange(0, 1, 0.1)])  # one wrist, moving or not


# --- real footage: hands washing at a sink, seen from above ------------------------------------------------------

HANDWASH = SHARED / "data" / "handwash-dev"
SEGMENT = (1.0, 5.0)  # seconds of each clip analysed (decoded in order, no seeking)
STEP = 3  # every third frame: 10 samples per second at 30 fps
PALM_FRACTION = 0.06  # palm length (wrist -> middle finger MCP) over standing height (adult anthropometry)


@pytest.fixture(scope="module")
def hand_detector(request) -> HandDetector:
    store = ArtifactStore(Path(request.config.cache.mkdir("wardsight-models")))
    palm, landmark = store.ensure_all([PALM_DETECTION, HAND_LANDMARK])
    return HandDetector(palm, landmark, num_threads=2, min_palm_score=0.3)


def clip_hands(path: Path, detector: HandDetector) -> list[tuple[float, list[Hand]]]:
    cap = cv2.VideoCapture(str(path))
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        out, i = [], 0
        while i / fps < SEGMENT[1] and cap.grab():
            if i / fps >= SEGMENT[0] and i % STEP == 0:
                ok, bgr = cap.retrieve()
                assert ok
                out.append((i / fps, detector.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))))
            i += 1
        return out
    finally:
        cap.release()


def footage_samples(found: list[tuple[float, list[Hand]]], height: float) -> list[WristSample]:
    """Two hands: their wrists. One hand: the palm detector merged the overlapping pair (both hands are in
    the sink throughout these clips), so it stands for both, together. No hand: no sample."""
    samples = []
    for t, hands in found:
        if len(hands) >= 2:
            samples.append(WristSample(t, tuple((x / height, y / height) for x, y in wrists_from_hands(hands))))
        elif hands:
            x, y = hands[0].wrist
            samples.append(WristSample(t, ((x / height, y / height),), overlapping=True))
    return samples


def test_rubbing_on_real_handwash_footage(hand_detector, capsys):
    paths = sorted(HANDWASH.glob("*.mp4"))
    assert len(paths) == 6, f"expected the 6 handwash-dev clips in {HANDWASH}"
    start = time.monotonic()
    config = HygieneConfig()
    judged = rubbing_windows = all_windows = two_hand_frames = two_hand_together = 0
    lines = []
    for path in paths:
        found = clip_hands(path, hand_detector)
        palms = [float(np.linalg.norm(h.landmarks[9, :2] - h.landmarks[0, :2])) for _, hs in found for h in hs]
        assert palms, f"{path.name}: no hand found at all"
        height = float(np.median(palms)) / PALM_FRACTION  # the washer's standing height in pixels, estimated
        samples = footage_samples(found, height)
        for _, hands in found:
            if len(hands) >= 2:
                two_hand_frames += 1
                two_hand_together += math.dist(*wrists_from_hands(hands)) / height <= config.rub_max_wrist_distance
        clip_judged = clip_rubbing = clip_windows = 0
        for t0 in np.arange(SEGMENT[0], SEGMENT[1] - 0.99, 0.5):  # 1 s windows, half overlapping
            w = [s for s in samples if t0 <= s.time < t0 + 1.0]
            clip_windows += 1
            m = rub_measures(w, config.rub_max_wrist_distance)
            if m.samples >= 3 and m.span >= 0.5:
                clip_judged += 1
                clip_rubbing += is_rubbing(w)
        lines.append(
            f"{path.stem}: {clip_rubbing}/{clip_judged} judged windows rubbing ({clip_windows} windows, "
            f"{sum(1 for _, hs in found if hs)}/{len(found)} frames with a hand)"
        )
        judged, rubbing_windows, all_windows = (
            judged + clip_judged,
            rubbing_windows + clip_rubbing,
            all_windows + clip_windows,
        )
    with capsys.disabled():
        print("\n" + "\n".join(lines))
        print(
            f"rubbing in {rubbing_windows}/{judged} windows with hands ({judged}/{all_windows} windows had hands); "
            f"two-hand frames with wrists together: {two_hand_together}/{two_hand_frames}; "
            f"{time.monotonic() - start:.1f} s"
        )
    assert judged >= 0.6 * all_windows
    assert rubbing_windows >= 0.85 * judged
    assert two_hand_together >= 0.9 * two_hand_frames


def test_in_through_the_door_and_straight_back_out_is_no_opportunity():
    s = Script().frames(1, (1, 100, DOOR, at_sides)).frames(2, (1, walk(120, 500), (), at_sides))
    s.frames(2, (1, walk(500, 120), (), at_sides)).frames(1, (1, 100, DOOR, at_sides)).nobody(10)
    assert s.events == []


def test_staff_doing_long_bedside_care_are_not_taken_for_the_patient():
    s = entry(Script(), dispenser=0, rub=0)  # came in through the door, no hygiene: missed entry
    s.frames(300, (1, 900, BED, at_sides))  # five minutes of care at the bed
    leave(s, dispenser=0, rub=0, bed=0)
    assert [(e.type, e.data["entry"]) for e in s.events] == [("missed", True), ("missed", False)]
