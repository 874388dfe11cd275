"""Mask compliance, for the infection-control team. Pure: scenes in, events out.

The rules, as an infection-control nurse would read them:
- Observation: a face attached to a tracked person, called "mask" or "no_mask", with a face score of at
  least ``min_face_score``. "unknown" calls, weak faces and frames without a face are not observations:
  they count neither way.
- Smoothed state, per person: "unknown" until ``min_observations`` observations have been made in the last
  ``smoothing_seconds``; it then switches to "mask" or "no_mask" only when at least ``switch_fraction`` of
  those observations agree (hysteresis: between the two fractions the state stays as it was). One
  misclassified frame, or a short burst, does not flip it. With no new observations (face turned away,
  hidden) the state is kept: there is no evidence the person changed.
- Alert ``no_mask`` (warning): only when the room policy ``masks_required`` is set, and the person's
  smoothed state has been "no_mask" for ``grace_seconds``. The grace period runs from the first no-mask
  observation the switch was based on (at most ``smoothing_seconds`` before the switch), so a person is
  alerted on ``grace_seconds`` after being first seen without a mask, not later.
- One alert per person per incident. ``mask_on`` (info) resolves it when that person's smoothed state
  becomes "mask". If the mask comes off again, a new incident can alert again, but not sooner than
  ``cooldown_seconds`` after this person's previous alert.
- ``window_counts`` (info), every ``window_seconds`` whatever the policy: distinct track ids seen in the
  window (``people_seen``), split by their majority call over the window's observations (``masked``,
  ``unmasked``; ``unknown`` for people with no observation or a tie).
People unseen for ``forget_seconds`` are forgotten (an open incident then ends without an event).
Events carry numbers only: no face box, no crop, no identity beyond the track id.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from firmware.apps.base import AppEvent
from firmware.scene import Scene, ScenePerson

State = Literal["mask", "no_mask", "unknown"]


@dataclass(frozen=True)
class MaskConfig:
    masks_required: bool = False  # room policy (isolation rooms): alerts only when True; counts always
    grace_seconds: float = 30.0  # seconds unmasked before the alert
    min_face_score: float = 0.5  # face detector score (0..1) for a face to be an observation
    smoothing_seconds: float = 3.0  # seconds of observations the smoothed state is decided on
    min_observations: int = 3  # observations within smoothing_seconds before the state can switch
    switch_fraction: float = 0.7  # fraction (0.5..1] of those observations needed to switch state
    window_seconds: float = 300.0  # seconds per window_counts event
    cooldown_seconds: float = 300.0  # seconds between two no_mask alerts for the same person
    forget_seconds: float = 30.0  # seconds unseen before a person's state is dropped

    def __post_init__(self) -> None:
        if not 0.5 < self.switch_fraction <= 1.0:
            raise ValueError("switch_fraction must be in (0.5, 1]")
        if self.window_seconds <= 0 or self.smoothing_seconds <= 0:
            raise ValueError("window_seconds and smoothing_seconds must be positive")
        if self.min_observations < 1:
            raise ValueError("min_observations must be at least 1")


@dataclass
class _Person:
    observations: deque[tuple[float, bool, float]] = field(default_factory=deque)  # (t, no_mask, mask_score)
    state: State = "unknown"
    no_mask_since: float = 0.0  # start of the current no_mask state (first observation it was based on)
    alerted: bool = False  # an alert is open for the current no_mask incident
    last_alert: float | None = None
    last_seen: float = 0.0


@dataclass
class _Window:
    start: float
    tallies: dict[int, list[int]] = field(default_factory=dict)  # track id -> [mask, no_mask] observations


class MaskApp:
    name = "mask"
    needs: frozenset[str] = frozenset({"faces"})

    def __init__(self, config: MaskConfig | None = None) -> None:
        self.config = config or MaskConfig()
        self._people: dict[int, _Person] = {}
        self._window: _Window | None = None

    def state_of(self, track_id: int) -> State:
        """The smoothed state of a tracked person ("unknown" if not tracked)."""
        person = self._people.get(track_id)
        return person.state if person else "unknown"

    def update(self, scene: Scene) -> list[AppEvent]:
        c, t = self.config, scene.time
        events: list[AppEvent] = []
        if self._window is None:
            self._window = _Window(t)
        elif t >= self._window.start + c.window_seconds:
            events.append(self._window_event(self._window, t))
            skipped = (t - self._window.start) // c.window_seconds  # a gap in frames skips empty windows
            self._window = _Window(self._window.start + skipped * c.window_seconds)
        for person in scene.people:
            events += self._observe(person, t)
        for tid in [tid for tid, p in self._people.items() if t - p.last_seen > c.forget_seconds]:
            del self._people[tid]
        return events

    def _observe(self, person: ScenePerson, t: float) -> list[AppEvent]:
        c = self.config
        assert self._window is not None
        tally = self._window.tallies.setdefault(person.track_id, [0, 0])
        track = self._people.setdefault(person.track_id, _Person())
        track.last_seen = t
        face = person.face
        if face is not None and face.label != "unknown" and face.face_score >= c.min_face_score:
            no_mask = face.label == "no_mask"
            tally[int(no_mask)] += 1
            track.observations.append((t, no_mask, face.mask_score))
        obs = track.observations
        while obs and obs[0][0] <= t - c.smoothing_seconds:
            obs.popleft()
        events: list[AppEvent] = []
        if len(obs) >= c.min_observations:
            unmasked = sum(1 for _, no_mask, _ in obs if no_mask) / len(obs)
            if track.state != "no_mask" and unmasked >= c.switch_fraction:
                track.state = "no_mask"
                track.no_mask_since = next(ot for ot, no_mask, _ in obs if no_mask)
            elif track.state != "mask" and 1.0 - unmasked >= c.switch_fraction:
                if track.state == "no_mask" and track.alerted:
                    events.append(self._event(person, track, "mask_on", t))
                track.state, track.alerted = "mask", False
        if (
            c.masks_required
            and track.state == "no_mask"
            and not track.alerted
            and t - track.no_mask_since >= c.grace_seconds
            and (track.last_alert is None or t - track.last_alert >= c.cooldown_seconds)
        ):
            track.alerted, track.last_alert = True, t
            events.append(self._event(person, track, "no_mask", t))
        return events

    def _event(self, person: ScenePerson, track: _Person, kind: str, t: float) -> AppEvent:
        obs = track.observations
        agreeing = [score for _, no_mask, score in obs if no_mask == (kind == "no_mask")]
        confidence = round(min(1.0, max(0.0, sum(agreeing) / len(agreeing))), 3) if agreeing else None
        unmasked = sum(1 for _, no_mask, _ in obs if no_mask)
        return AppEvent(
            app="mask",
            type=kind,
            time=t,
            severity="warning" if kind == "no_mask" else "info",
            track_id=person.track_id,
            confidence=confidence,
            data={
                "seconds_unmasked": round(t - track.no_mask_since, 1),
                "observations": len(obs),
                "no_mask_fraction": round(unmasked / len(obs), 2) if obs else 0.0,
            },
        )

    def _window_event(self, window: _Window, t: float) -> AppEvent:
        masked = sum(1 for m, n in window.tallies.values() if m > n)
        unmasked = sum(1 for m, n in window.tallies.values() if n > m)
        seen = len(window.tallies)
        return AppEvent(
            app="mask",
            type="window_counts",
            time=t,
            data={
                "people_seen": seen,
                "masked": masked,
                "unmasked": unmasked,
                "unknown": seen - masked - unmasked,
                "window_seconds": self.config.window_seconds,
                "masks_required": self.config.masks_required,
            },
        )
