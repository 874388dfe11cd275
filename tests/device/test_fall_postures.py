"""The fall rule against scripted posture sequences: synthetic people, no video, no model.

Each test scripts what the camera would see of a person (box and torso) through a realistic movement, at 10
frames a second (the falls also at 5), and checks the events. A fall is an unplanned descent to the floor from
standing, sitting or lying in bed; sitting down, lying down on a bed, bending, kneeling, exercising and staff
looking after a patient are not. Geometry: a standing person is ``H`` = 300 px tall with the torso 0.3 H and
the feet at y = 650; lying side-on the box is about H wide and 0.3 H tall with the torso 85 deg from vertical.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import pytest

from accelerators.types import KEYPOINT_INDEX, Person
from firmware.apps.base import AppEvent
from firmware.apps.fall import FallApp, FallConfig
from firmware.scene import Scene, ScenePerson
from firmware.tracking import TrackedPerson

H = 300.0  # standing height, pixels
FLOOR = 650.0  # box bottom of someone standing on the floor (their feet), pixels
X = 400.0  # where the person stands, pixels
RATES = [pytest.param(10.0, id="10fps"), pytest.param(5.0, id="5fps")]
BED = ("bed",)
BEDS = FallConfig(bed_zones=frozenset(BED))


@dataclass(frozen=True)
class Body:
    """What the rule sees of one person in one frame: the box and the shoulder-to-hip segment."""

    cx: float = X
    bottom: float = FLOOR  # the box's lower edge: the body's lowest point in the picture
    height: float = H  # box height
    width: float = 0.3 * H  # box width
    angle: float = 2.0  # torso from vertical in the picture, degrees (negative: leaning left)
    torso: float = 0.3 * H  # shoulder-to-hip length in the picture
    hip: float = 0.5  # the hips' height above the box bottom, as a share of the box height
    torso_seen: bool = True  # shoulders and hips detected

    @property
    def centre_y(self) -> float:
        return self.bottom - self.height / 2

    def person(self) -> Person:
        a = math.radians(self.angle)
        dx, dy = self.torso * math.sin(a), -self.torso * math.cos(a)
        hip = (self.cx - dx / 2, self.bottom - self.hip * self.height)  # the torso centred across the box
        kp = np.zeros((17, 3), np.float32)
        score = 0.9 if self.torso_seen else 0.0
        for side in ("left", "right"):
            kp[KEYPOINT_INDEX[f"{side}_hip"]] = (*hip, score)
            kp[KEYPOINT_INDEX[f"{side}_shoulder"]] = (hip[0] + dx, hip[1] + dy, score)
        box = (self.cx - self.width / 2, self.bottom - self.height, self.cx + self.width / 2, self.bottom)
        return Person(box, 0.8, kp)


def blend(a: Body, b: Body, f: float) -> Body:
    """``f`` of the way from posture ``a`` to posture ``b`` (0: a, 1: b)."""
    values = {k.name: getattr(a, k.name) + f * (getattr(b, k.name) - getattr(a, k.name)) for k in fields(Body)}
    values["torso_seen"] = b.torso_seen if f >= 0.5 else a.torso_seen
    return Body(**values)


# Postures, side-on unless said otherwise; heights above the floor in body heights.
STANDING = Body()
LEANING = Body(height=0.8 * H, width=0.45 * H, angle=35, hip=0.45)  # halfway through sitting down or getting up
SEATED = Body(height=0.7 * H, width=0.45 * H, angle=5, hip=0.37)  # on a chair: hips 0.26, head 0.7, feet down
SEATED_REACHING = Body(height=0.5 * H, width=0.6 * H, angle=75, hip=0.52)  # on a chair, a hand to the floor
ON_BED_EDGE = Body(height=0.72 * H, width=0.45 * H, angle=5, hip=0.42)  # sitting on the bed's edge, feet down
IN_BED = Body(bottom=FLOOR - 80, height=0.3 * H, width=H, angle=85)  # lying on the mattress, 0.3 above the floor
LYING = Body(cx=X + 150, bottom=FLOOR + 20, height=0.3 * H, width=H, angle=85)  # on the floor, head to the right
LYING_LEFT = replace(LYING, cx=X - 150, angle=-85)  # on the floor, head to the left
BENT = Body(height=0.55 * H, width=0.55 * H, angle=85, hip=0.9)  # bent over at the waist, legs straight
KNEELING = Body(height=0.72 * H, width=0.35 * H, angle=5, hip=0.35)  # upright on both knees
KNEELING_LEANING = Body(height=0.6 * H, width=0.45 * H, angle=45, hip=0.42)  # on the knees, leaning forward
ON_ALL_FOURS = Body(height=0.4 * H, width=0.7 * H, angle=80, hip=0.7)  # looking under the bed
CROUCHING = Body(height=0.55 * H, width=0.45 * H, angle=35, hip=0.35)  # on the way down to sit on the floor
SITTING_ON_FLOOR = Body(height=0.5 * H, width=0.6 * H, angle=12, hip=0.1)  # legs out, torso upright: wide box


@dataclass(frozen=True)
class Seen:
    """One person in one frame: track id, posture, zones."""

    body: Body
    track: int = 1
    zones: tuple[str, ...] = ()


class Script:
    """Plays frames to a FallApp at ``fps`` and keeps the events and each track's states."""

    def __init__(self, fps: float = 10.0, config: FallConfig | None = None) -> None:
        self.fps, self.app, self.t = fps, FallApp(config), 0.0
        self.events: list[AppEvent] = []
        self.states: dict[int, set[str]] = {}
        self.started: float | None = None  # when the descent began

    def frames(self, seconds: float, scene_at: Callable[[float], Sequence[Seen]]) -> Script:
        """``scene_at(progress)`` for progress from 1/n to 1 over the n frames of ``seconds``."""
        n = max(1, round(seconds * self.fps))
        for i in range(1, n + 1):
            seen = scene_at(i / n)
            tracks = [(s, TrackedPerson(s.track, s.body.person(), age=1.0, hits=10)) for s in seen]
            people = tuple(ScenePerson(track, frozenset(s.zones)) for s, track in tracks)
            self.events += self.app.update(Scene(self.t, (1280, 720), people))
            for s in seen:
                self.states.setdefault(s.track, set()).add(self.app._tracks[s.track].state)
            self.t += 1 / self.fps
        return self

    def hold(self, seconds: float, body: Body, track: int = 1, zones: tuple[str, ...] = ()) -> Script:
        return self.frames(seconds, lambda f: [Seen(body, track, zones)])

    def move(self, seconds: float, start: Body, end: Body, track: int = 1, zones: tuple[str, ...] = ()) -> Script:
        return self.frames(seconds, lambda f: [Seen(blend(start, end, f), track, zones)])

    def gone(self, seconds: float) -> Script:
        return self.frames(seconds, lambda f: [])

    def descent_starts(self) -> Script:
        self.started = self.t
        return self

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def the_fall(self) -> AppEvent:
        """The one event, a fall, raised within 3 s of the descent starting."""
        assert self.types() == ["fall"]
        (fall,) = self.events
        assert fall.severity == "critical"
        assert self.started is not None and 0.0 < fall.time - self.started <= 3.0
        return fall


