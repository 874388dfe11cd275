"""Hand hygiene at the door (WHO "5 moments" as a camera can see them). Pure: scenes in, events out.

The rules, as a clinician would read them (the clinical brief, "Hand hygiene at the door"):
- Opportunities. **Entry**: a tracked person is seen in a door zone and then reaches a patient zone.
  **Exit**: a person who was in a patient zone leaves it and reaches a door zone. Each closes with exactly
  one event; the same kind of opportunity for the same track is not counted again within ``cooldown_seconds``
  (a person lingering on a zone boundary).
- Compliance, between the start of the opportunity (door for entry, leaving the patient zone for exit) and
  its end: the wrists **dwell** at a dispenser zone for ``dispenser_dwell_seconds`` (a dwell may break for
  up to ``dwell_gap_seconds``), **followed by hand rubbing** lasting ``rub_seconds``. Rubbing only counts once
  such a dwell has been completed; a rubbing bout may pause for up to ``rub_gap_seconds`` and still be one bout
  (the longest bout is the one judged). With ``require_rub`` off (the AI Camera's sensor-only mode, where no
  image reaches the host to find hands in) the dwell alone is compliance.
- Rubbing (:func:`is_rubbing`, over the last ``rub_window_seconds`` of wrist samples): the two wrists are
  within ``rub_max_wrist_distance`` of each other in at least ``rub_together_fraction`` of the samples, and
  the wrists move to and fro at least ``rub_min_motion`` per second (path length less the net shift over the
  window, so bringing the hands together is not rubbing). Wrists come from the two best hands when the hand
  analyzer found two (landmark 0, more precise), else from the pose. In the app, positions are taken relative
  to the person's box centre, so a person walking with hands held together is not "moving their hands".
- Unit of distance: the person's **box height** (about their standing height; the dispenser and the rubbing
  happen standing). Shoulder width was rejected as the unit: it collapses towards zero when a person turns
  sideways to a wall dispenser, which is exactly when it would be needed.
- Outcomes: compliant -> type ``opportunity``, severity info; not compliant -> type ``missed``, severity
  warning (a real-time reminder may chime on it); a track unseen for ``lost_seconds`` while on its way
  (out of the door zone towards the patient, or out of the patient zone towards the door) -> ``unknown``.
- The patient is excluded: a track observed at least ``patient_min_seconds`` that spent more than
  ``patient_fraction`` of its tracked time in a patient zone gets no opportunities at all.
Events carry numbers only; :meth:`HandHygieneApp.rates` gives running counts and the compliance rate.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from accelerators.hands import Hand
from accelerators.types import KEYPOINT_INDEX
from firmware.apps.base import AppEvent
from firmware.scene import Scene, ScenePerson
from wardsight.wire import Severity

Point = tuple[float, float]
WRISTS = (KEYPOINT_INDEX["left_wrist"], KEYPOINT_INDEX["right_wrist"])


@dataclass(frozen=True)
class HygieneConfig:
    door_zones: frozenset[str] = frozenset({"door"})
    dispenser_zones: frozenset[str] = frozenset({"dispenser"})
    patient_zones: frozenset[str] = frozenset({"bed"})
    rub_seconds: float = 20.0  # seconds of rubbing for compliance (WHO: 20-30 s)
    dispenser_dwell_seconds: float = 1.0  # seconds with the wrists in a dispenser zone
    dwell_gap_seconds: float = 0.5  # seconds out of the dispenser zone that do not break a dwell
    rub_gap_seconds: float = 2.0  # seconds a rubbing bout may pause and still be one bout
    rub_window_seconds: float = 1.0  # seconds of wrist samples judged at once by is_rubbing
    rub_max_wrist_distance: float = 0.18  # box heights (~30 cm for a 1.7 m person) between the two wrists
    rub_min_motion: float = 0.06  # box heights per second of to-and-fro wrist movement (~10 cm/s)
    rub_together_fraction: float = 0.6  # of the window's samples with the wrists together (0..1)
    keypoint_score: float = 0.3  # minimum pose wrist score (0..1)
    patient_fraction: float = 0.8  # of the tracked time in a patient zone: more is the patient (0..1)
    patient_min_seconds: float = 60.0  # seconds a track is observed before it can be judged the patient
    lost_seconds: float = 3.0  # seconds unseen during an opportunity -> "unknown"
    cooldown_seconds: float = 10.0  # seconds before the same track's next opportunity of the same kind counts
    use_hands: bool = True  # ask the agent for hand landmarks ("hands"); pose wrists alone also work
    require_rub: bool = True  # False: the dispenser dwell alone is compliance (sensor-only mode: no hands)


# --- rubbing: a pure decision over a short window of wrist samples ---------------------------------------------


@dataclass(frozen=True, slots=True)
class WristSample:
    """Wrist positions at one moment, in the distance unit of the thresholds (box heights in the app).

    ``wrists`` holds one or two positions. ``overlapping`` marks a single position standing for two hands
    known to overlap (a hand detector merges overlapping hands into one): it counts as "together".
    """

    time: float  # seconds
    wrists: tuple[Point, ...]
    overlapping: bool = False


@dataclass(frozen=True, slots=True)
class RubMeasures:
    together: float  # fraction of samples with the wrists together (0..1)
    motion: float  # to-and-fro wrist movement per second (path length less net shift), in the samples' unit
    span: float  # seconds covered by the samples
    samples: int


def _nearest_shift(a: tuple[Point, ...], b: tuple[Point, ...]) -> float:
    """Mean movement between two samples: each wrist of the one with fewer wrists to its nearest in the other."""
    few, many = (a, b) if len(a) <= len(b) else (b, a)
    return sum(min(math.dist(p, q) for q in many) for p in few) / len(few)


def rub_measures(samples: Sequence[WristSample], max_wrist_distance: float, max_step: float = 0.5) -> RubMeasures:
    """How together and how mobile the wrists are over ``samples``; steps longer than ``max_step`` s are skipped."""
    seen = sorted((s for s in samples if s.wrists), key=lambda s: s.time)
    if not seen:
        return RubMeasures(0.0, 0.0, 0.0, 0)
    together = sum(
        1 for s in seen if s.overlapping or (len(s.wrists) >= 2 and math.dist(*s.wrists[:2]) <= max_wrist_distance)
    )
    moved, elapsed = 0.0, 0.0
    for a, b in pairwise(seen):
        dt = b.time - a.time
        if 0 < dt <= max_step:
            moved += _nearest_shift(a.wrists, b.wrists)
            elapsed += dt
    # To-and-fro movement only: the net shift from the first to the last sample (hands brought together,
    # a person stepping aside) is not rubbing.
    to_and_fro = max(moved - _nearest_shift(seen[0].wrists, seen[-1].wrists), 0.0)
    return RubMeasures(
        together=together / len(seen),
        motion=to_and_fro / elapsed if elapsed > 0 else 0.0,
        span=seen[-1].time - seen[0].time,
        samples=len(seen),
    )


def is_rubbing(
    samples: Sequence[WristSample],
    max_wrist_distance: float = HygieneConfig.rub_max_wrist_distance,
    min_motion: float = HygieneConfig.rub_min_motion,
    min_together: float = HygieneConfig.rub_together_fraction,
    min_span: float = 0.5,
    min_samples: int = 3,
) -> bool:
    """Whether a short window of wrist samples (about a second) shows hand rubbing: wrists close and moving.

    Needs at least ``min_samples`` samples with wrists spanning ``min_span`` seconds; distances and motion are
    in the samples' unit (box heights in the app).
    """
    m = rub_measures(samples, max_wrist_distance)
    if m.samples < min_samples or m.span < min_span:
        return False
    return m.together >= min_together and m.motion >= min_motion


def wrists_from_hands(hands: Sequence[Hand]) -> tuple[Point, ...]:
    """The wrists (landmark 0, frame pixels) of the two best hands, or () when fewer than two were found."""
    if len(hands) < 2:
        return ()
    best = sorted(hands, key=lambda h: -h.score)[:2]
    return tuple(h.wrist for h in best)


def person_sample(person: ScenePerson, time: float, use_hands: bool, min_score: float) -> WristSample | None:
    """The person's wrists, relative to their box centre, in box heights; None when no wrist is seen."""
    p = person.track.person
    x1, y1, x2, y2 = p.box
    height = max(y2 - y1, 1.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    wrists = wrists_from_hands(person.hands) if use_hands else ()
    if not wrists:
        kp = p.keypoints[list(WRISTS)]
        wrists = tuple((float(x), float(y)) for x, y, s in kp if s >= min_score)
    if not wrists:
        return None
    return WristSample(time, tuple(((x - cx) / height, (y - cy) / height) for x, y in wrists))


# --- the app -----------------------------------------------------------------------------------------------------


@dataclass
class _Bout:
    """Rubbing bouts: pauses up to a gap keep a bout going; the longest one is kept."""

    start: float | None = None
    last: float = 0.0
    best: float = 0.0

    def add(self, t: float, gap: float) -> None:
        if self.start is None or t - self.last > gap:
            self.start = t
        self.last = t
        self.best = max(self.best, t - self.start)


@dataclass
class _Track:
    first_seen: float
    last_seen: float
    score: float = 0.0
    patient_time: float = 0.0  # seconds in a patient zone
    origin: str | None = None  # "door" | "patient": where the current opportunity started
    started: float = 0.0  # when it started
    on_the_way: bool = False  # seen outside the origin zone since
    came_through_door: bool = False  # in a door zone before ever being in a patient zone: a visitor or staff
    window: deque[WristSample] = field(default_factory=deque)
    dwell: float = 0.0  # current dispenser dwell, seconds
    dwell_last: float | None = None  # last time in a dispenser zone
    best_dwell: float = 0.0
    dispensed: bool = False  # a dwell of dispenser_dwell_seconds completed
    rub: _Bout = field(default_factory=_Bout)  # rubbing after a completed dwell (the one judged)
    any_rub: _Bout = field(default_factory=_Bout)  # any rubbing (reported, not judged)
    last_event: dict[bool, float] = field(default_factory=dict)  # entry? -> time of the last counted opportunity

    def reset_hygiene(self) -> None:
        self.dwell, self.dwell_last, self.best_dwell, self.dispensed = 0.0, None, 0.0, False
        self.rub, self.any_rub = _Bout(), _Bout()


class HandHygieneApp:
    name = "hand_hygiene"

    def __init__(self, config: HygieneConfig | None = None) -> None:
        self.config = config or HygieneConfig()
        self.needs: frozenset[str] = frozenset({"hands"}) if self.config.use_hands else frozenset()
        self._tracks: dict[int, _Track] = {}
        self._counts = {"opportunities": 0, "compliant": 0, "missed": 0, "unknown": 0, "entry": 0, "exit": 0}

    def rates(self) -> dict[str, int | float | None]:
        """Running counts; ``compliance_rate`` = compliant / (compliant + missed), None before any such."""
        c = self._counts
        judged = c["compliant"] + c["missed"]
        out: dict[str, int | float | None] = dict(c)
        out["compliance_rate"] = c["compliant"] / judged if judged else None
        return out

    def is_patient(self, track: _Track, t: float) -> bool:
        """Mostly in the patient zone, and did not come in through the door (staff doing long bedside care did)."""
        c = self.config
        if track.came_through_door:
            return False
        observed = t - track.first_seen
        return observed >= c.patient_min_seconds and track.patient_time > c.patient_fraction * observed

    def update(self, scene: Scene) -> list[AppEvent]:
        c, t = self.config, scene.time
        events: list[AppEvent] = []
        for person in scene.people:
            track = self._tracks.get(person.track_id)
            if track is None:
                track = self._tracks[person.track_id] = _Track(first_seen=t, last_seen=t)
            dt = min(max(t - track.last_seen, 0.0), c.lost_seconds)
            track.last_seen, track.score = t, person.score
            in_patient = bool(person.zones & c.patient_zones)
            if in_patient:
                track.patient_time += dt
            self._hygiene(person, track, t)
            event = self._transition(person.track_id, track, t, in_patient, bool(person.zones & c.door_zones))
            if event:
                events.append(event)
        for tid in [tid for tid, tr in self._tracks.items() if t - tr.last_seen >= c.lost_seconds]:
            track = self._tracks.pop(tid)
            if track.origin is not None and track.on_the_way and not self.is_patient(track, track.last_seen):
                event = self._close(tid, track, t, entry=track.origin == "door", lost=True)
                if event:
                    events.append(event)
        return events

    def _hygiene(self, person: ScenePerson, track: _Track, t: float) -> None:
        """Advance the dispenser dwell and the rubbing bouts with this frame."""
        c = self.config
        if person.zones & c.dispenser_zones:
            if track.dwell_last is not None and t - track.dwell_last <= c.dwell_gap_seconds:
                track.dwell += t - track.dwell_last
            else:
                track.dwell = 0.0
            track.dwell_last = t
            track.best_dwell = max(track.best_dwell, track.dwell)
            if track.dwell >= c.dispenser_dwell_seconds - 1e-6:
                track.dispensed = True
        window = track.window
        sample = person_sample(person, t, c.use_hands, c.keypoint_score)
        if sample is not None:
            window.append(sample)
        while window and window[0].time < t - c.rub_window_seconds:
            window.popleft()
        rubbing = is_rubbing(
            window, c.rub_max_wrist_distance, c.rub_min_motion, c.rub_together_fraction, c.rub_window_seconds / 2
        )
        if rubbing:
            track.any_rub.add(t, c.rub_gap_seconds)
            if track.dispensed:
                track.rub.add(t, c.rub_gap_seconds)

    def _transition(self, tid: int, track: _Track, t: float, in_patient: bool, in_door: bool) -> AppEvent | None:
        event = None
        if in_patient:
            if track.origin == "door":
                event = self._close(tid, track, t, entry=True)
            if track.origin != "patient":
                track.origin, track.started = "patient", t
            track.on_the_way = False
            track.reset_hygiene()  # exit hygiene counts only after leaving the patient zone
        elif in_door:
            if track.origin == "patient":
                event = self._close(tid, track, t, entry=False)
            track.on_the_way = False  # back at the door: not on the way anywhere (nothing to lose)
            if track.patient_time == 0.0:
                track.came_through_door = True
            if track.origin != "door":
                track.origin, track.started = "door", t
                track.reset_hygiene()
        elif track.origin is not None:
            track.on_the_way = True
        return event

    def _close(self, tid: int, track: _Track, t: float, entry: bool, lost: bool = False) -> AppEvent | None:
        """The one event of an opportunity (None for the patient or within the cooldown)."""
        c = self.config
        if self.is_patient(track, track.last_seen):
            return None
        last = track.last_event.get(entry)
        if last is not None and t - last < c.cooldown_seconds:
            return None
        track.last_event[entry] = t
        rubbed = track.rub.best >= c.rub_seconds - 1e-6 or not c.require_rub
        compliant = not lost and track.dispensed and rubbed
        kind: str
        severity: Severity = "info"
        if lost:
            kind, outcome = "unknown", "unknown"
        elif compliant:
            kind, outcome = "opportunity", "compliant"
        else:
            kind, outcome, severity = "missed", "missed", "warning"
        self._counts["opportunities"] += 1
        self._counts[outcome] += 1
        self._counts["entry" if entry else "exit"] += 1
        return AppEvent(
            app="hand_hygiene",
            type=kind,
            time=t,
            severity=severity,
            track_id=tid,
            confidence=round(float(np.clip(track.score, 0.0, 1.0)), 3),
            data={
                "entry": entry,
                "compliant": compliant,
                "dispensed": track.dispensed,
                "dwell_seconds": round(track.best_dwell, 1),
                "rub_seconds": round(track.rub.best, 1),
                "any_rub_seconds": round(track.any_rub.best, 1),
                "opportunity_seconds": round(track.last_seen - track.started, 1),
                "lost": lost,
            },
        )
