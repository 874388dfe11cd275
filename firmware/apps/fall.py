"""Fall detection from pose over time, for the nurse on the ward. Pure: scenes in, events out.

The rule, as a clinician would read it: a person who was **standing** goes **down to the floor fast**
and **stays down**.
- Standing: torso within ``upright_angle`` of vertical, a box taller than wide, and at least
  ``standing_fraction`` of the tallest the person has looked upright in the last ``height_memory_seconds``
  (so kneeling or sitting upright is not standing). Standing samples of the last ``window_seconds`` are
  kept per person.
- Down: the torso near horizontal (``horizontal_angle`` from vertical, or a box ``horizontal_aspect``
  times wider than tall) with the body centre at least ``min_drop`` standing heights below where it was
  while standing, within ``window_seconds``. A slow lie-down takes longer than the window, so it is
  not a fall; sitting down keeps the torso upright, so it is not one either.
- Alert: down for ``confirm_seconds`` (a person bending to pick something up straightens again).
  Not raised while the person's body is in a bed zone, nor for someone next to a person already down
  (staff kneeling or bending beside the patient).
- Follow-ups: ``still_on_floor`` once after ``still_down_seconds``; ``resolved`` when the person has
  stood up for ``get_up_seconds`` or someone else has been beside them for ``attended_seconds``.
Events carry numbers only: drop (standing heights), descent speed (heights per second), time down.
"""

from __future__ import annotations

import math
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
    window_seconds: float = 2.5  # standing to down within this time is a fall
    min_drop: float = 0.3  # body-centre drop, in standing heights
    confirm_seconds: float = 1.0  # down this long before the alert
    still_down_seconds: float = 60.0  # follow-up while still on the floor
    get_up_seconds: float = 2.0  # standing this long resolves the incident
    attended_seconds: float = 5.0  # someone beside the person this long resolves it
    upright_angle: float = 30.0  # degrees from vertical
    standing_fraction: float = 0.8  # of the tallest upright height seen recently
    height_memory_seconds: float = 30.0
    horizontal_angle: float = 55.0  # degrees from vertical
    horizontal_aspect: float = 1.3  # box width / height
    keypoint_score: float = 0.2
    pose_tolerance_seconds: float = 0.5  # a pending fall survives this long without looking down
    handover_heights: float = 1.5  # a new track this close to a lost fallen person continues the incident
    bed_zones: frozenset[str] = frozenset()
    forget_seconds: float = 30.0  # drop state of people unseen this long


@dataclass(frozen=True)
class Posture:
    centre_y: float  # box centre, pixels (down is larger)
    height: float  # box height, pixels
    angle: float | None  # torso from vertical, degrees; None when shoulders or hips are unseen
    aspect: float  # box width / height


def posture(person: ScenePerson, min_score: float) -> Posture:
    p = person.track.person
    x1, y1, x2, y2 = p.box
    kp = p.keypoints
    angle = None
    sh, hp = kp[SHOULDERS], kp[HIPS]
    sh, hp = sh[sh[:, 2] >= min_score], hp[hp[:, 2] >= min_score]
    if len(sh) and len(hp):
        dx, dy = sh[:, :2].mean(axis=0) - hp[:, :2].mean(axis=0)
        angle = math.degrees(math.atan2(abs(float(dx)), -float(dy)))
    h = max(y2 - y1, 1.0)
    return Posture((y1 + y2) / 2, h, angle, (x2 - x1) / h)


@dataclass
class _Track:
    standing: deque[tuple[float, float, float]] = field(default_factory=deque)  # (t, centre_y, height)
    upright_heights: deque[tuple[float, float]] = field(default_factory=deque)  # (t, height)
    state: str = "up"  # up | pending | fallen
    down_since: float = 0.0
    drop: float = 0.0
    speed: float = 0.0
    fell_at: float = 0.0  # the last moment seen standing before the fall
    ref_height: float = 1.0
    up_since: float | None = None
    not_down_since: float | None = None
    attended_since: float | None = None
    followed_up: bool = False
    last_seen: float = 0.0
    centre: tuple[float, float] = (0.0, 0.0)


