"""Bed-exit warning for high fall-risk rooms: the patient sits up and swings the legs over the edge.

Per room policy (the agent adds this app only where it is enabled). For a person who has been lying
in the bed (hips in the bed polygon, torso within ``lying_angle`` of horizontal) during the last
``memory_seconds``: when the torso comes upright (``sitting_angle`` from vertical) with the hips still in
the bed, and a knee or an ankle is seen outside the bed polygon, one ``bed_exit`` warning is raised:
before the patient stands. It re-arms once the person lies down again. A visitor sitting on the edge
of the bed never lay in it, so it is not warned about. Pure: scenes in, events out.
"""

from __future__ import annotations

from dataclasses import dataclass

from accelerators.types import KEYPOINT_INDEX
from firmware.apps.base import AppEvent
from firmware.apps.fall import posture
from firmware.scene import Scene
from firmware.zones import points_inside

LEGS = ("left_knee", "right_knee", "left_ankle", "right_ankle")


@dataclass(frozen=True)
class BedExitConfig:
    bed_polygon: tuple[tuple[float, float], ...]  # frame-relative x, y of the bed (mattress) area
    lying_angle: float = 55.0  # torso at least this many degrees from vertical counts as lying
    sitting_angle: float = 35.0  # torso within this many degrees of vertical counts as sitting up
    memory_seconds: float = 600.0  # how long ago the person may have been lying in the bed
    keypoint_score: float = 0.3


@dataclass
class _State:
    lay_at: float | None = None  # last time seen lying in the bed
    warned: bool = False
    last_seen: float = 0.0


class BedExitApp:
    name = "bed_exit"
    needs: frozenset[str] = frozenset()

    def __init__(self, config: BedExitConfig) -> None:
        self.config = config
        self._states: dict[int, _State] = {}
        self._legs = [KEYPOINT_INDEX[k] for k in LEGS]
        self._hips = [KEYPOINT_INDEX["left_hip"], KEYPOINT_INDEX["right_hip"]]

    def update(self, scene: Scene) -> list[AppEvent]:
        c, t = self.config, scene.time
        events: list[AppEvent] = []
        for tid in [tid for tid, st in self._states.items() if t - st.last_seen > c.memory_seconds]:
            del self._states[tid]  # tracks long gone
        for sp in scene.people:
            state = self._states.setdefault(sp.track_id, _State())
            state.last_seen = t
            kp = sp.track.person.keypoints
            hips = kp[self._hips]
            hips = hips[hips[:, 2] >= c.keypoint_score]
            pose = posture(sp, c.keypoint_score)
            if not len(hips) or not any(points_inside(c.bed_polygon, scene.frame_size, hips)) or pose.angle is None:
                continue
            if pose.angle >= c.lying_angle:
                state.lay_at, state.warned = t, False
                continue
            if state.warned or state.lay_at is None or t - state.lay_at > c.memory_seconds:
                continue
            if pose.angle > c.sitting_angle:
                continue
            legs = kp[self._legs]
            legs = legs[legs[:, 2] >= c.keypoint_score]
            outside = sum(not inside for inside in points_inside(c.bed_polygon, scene.frame_size, legs))
            if outside:
                state.warned = True
                events.append(
                    AppEvent(
                        app="bed_exit",
                        type="bed_exit",
                        time=t,
                        severity="warning",
                        track_id=sp.track_id,
                        confidence=round(sp.score, 3),
                        data={
                            "torso_angle": round(pose.angle, 1),
                            "legs_outside": outside,
                            "seconds_since_lying": round(t - state.lay_at, 1),
                        },
                    )
                )
        return events