# Falls: exactly one `fall`, within 3 s of the descent starting.


@pytest.mark.parametrize("fps", RATES)
@pytest.mark.parametrize("lying", [LYING, LYING_LEFT], ids=["forward", "sideways"])
def test_a_fall_from_standing_to_the_floor_alerts_once(fps, lying):
    s = Script(fps).hold(3, STANDING).descent_starts()
    s.move(0.3, STANDING, blend(STANDING, lying, 0.2))  # the trip: a stumble, still upright-ish
    s.move(0.5, blend(STANDING, lying, 0.2), lying).hold(5, lying)
    fall = s.the_fall()
    assert fall.track_id == 1 and fall.data["drop_heights"] >= 0.3


@pytest.mark.parametrize("fps", RATES)
def test_a_fall_backwards_along_the_line_of_sight_alerts_though_the_torso_stays_upright_in_the_picture(fps):
    # falling straight away from the camera, arms flung out: the torso stays vertical in the picture but
    # shrinks to 35 % of its length, and the box gets short (feet near, head far)
    on_back = Body(bottom=FLOOR + 10, height=0.35 * H, width=0.45 * H, angle=6, torso=0.35 * 0.3 * H)
    s = Script(fps).hold(3, STANDING).descent_starts().move(0.8, STANDING, on_back).hold(5, on_back)
    assert s.the_fall().data["drop_heights"] >= 0.2