class FallApp:
    name = "fall"
    needs: frozenset[str] = frozenset()

    def __init__(self, config: FallConfig | None = None) -> None:
        self.config = config or FallConfig()
        self._tracks: dict[int, _Track] = {}

    def _handover(self, track_id: int, centre: tuple[float, float], t: float) -> _Track:
        """A new track lying where a fallen (or falling) person was lost continues that person's incident."""
        for tid, old in self._tracks.items():
            if (
                old.state in ("pending", "fallen")
                and t - old.last_seen > 0.2
                and math.dist(old.centre, centre) < self.config.handover_heights * old.ref_height
            ):
                del self._tracks[tid]
                return old
        return _Track()

    def is_upright(self, p: Posture) -> bool:
        return p.angle is not None and p.angle < self.config.upright_angle and p.aspect < 0.8

    def is_horizontal(self, p: Posture) -> bool:
        c = self.config
        return (p.angle is not None and p.angle >= c.horizontal_angle) or p.aspect >= c.horizontal_aspect

    def update(self, scene: Scene) -> list[AppEvent]:
        c, t = self.config, scene.time
        events: list[AppEvent] = []
        for person in scene.people:
            pose = posture(person, c.keypoint_score)
            x1, _, x2, _ = person.track.person.box
            if person.track_id not in self._tracks:
                self._tracks[person.track_id] = self._handover(person.track_id, ((x1 + x2) / 2, pose.centre_y), t)
            track = self._tracks[person.track_id]
            track.last_seen, track.centre = t, ((x1 + x2) / 2, pose.centre_y)
            standing = track.standing
            while standing and standing[0][0] < t - c.window_seconds:
                standing.popleft()
            if self.is_upright(pose):
                heights = track.upright_heights
                heights.append((t, pose.height))
                while heights[0][0] < t - c.height_memory_seconds:
                    heights.popleft()
                if pose.height >= c.standing_fraction * max(h for _, h in heights):
                    standing.append((t, pose.centre_y, pose.height))
            events += self._step(person, track, pose, scene)
        seen = {p.track_id for p in scene.people}
        for tid, track in list(self._tracks.items()):
            if tid in seen:
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

    def _down(self, track: _Track, pose: Posture) -> tuple[float, float, float] | None:
        """(drop, time last standing, standing height) if the person is down relative to a recent standing sample."""
        if not self.is_horizontal(pose) or not track.standing:
            return None
        # The last moment the person stood at least min_drop standing heights higher than now.
        qualifying = [s for s in track.standing if (pose.centre_y - s[1]) / s[2] >= self.config.min_drop]
        if not qualifying:
            return None
        t_ref, cy_ref, h_ref = max(qualifying, key=lambda s: s[0])
        return (pose.centre_y - cy_ref) / h_ref, t_ref, h_ref

    def _beside_someone_down(self, person: ScenePerson, track: _Track) -> bool:
        for tid, other in self._tracks.items():
            if tid != person.track_id and other.state == "fallen":
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

    def _step(self, person: ScenePerson, track: _Track, pose: Posture, scene: Scene) -> list[AppEvent]:
        c, t = self.config, scene.time
        in_bed = bool(person.zones & c.bed_zones)
        if track.state == "up":
            down = self._down(track, pose)
            if down and not in_bed and not self._beside_someone_down(person, track):
                track.state, track.down_since = "pending", t
                track.drop, track.fell_at, track.ref_height = down
                track.speed = track.drop / max(t - track.fell_at, 1e-3)
            return []
        if track.state == "pending":
            # Stays pending only while the person stays down (a short wobble of the pose estimate is tolerated).
            track.not_down_since = None if self.is_horizontal(pose) else (track.not_down_since or t)
            not_down_for = 0.0 if track.not_down_since is None else t - track.not_down_since
            if self.is_upright(pose) or in_bed or not_down_for >= c.pose_tolerance_seconds:
                track.state = "up"
            elif t - track.down_since >= c.confirm_seconds:
                track.state, track.followed_up = "fallen", False
                track.up_since = track.attended_since = None
                return [self._event(person, track, "fall", "critical", t)]
            return []
        # fallen
        track.up_since = (track.up_since or t) if self.is_upright(pose) else None
        track.attended_since = (track.attended_since or t) if self._someone_beside(person, track, scene) else None
        if track.up_since is not None and t - track.up_since >= c.get_up_seconds:
            track.state = "up"
            return [self._event(person, track, "resolved", "info", t, reason_got_up=True)]
        if track.attended_since is not None and t - track.attended_since >= c.attended_seconds:
            track.state = "up"
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
