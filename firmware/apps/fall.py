"""Fall detection from pose over time, for the nurse on the ward. Pure: scenes in, events out.

What counts is the clinical definition hospitals report against (NDNQI): an unplanned descent **to the floor**
from any posture (standing, walking, sitting on a chair or the bed's edge, or lying in bed). The rule, as a
clinician would read it: a person who was **up** (standing or sitting upright; or lying in a bed zone) comes
**down fast**, ends **on the floor** and **stays down**.
- Body height ``H``: the person's height in pixels while up: the tallest upright box, or the typical torso
  length divided by ``torso_share`` when that is larger (a seated box is short), over the last
  ``height_memory_seconds``. Every distance below is in body heights.
- Up: the torso within ``upright_angle`` of vertical, not foreshortened, and the box taller than wide (standing
  or sitting), or lying inside a bed zone. Up samples of the last ``window_seconds`` are kept per person.
- Down: lying, i.e. the torso ``horizontal_angle`` or more from vertical, or foreshortened to under
  ``foreshortened`` of its upright length (lying along the line of sight: a torso pointing at or away from the
  camera looks short and upright), or, with the torso unseen, a box ``horizontal_aspect`` times wider than tall;
  with the body centre at least ``min_drop`` body heights lower than it was while up, within ``window_seconds``.
  Sitting down keeps the torso upright (a wide box alone, legs out on the floor, is not lying); lying down slowly
  takes longer than the window.
- On the floor, not on furniture: a descent that leaves the body's lowest point ``furniture_heights`` or more
  above where the person's feet were while up (the feet went up onto a bed or a sofa), or that ends inside a bed
  zone, is a descent onto furniture: not a fall by the definition, and no event at all (lying down on a bed
  must stay silent, and the two look alike). Inside a floor zone the body is on the floor whatever the picture
  says.
- Alert: down for ``confirm_seconds`` and not up for ``settle_seconds`` since the descent began (a person
  bending to pick something up straightens again within about a second), and not bent in place: a box still
  ``bent_height`` of the body height tall with the feet within ``feet_still`` of where they stood is someone
  bending over or kneeling, however long they stay. Not raised for someone next to a person who is down
  (staff kneeling or bending beside the patient, also after their presence resolved the incident).
- One person, whichever track: the tracker may lose a person in a fast fall; a new track appearing within
  ``handover_heights`` of where a person was lost in the last ``handover_seconds`` continues that person's
  history, so the fall is seen whatever id the descent ends under.
- Follow-ups: ``still_on_floor`` once after ``still_down_seconds``; ``resolved`` when the person has
  stood up for ``get_up_seconds`` or someone else has been beside them for ``attended_seconds``.
Events carry numbers only: drop (body heights), descent speed (heights per second), time down.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from accelerators.types import KEYPOINT_INDEX
from firmware.apps.base import AppEvent
from firmware.scene import Scene, ScenePerson
from wardsight.wire import Severity

SHOULDERS = [KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_shoulder"]]
HIPS = [KEYPOINT_INDEX["left_hip"], KEYPOINT_INDEX["right_hip"]]


@dataclass(frozen=True)
class FallConfig:
    window_seconds: float = 2.5  # up to down within this time is a fall
    min_drop: float = 0.2  # body-centre drop, in body heights (sitting on a chair to the floor is about 0.25-0.3)
    confirm_seconds: float = 0.5  # down at least this long before the alert (a stumble or a pose wobble is shorter)
    settle_seconds: float = 1.5  # and not up for this long since the descent began (bending to pick up and
    # straightening again takes about a second)
    still_down_seconds: float = 60.0  # follow-up while still on the floor
    get_up_seconds: float = 2.0  # standing this long resolves the incident
    attended_seconds: float = 5.0  # someone beside the person this long resolves it
    upright_angle: float = 30.0  # degrees from vertical
    standing_fraction: float = 0.8  # of the body height: an upright box this tall is standing (gets up)
    height_memory_seconds: float = 30.0
    torso_share: float = 0.3  # shoulder-to-hip length as a share of body height (adults: about 0.3)
    horizontal_angle: float = 55.0  # degrees from vertical
    horizontal_aspect: float = 1.3  # box width / height, when the torso is not seen
    foreshortened: float = 0.5  # torso under this share of its upright length: lying along the line of sight
    furniture_heights: float = 0.15  # lowest point this far above where the feet were: landed on furniture
    bent_height: float = 0.5  # a box still this tall (of the body height) with the feet where they stood is
    feet_still: float = 0.1  # ... someone bending over or kneeling, not lying (feet within this, body heights)
    keypoint_score: float = 0.2
    pose_tolerance_seconds: float = 0.5  # a pending fall survives this long without looking down
    handover_seconds: float = 2.0  # a new track near a person lost this recently is that person
    handover_heights: float = 1.5  # ... within this many body heights of where they were lost
    bed_zones: frozenset[str] = frozenset()
    floor_zones: frozenset[str] = frozenset()
    forget_seconds: float = 30.0  # state of people unseen this long


@dataclass(frozen=True)
class Posture:
    centre_y: float  # box centre, pixels (down is larger)
    bottom: float  # box bottom, pixels: the body's lowest point in the picture
    height: float  # box height, pixels
    angle: float | None  # torso from vertical, degrees; None when shoulders or hips are unseen
    aspect: float  # box width / height
    torso: float | None  # shoulder-to-hip length, pixels; None when unseen


def posture(person: ScenePerson, min_score: float) -> Posture:
    p = person.track.person
    x1, y1, x2, y2 = p.box
    kp = p.keypoints
    angle = torso = None
    sh, hp = kp[SHOULDERS], kp[HIPS]
    sh, hp = sh[sh[:, 2] >= min_score], hp[hp[:, 2] >= min_score]
    if len(sh) and len(hp):
        dx, dy = sh[:, :2].mean(axis=0) - hp[:, :2].mean(axis=0)
        angle = math.degrees(math.atan2(abs(float(dx)), -float(dy)))
        torso = math.hypot(float(dx), float(dy))
    h = max(y2 - y1, 1.0)
    return Posture((y1 + y2) / 2, y2, h, angle, (x2 - x1) / h, torso)


@dataclass
class _Track:
    up: deque[tuple[float, float, float]] = field(default_factory=deque)  # (t, centre_y, bottom) while up
    # (t, upright box height, torso length / torso_share), pixels, while up
    heights: deque[tuple[float, float, float]] = field(default_factory=deque)
    state: str = "up"  # up | pending | fallen
    down_since: float = 0.0
    drop: float = 0.0
    speed: float = 0.0
    fell_at: float = 0.0  # the last moment seen up before the fall
    centre_before: float = 0.0  # box centre then, pixels
    feet_before: float = 0.0  # box bottom then, pixels
    bottoms: list[float] = field(default_factory=list)  # box bottoms while pending
    zone_votes: list[str] = field(default_factory=list)  # per frame down: "floor", "bed" or "" (neither)
    ref_height: float = 1.0
    up_since: float | None = None
    not_down_since: float | None = None
    attended_since: float | None = None
    followed_up: bool = False
    attended_down: bool = False  # resolved by someone beside them while still down: others near them are helping
    last_seen: float = 0.0
    centre: tuple[float, float] = (0.0, 0.0)

    def body_height(self) -> float:
        """The tallest upright box, or the torso's typical length / torso_share if larger (a seated box is short)."""
        boxes = max((box for _, box, _ in self.heights), default=0.0)
        torsos = [torso for _, _, torso in self.heights if torso > 0]
        return max(boxes, statistics.median(torsos) if torsos else 0.0, 1.0)