@pytest.mark.parametrize("fps", RATES)
def test_a_faint_backwards_along_the_line_of_sight_with_the_arms_at_the_sides_alerts(fps):
    # the same fall, arms by the body: the box is only shoulder-wide (0.25 H) and 0.38 H tall
    on_back = Body(bottom=FLOOR + 10, height=0.38 * H, width=0.25 * H, angle=6, torso=0.35 * 0.3 * H)
    s = Script(fps).hold(3, STANDING).descent_starts().move(0.8, STANDING, on_back).hold(5, on_back)
    s.the_fall()


@pytest.mark.parametrize("fps", RATES)
def test_sliding_off_a_chair_onto_the_floor_alerts_for_someone_only_ever_seen_seated(fps):
    # watching starts with the person seated (box 0.7 H, torso upright: body height from the torso);
    # they slump sideways off the chair: the centre drops about 0.27 H
    s = Script(fps).hold(5, SEATED).descent_starts().move(1.0, SEATED, LYING).hold(5, LYING)
    fall = s.the_fall()
    assert 0.25 <= fall.data["drop_heights"] <= 0.3


@pytest.mark.parametrize("fps", RATES)
def test_sliding_off_the_bed_edge_onto_the_floor_alerts(fps):
    # seated on the bed's edge (hips in the bed zone, feet on the floor), slides forward off it
    s = Script(fps, BEDS).hold(5, ON_BED_EDGE, zones=BED).descent_starts()
    s.move(0.3, ON_BED_EDGE, blend(ON_BED_EDGE, LYING, 0.3), zones=BED)  # the hips leave the mattress
    s.move(0.7, blend(ON_BED_EDGE, LYING, 0.3), LYING).hold(5, LYING)
    s.the_fall()


@pytest.mark.parametrize("fps", RATES)
def test_rolling_out_of_bed_onto_the_floor_alerts(fps):
    # lying in the bed zone (up), rolls over the near edge: out of the zone by the time the body drops
    on_floor = replace(IN_BED, bottom=FLOOR + 20)
    s = Script(fps, BEDS).hold(5, IN_BED, zones=BED).descent_starts()
    s.move(0.2, IN_BED, blend(IN_BED, on_floor, 0.4), zones=BED)
    s.move(0.3, blend(IN_BED, on_floor, 0.4), on_floor).hold(5, on_floor)
    assert s.the_fall().data["drop_heights"] >= 0.3


@pytest.mark.parametrize("fps", RATES)
def test_sliding_out_of_bed_feet_first_onto_the_floor_alerts(fps):
    # lying in the bed zone, swings the legs over the edge (feet on the floor, torso still on the mattress),
    # the hips slide off while a shoulder is still on the mattress's edge (in the zone: one keypoint is enough),
    # then the whole body is on the floor beside the bed, outside the zone: most of the time down is outside
    # the bed zone, so the frame or two with a shoulder still on the mattress do not make it a descent onto the bed.
    legs_over = Body(bottom=FLOOR + 20, height=190, width=0.8 * H, angle=80, hip=140 / 190)  # centre 0.17 H lower
    sliding = Body(bottom=FLOOR + 20, height=160, width=0.9 * H, angle=60, hip=0.5)  # centre 0.22 H lower
    on_floor = replace(IN_BED, bottom=FLOOR + 20)
    s = Script(fps, BEDS).hold(5, IN_BED, zones=BED).descent_starts()
    s.move(0.5, IN_BED, legs_over, zones=BED).move(0.6, legs_over, sliding, zones=BED)
    s.move(0.4, sliding, on_floor).hold(5, on_floor)
    s.the_fall()


@pytest.mark.parametrize("fps", RATES)
def test_a_sideways_fall_alerts_once_though_the_tracker_changes_the_id_mid_descent(fps):
    # track 1 falls, is lost as its box turns from tall to wide, and track 2 appears nearby lying
    s = Script(fps).hold(3, STANDING).descent_starts()
    s.move(0.3, STANDING, blend(STANDING, LYING_LEFT, 0.4), track=1)
    s.gone(0.1)
    s.move(0.4, blend(STANDING, LYING_LEFT, 0.6), LYING_LEFT, track=2).hold(5, LYING_LEFT, track=2)
    assert s.the_fall().track_id == 2


