"""Mask compliance, for the infection-control team. Pure: scenes in, events out.

The rules, as an infection-control nurse would read them:
- Confident call: a face the agent attached to a tracked person (``firmware.perception``: the face whose centre
  is in the person's head region, nearest nose first), called "mask" or "no_mask", with a face score of at
  least ``min_face_score`` and a call score of at least ``min_call_score``. "unknown" calls, weak faces or
  calls and frames without a face are not confident calls: they count neither way, so a face the models
  cannot judge never counts as non-compliant.
- State, per person: a vote over that person's recent confident calls, never one frame. The vote holds the
  calls of the last ``smoothing_seconds``; when fewer than ``min_observations`` fall there (the face models
  run on every few frames and miss faces, so calls can be sparse), it reaches back to the latest
  ``min_observations`` calls, none older than ``vote_max_age_seconds``. With fewer calls than that, the
  state stays as it is ("unknown" at first). The state switches to "mask" or "no_mask" only when at least
  ``switch_fraction`` of the vote agrees (hysteresis: between the two fractions the state stays as it was).
  One misclassified frame, or a short burst, does not flip it. With no new calls (face turned away,
  hidden) the state is kept: there is no evidence the person changed.
- Alert ``no_mask`` (warning): only when the room policy ``masks_required`` is set, and the person's
  state has been "no_mask" for ``grace_seconds``. The grace period runs from the first no-mask call the
  switch was based on (the oldest no-mask call in the vote), so a person is alerted on ``grace_seconds``
  after being first seen without a mask, not later.
- One alert per person per incident. ``mask_on`` (info) resolves it when that person's state becomes
  "mask". If the mask comes off again, a new incident can alert again, but not sooner than
  ``cooldown_seconds`` after this person's previous alert.
- ``window_counts`` (info), every ``window_seconds`` whatever the policy: distinct track ids seen in the
  window (``people_seen``), split by a vote over their confident calls in the window: ``masked`` or
  ``unmasked`` when they made at least ``min_observations`` such calls and at least ``switch_fraction`` of
  them agree, else ``unknown`` (no face judged, too few calls, or calls that disagree).
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
    min_face_score: float = 0.5  # face detector score (0..1) for a face's call to count
    min_call_score: float = 0.7  # mask classifier score (0..1) for its call to count (the detector's own cut)
    smoothing_seconds: float = 3.0  # seconds of calls a person's vote holds when calls are frequent
    min_observations: int = 3  # confident calls a vote needs (per person; and per window for window_counts)
    vote_max_age_seconds: float = 15.0  # seconds: the oldest call a vote may reach back to when calls are sparse
    switch_fraction: float = 0.7  # fraction (0.5..1] of a vote that must agree to switch state
    window_seconds: float = 300.0  # seconds per window_counts event
    cooldown_seconds: float = 300.0  # seconds between two no_mask alerts for the same person
    forget_seconds: float = 30.0  # seconds unseen before a person's state is dropped

    def __post_init__(self) -> None:
        if not 0.5 < self.switch_fraction <= 1.0:
            raise ValueError("switch_fraction must be in (0.5, 1]")
        if self.window_seconds <= 0 or self.smoothing_seconds <= 0:
            raise ValueError("window_seconds and smoothing_seconds must be positive")
        if self.vote_max_age_seconds < self.smoothing_seconds:
            raise ValueError("vote_max_age_seconds must be at least smoothing_seconds")
        if self.min_observations < 1:
            raise ValueError("min_observations must be at least 1")


@dataclass(frozen=True, slots=True)
class _Call:
    t: float
    no_mask: bool
    score: float  # the classifier's score for its call


@dataclass
class _Person:
    calls: deque[_Call] = field(default_factory=deque)  # confident calls of the last vote_max_age_seconds
    state: State = "unknown"
    no_mask_since: float = 0.0  # start of the current no_mask state (first call of the vote it was based on)
    alerted: bool = False  # an alert is open for the current no_mask incident
    last_alert: float | None = None
    last_seen: float = 0.0


@dataclass
class _Window:
    start: float
    tallies: dict[int, list[int]] = field(default_factory=dict)  # track id -> confident [mask, no_mask] calls


def vote_of(calls: deque[_Call], t: float, config: MaskConfig) -> list[_Call]:
    """The calls a person's state is voted on at time ``t``: those of the last ``smoothing_seconds``, or the latest
    ``min_observations`` when fewer fall there (``calls`` holds none older than ``vote_max_age_seconds``). Empty
    when there are fewer than ``min_observations`` calls to vote on."""
    recent = [c for c in calls if c.t > t - config.smoothing_seconds]
    if len(recent) < config.min_observations:
        recent = list(calls)[-config.min_observations :]
    return recent if len(recent) >= config.min_observations else []


def tally_verdict(mask: int, no_mask: int, config: MaskConfig) -> State:
    """A person's verdict over a window's confident calls: enough of them, and enough agreeing, else unknown."""
    total = mask + no_mask
    if total < config.min_observations:
        return "unknown"
    if no_mask >= config.switch_fraction * total:
        return "no_mask"
    if mask >= config.switch_fraction * total:
        return "mask"
    return "unknown"


class MaskApp:
    name = "mask"
    needs: frozenset[str] = frozenset({"faces"})

    def __init__(self, config: MaskConfig | None = None) -> None:
        self.config = config or MaskConfig()
        self._people: dict[int, _Person] = {}
        self._window: _Window | None = None

    def state_of(self, track_id: int) -> State:
        """The voted state of a tracked person ("unknown" if not tracked)."""
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

    def _confident_call(self, person: ScenePerson, t: float) -> _Call | None:
        c, face = self.config, person.face
        if face is None or face.label == "unknown":
            return None
        if face.face_score < c.min_face_score or face.mask_score < c.min_call_score:
            return None
        return _Call(t, face.label == "no_mask", face.mask_score)

    def _observe(self, person: ScenePerson, t: float) -> list[AppEvent]:
        c = self.config
        assert self._window is not None
        tally = self._window.tallies.setdefault(person.track_id, [0, 0])
        track = self._people.setdefault(person.track_id, _Person())
        track.last_seen = t
        call = self._confident_call(person, t)
        if call is not None:
            tally[int(call.no_mask)] += 1
            track.calls.append(call)
        while track.calls and track.calls[0].t < t - c.vote_max_age_seconds:
            track.calls.popleft()
        vote = vote_of(track.calls, t, c)
        events: list[AppEvent] = []
        if vote:
            unmasked = sum(1 for v in vote if v.no_mask) / len(vote)
            if track.state != "no_mask" and unmasked >= c.switch_fraction:
                track.state = "no_mask"
                track.no_mask_since = next(v.t for v in vote if v.no_mask)
            elif track.state != "mask" and 1.0 - unmasked >= c.switch_fraction:
                if track.state == "no_mask" and track.alerted:
                    events.append(self._event(person, track, vote, "mask_on", t))
                track.state, track.alerted = "mask", False
        if (
            c.masks_required
            and track.state == "no_mask"
            and not track.alerted
            and t - track.no_mask_since >= c.grace_seconds
            and (track.last_alert is None or t - track.last_alert >= c.cooldown_seconds)
        ):
            track.alerted, track.last_alert = True, t
            events.append(self._event(person, track, vote, "no_mask", t))
        return events

    def _event(self, person: ScenePerson, track: _Person, vote: list[_Call], kind: str, t: float) -> AppEvent:
        agreeing = [v.score for v in vote if v.no_mask == (kind == "no_mask")]
        confidence = round(min(1.0, max(0.0, sum(agreeing) / len(agreeing))), 3) if agreeing else None
        unmasked = sum(1 for v in vote if v.no_mask)
        return AppEvent(
            app="mask",
            type=kind,
            time=t,
            severity="warning" if kind == "no_mask" else "info",
            track_id=person.track_id,
            confidence=confidence,
            data={
                "seconds_unmasked": round(t - track.no_mask_since, 1),
                "observations": len(vote),
                "no_mask_fraction": round(unmasked / len(vote), 2) if vote else 0.0,
            },
        )

    def _window_event(self, window: _Window, t: float) -> AppEvent:
        verdicts = [tally_verdict(m, n, self.config) for m, n in window.tallies.values()]
        masked, unmasked = verdicts.count("mask"), verdicts.count("no_mask")
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