class FallApp:
    name = "fall"
    needs: frozenset[str] = frozenset()

    def __init__(self, config: FallConfig | None = None) -> None:
        self.config = config or FallConfig()
        self._tracks: dict[int, _Track] = {}

    def _handover(self, centre: tuple[float, float], t: float, in_view: set[int]) -> _Track:
        """A new track where a person was lost moments ago (or where a fallen person lies) is that person."""
        c = self.config
        candidates = [
            (math.dist(old.centre, centre) / old.body_height(), tid)
            for tid, old in self._tracks.items()
            if tid not in in_view and (t - old.last_seen <= c.handover_seconds or old.state in ("pending", "fallen"))
        ]
        near = [(distance, tid) for distance, tid in candidates if distance < c.handover_heights]
        if near:
            return self._tracks.pop(min(near)[1])
        return _Track()

    def is_upright(self, p: Posture, body_height: float | None = None) -> bool:
        """Standing or sitting: the torso near vertical, the box taller than wide, and (once the body height is
        known) the torso not foreshortened (a short upright-looking torso lies along the line of sight)."""
        c = self.config
        if p.angle is None or p.torso is None or p.angle >= c.upright_angle or p.aspect >= 0.8:
            return False
        return not body_height or p.torso >= c.foreshortened * c.torso_share * body_height

    def is_horizontal(self, p: Posture, body_height: float | None = None) -> bool:
        """Lying: the torso near horizontal in the picture, or foreshortened to under ``foreshortened`` of its
        upright length (lying along the line of sight: a torso pointing at or away from the camera looks short
        and upright). The box's shape decides only when the torso is not seen: someone sitting on the floor
        with their legs out has a wide box and an upright torso."""
        c = self.config
        if p.angle is None or p.torso is None:
            return p.aspect >= c.horizontal_aspect
        upright_torso = c.torso_share * body_height if body_height else None
        return p.angle >= c.horizontal_angle or (
            upright_torso is not None and p.torso < c.foreshortened * upright_torso
        )

    def update(self, scene: Scene) -> list[AppEvent]:
        c, t = self.config, scene.time
        events: list[AppEvent] = []
        in_view = {p.track_id for p in scene.people}
        for person in scene.people:
            pose = posture(person, c.keypoint_score)
            x1, _, x2, _ = person.track.person.box
            centre = ((x1 + x2) / 2, pose.centre_y)
            if person.track_id not in self._tracks:
                self._tracks[person.track_id] = self._handover(centre, t, in_view)
            track = self._tracks[person.track_id]
            track.last_seen, track.centre = t, centre
            self._observe(track, person, pose, t)
            events += self._step(person, track, pose, scene)
        for tid, track in list(self._tracks.items()):
            if tid in in_view:
                continue
            if track.state == "fallen":
                # Out of sight after a fall: the follow-up still goes out; the incident is kept until then.
                if not track.followed_up and t - track.down_since >= c.still_down_seconds:
                    track.followed_up = True
                    events.append(self._event(None, track, "still_on_floor", "critical", t, track_id=tid))
                if track.followed_up and t - track.last_seen > c.forget_seconds:
                    del self._tracks[tid]
            elif t - track.last_seen > c.forget_seconds:
                del self._tracks[tid]
        return events

    def _observe(self, track: _Track, person: ScenePerson, pose: Posture, t: float) -> None:
        """Keeps the up samples of the last window and the body height seen while up."""
        c = self.config
        while track.heights and track.heights[0][0] < t - c.height_memory_seconds:
            track.heights.popleft()
        while track.up and track.up[0][0] < t - c.window_seconds:
            track.up.popleft()
        upright = self.is_upright(pose, track.body_height() if track.heights else None)
        if upright or (bool(person.zones & c.bed_zones) and self.is_horizontal(pose, track.body_height())):
            track.up.append((t, pose.centre_y, pose.bottom))
            track.heights.append((t, pose.height if upright else 0.0, (pose.torso or 0.0) / c.torso_share))

    def _down(self, track: _Track, pose: Posture) -> tuple[float, float, float, float] | None:
        """(drop, time last up, centre then, feet then) if the person is down well below a recent up sample."""
        if not track.up or not self.is_horizontal(pose, track.body_height()):
            return None
        height = track.body_height()
        # The last moment the person was up at least min_drop body heights higher than now.
        qualifying = [u for u in track.up if (pose.centre_y - u[1]) / height >= self.config.min_drop]
        if not qualifying:
            return None
        t_ref, cy_ref, bottom_ref = max(qualifying, key=lambda u: u[0])
        return (pose.centre_y - cy_ref) / height, t_ref, cy_ref, bottom_ref

    def _beside_someone_down(self, person: ScenePerson, track: _Track) -> bool:
        for tid, other in self._tracks.items():
            if tid != person.track_id and (other.state == "fallen" or other.attended_down):
                d = math.dist(track.centre, other.centre)
                if d < 1.5 * other.ref_height:
                    return True
        return False

    def _someone_beside(self, person: ScenePerson, track: _Track, scene: Scene) -> bool:
        for other in scene.people:
            if other.track_id != person.track_id:
                ox1, oy1, ox2, oy2 = other.track.person.box
                if math.dist(track.centre, ((ox1 + ox2) / 2, (oy1 + oy2) / 2)) < 1.5 * track.ref_height:
                    return True
        return False

    def _bent_in_place(self, track: _Track, pose: Posture) -> bool:
        """Still tall, feet where they stood: bending over or kneeling (held as long as it takes), not lying."""
        c = self.config
        feet_moved = abs(pose.bottom - track.feet_before) / track.ref_height
        return pose.height >= c.bent_height * track.ref_height and feet_moved <= c.feet_still

    def _zone_vote(self, person: ScenePerson) -> str:
        c = self.config
        return "floor" if person.zones & c.floor_zones else "bed" if person.zones & c.bed_zones else ""

    def _on_furniture(self, track: _Track) -> bool:
        """Ended on a bed or a sofa: in a bed zone, or the body's lowest point stayed well above where the feet were."""
        votes = track.zone_votes  # where the zones say the body lay for most of the time down, if they say
        if 2 * votes.count("bed") > len(votes):
            return True
        if 2 * votes.count("floor") > len(votes):
            return False
        lifted = (track.feet_before - statistics.median(track.bottoms)) / track.ref_height
        return lifted >= self.config.furniture_heights

    def _step(self, person: ScenePerson, track: _Track, pose: Posture, scene: Scene) -> list[AppEvent]:
        c, t = self.config, scene.time
        if track.state == "up":
            if track.attended_down and self.is_upright(pose, track.ref_height):
                track.attended_down = False  # back on their feet (or sat up): no longer the patient on the floor
            down = self._down(track, pose)
            if down and not self._beside_someone_down(person, track):
                track.state, track.down_since = "pending", t
                track.drop, track.fell_at, track.centre_before, track.feet_before = down
                track.ref_height = track.body_height()
                track.speed = track.drop / max(t - track.fell_at, 1e-3)
                track.bottoms, track.zone_votes = [pose.bottom], [self._zone_vote(person)]
            return []
        if track.state == "pending":
            # Stays pending only while the person stays down (a short wobble of the pose estimate is tolerated).
            horizontal = self.is_horizontal(pose, track.ref_height)
            track.not_down_since = None if horizontal else (track.not_down_since or t)
            not_down_for = 0.0 if track.not_down_since is None else t - track.not_down_since
            if horizontal:
                track.drop = max(track.drop, (pose.centre_y - track.centre_before) / track.ref_height)
                track.bottoms.append(pose.bottom)
                track.zone_votes.append(self._zone_vote(person))
            if self.is_upright(pose, track.ref_height) or not_down_for >= c.pose_tolerance_seconds:
                track.state = "up"
            elif (
                t - track.down_since >= c.confirm_seconds
                and t - track.fell_at >= c.settle_seconds
                and not self._bent_in_place(track, pose)
            ):
                if self._on_furniture(track):  # not a fall (NDNQI): lying on a bed or a sofa now
                    track.state = "up"
                    track.up.clear()
                    return []
                track.state, track.followed_up = "fallen", False
                track.up_since = track.attended_since = None
                return [self._event(person, track, "fall", "critical", t)]
            return []
        # fallen
        standing = self.is_upright(pose, track.ref_height) and pose.height >= c.standing_fraction * track.ref_height
        track.up_since = (track.up_since or t) if standing else None
        track.attended_since = (track.attended_since or t) if self._someone_beside(person, track, scene) else None
        if track.up_since is not None and t - track.up_since >= c.get_up_seconds:
            track.state = "up"
            return [self._event(person, track, "resolved", "info", t, reason_got_up=True)]
        if track.attended_since is not None and t - track.attended_since >= c.attended_seconds:
            track.state, track.attended_down = "up", True
            return [self._event(person, track, "resolved", "info", t, reason_got_up=False)]
        if not track.followed_up and t - track.down_since >= c.still_down_seconds:
            track.followed_up = True
            return [self._event(person, track, "still_on_floor", "critical", t)]
        return []

    def _event(
        self,
        person: ScenePerson | None,
        track: _Track,
        kind: str,
        severity: Severity,
        t: float,
        reason_got_up: bool | None = None,
        track_id: int | None = None,
    ) -> AppEvent:
        data: dict[str, float | int | bool] = {
            "drop_heights": round(track.drop, 2),
            "descent_speed": round(track.speed, 2),
            "seconds_down": round(t - track.down_since, 1),
            "seconds_since_fall": round(t - track.fell_at, 1),
        }
        if reason_got_up is not None:
            data["got_up"] = reason_got_up
        if person is None:
            data["in_view"] = False
        return AppEvent(
            app="fall",
            type=kind,
            time=t,
            severity=severity,
            track_id=person.track_id if person is not None else track_id,
            confidence=round(float(np.clip(person.score, 0.0, 1.0)), 3) if person is not None else None,
            data=data,
        )