@pytest.mark.parametrize("fps", RATES)
def test_a_fall_in_a_floor_zone_alerts_though_the_feet_seem_lifted(fps):
    # falling away from the camera: the body ends farther off, higher in the picture, so its lowest point
    # is 0.17 H above where the feet stood, which reads as landing on furniture, but it is in the floor zone
    far = Body(cx=X + 120, bottom=FLOOR - 50, height=70, width=0.9 * H, angle=85, torso=0.27 * H)

    def fall(config: FallConfig) -> Script:
        s = Script(fps, config).hold(3, STANDING).descent_starts()
        s.move(0.4, STANDING, blend(STANDING, far, 0.5)).move(0.4, blend(STANDING, far, 0.5), far, zones=("floor",))
        return s.hold(5, far, zones=("floor",))

    fall(FallConfig(floor_zones=frozenset({"floor"}))).the_fall()
    assert fall(FallConfig()).types() == []  # without the zone: furniture (what the floor zone is for)


# Not falls: no `fall` event.


def test_sitting_down_fast_on_a_chair_is_not_a_fall():
    s = Script().hold(3, STANDING).move(0.25, STANDING, LEANING).move(0.25, LEANING, SEATED).hold(8, SEATED)
    assert s.types() == []


def test_sitting_down_on_the_bed_edge_is_not_a_fall():
    s = Script(config=BEDS).hold(3, STANDING).move(0.3, STANDING, LEANING)
    s.move(0.3, LEANING, ON_BED_EDGE, zones=BED).hold(8, ON_BED_EDGE, zones=BED)
    assert s.types() == []


def test_sitting_down_on_the_floor_on_purpose_is_not_a_fall():
    # crouch, then sit with the legs out: a wide, low box (0.6 x 0.5 H) but the torso upright
    s = Script().hold(3, STANDING).move(1.0, STANDING, CROUCHING).move(1.0, CROUCHING, SITTING_ON_FLOOR)
    s.hold(10, SITTING_ON_FLOOR)
    assert s.types() == []


def test_lying_down_on_the_bed_in_a_bed_zone_is_not_a_fall():
    # sits on the edge, then lies back and swings the legs up within a second; the bed is nearer the camera,
    # so the lying body's centre is 0.22 H below the standing one and its lowest point is not lifted
    in_bed = replace(IN_BED, bottom=FLOOR - 40)
    s = Script(config=BEDS).hold(3, STANDING).move(0.6, STANDING, ON_BED_EDGE, zones=BED)
    s.move(0.8, ON_BED_EDGE, in_bed, zones=BED).hold(8, in_bed, zones=BED)
    assert s.types() == []
    assert "pending" in s.states[1]  # it did look like a descent: the bed zone is what tells


def test_dropping_backwards_onto_a_bed_with_the_feet_going_up_is_not_a_fall_without_zones():
    # no zones configured: sits and falls back onto the mattress in 0.7 s, feet off the floor; side-on from
    # a low camera the lying box is 0.18 H tall and its lowest point 0.2 H above where the feet stood
    on_bed = Body(bottom=FLOOR - 0.2 * H, height=0.18 * H, width=H, angle=80)
    s = Script().hold(3, STANDING).move(0.3, STANDING, ON_BED_EDGE).move(0.4, ON_BED_EDGE, on_bed)
    s.hold(8, on_bed)
    assert s.types() == []
    assert "pending" in s.states[1]  # the centre did drop 0.2 H: the lifted feet are what tell


def test_bending_to_pick_something_up_and_straightening_within_a_second_is_not_a_fall():
    s = Script().hold(3, STANDING).move(0.4, STANDING, BENT).hold(0.4, BENT).move(0.4, BENT, STANDING)
    s.hold(3, STANDING)
    assert s.types() == []
    assert "pending" in s.states[1]  # torso horizontal and 0.22 H lower: a candidate, but not for long enough


def test_bending_over_for_a_few_seconds_to_gather_things_from_the_floor_is_not_a_fall():
    s = Script().hold(3, STANDING).move(0.4, STANDING, BENT).hold(3, BENT).move(0.4, BENT, STANDING)
    s.hold(3, STANDING)
    assert s.types() == []


def test_kneeling_for_a_while_is_not_a_fall():
    # kneels, stays upright on the knees, leans forward, then goes on all fours to look under the bed
    s = Script().hold(3, STANDING).move(0.6, STANDING, LEANING).move(0.6, LEANING, KNEELING).hold(10, KNEELING)
    s.move(0.5, KNEELING, KNEELING_LEANING).hold(3, KNEELING_LEANING)
    s.move(0.5, KNEELING_LEANING, ON_ALL_FOURS).hold(3, ON_ALL_FOURS).move(0.8, ON_ALL_FOURS, KNEELING)
    s.move(0.6, KNEELING, LEANING).move(0.6, LEANING, STANDING).hold(3, STANDING)
    assert s.types() == []


def test_ten_chair_squats_are_not_a_fall():
    s = Script().hold(3, STANDING)
    for _ in range(10):
        s.move(0.4, STANDING, LEANING).move(0.4, LEANING, SEATED).hold(0.3, SEATED)
        s.move(0.4, SEATED, LEANING).move(0.4, LEANING, STANDING).hold(0.3, STANDING)
    assert s.types() == []


def test_a_person_already_lying_still_when_watching_starts_is_not_a_fall():
    # on the floor from the first frame, shifting a little and rolling from one side to the other
    shifted, other_side = replace(LYING, angle=88, bottom=FLOOR + 25), replace(LYING, angle=-85)
    s = Script().hold(10, LYING).move(1.0, LYING, shifted).move(1.5, shifted, other_side).hold(10, other_side)
    assert s.types() == []


def _patient_down_and_nurse_arriving() -> tuple[Script, Body]:
    """A patient falls (one alert); a nurse walks in from the right to stand beside them."""
    s = Script().hold(3, STANDING).move(0.8, STANDING, LYING).hold(2, LYING)
    assert s.types() == ["fall"]
    nurse_by = replace(STANDING, cx=LYING.cx + 200)
    far = replace(nurse_by, cx=1150)
    s.frames(2, lambda f: [Seen(LYING), Seen(blend(far, nurse_by, f), 2)])
    return s, nurse_by


def test_a_nurse_bending_over_and_kneeling_beside_a_patient_already_down_raises_no_second_fall():
    s, nurse = _patient_down_and_nurse_arriving()
    bent, kneeling = replace(BENT, cx=nurse.cx), replace(KNEELING, cx=nurse.cx)
    s.frames(0.5, lambda f: [Seen(LYING), Seen(blend(nurse, bent, f), 2)])  # bends over the patient fast
    s.frames(2, lambda f: [Seen(LYING), Seen(bent, 2)])
    s.frames(0.8, lambda f: [Seen(LYING), Seen(blend(bent, kneeling, f), 2)])  # kneels beside them
    s.frames(4, lambda f: [Seen(LYING), Seen(kneeling, 2)])
    assert s.types().count("fall") == 1 and s.events[0].track_id == 1
    assert "pending" not in s.states[2]


def test_a_nurse_standing_up_and_bending_over_again_to_help_the_patient_up_raises_no_second_fall():
    s, nurse = _patient_down_and_nurse_arriving()
    kneeling, bent = replace(KNEELING, cx=nurse.cx), replace(BENT, cx=nurse.cx)
    s.frames(0.8, lambda f: [Seen(LYING), Seen(blend(nurse, kneeling, f), 2)])
    s.frames(6, lambda f: [Seen(LYING), Seen(kneeling, 2)])  # beside the patient 5 s: the incident is resolved
    assert s.types() == ["fall", "resolved"]
    s.frames(0.8, lambda f: [Seen(LYING), Seen(blend(kneeling, nurse, f), 2)])
    s.frames(0.4, lambda f: [Seen(LYING), Seen(blend(nurse, bent, f), 2)])  # bends over to help them up
    s.frames(3, lambda f: [Seen(LYING), Seen(bent, 2)])
    assert s.types().count("fall") == 1


def test_a_seated_person_reaching_down_to_the_floor_is_not_a_fall():
    # seated for a while, bends forward to pick something off the floor for 3 s: the centre drops 0.1 H
    s = Script().hold(5, SEATED).move(0.6, SEATED, SEATED_REACHING).hold(3, SEATED_REACHING)
    s.move(0.6, SEATED_REACHING, SEATED).hold(3, SEATED)
    assert s.types() == []


def test_sitting_down_and_straight_away_reaching_for_the_shoes_is_not_a_fall():
    s = Script().hold(3, STANDING).move(0.4, STANDING, LEANING).move(0.4, LEANING, SEATED).hold(0.5, SEATED)
    s.move(0.5, SEATED, SEATED_REACHING).hold(3, SEATED_REACHING).move(0.6, SEATED_REACHING, SEATED)
    s.hold(3, SEATED)
    assert s.types() == []
