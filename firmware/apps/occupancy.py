"""Occupancy: how many people are in the room and its zones, and the room-level rules built on that count.

Counting (people with a score of at least ``min_score``): a count must persist for ``stable_seconds``
before it is reported, so one missed detection or a person briefly occluded does not produce a pair of
events. The room and every zone are assumed empty at start. Everything below works on these debounced
counts, never on a single frame.
- ``count_changed`` (info): the room count, data ``count``, ``previous``, ``held_seconds``.
- ``zone_count_changed`` (info): one event per zone whose count changed, data ``count``, ``previous``,
  ``held_seconds`` and ``zone_index``: the zone's position in ``OccupancyAppConfig.zones`` (event data
  holds numbers only, so the device's configuration is the key to zone names: with
  ``zones=("door", "bed")``, ``zone_index`` 0 is "door" and 1 is "bed"). A person is in a zone when the
  agent's zone geometry puts them there (``ScenePerson.zones``); a person may be in several zones.
- ``patient_alone`` (warning): the patient has been alone for ``patient_alone_seconds``. "Alone" means
  exactly one person in the room and that person in ``patient_zone`` (the bed zone of a single-patient
  room; the device cannot tell who is the patient, so one person in the patient zone with nobody else
  around is taken to be the patient alone). The timer starts when the debounced counts first show it
  and stops as soon as they do not. Raised once per alone period; ``patient_attended`` (info) follows
  it when a second person arrives, data ``seconds_alone``. A period that ends otherwise (the person
  leaves the patient zone or the room) ends silently.
- ``over_capacity`` (warning): the room count exceeds ``max_people``. Once per incident (a continuous
  over-capacity period) and not sooner than ``cooldown_seconds`` after the previous one; an incident
  still going on when the cooldown ends is then raised.
- ``after_hours_visitor`` (warning): outside ``visiting_hours`` the room count exceeds
  ``after_hours_max_people`` (by default 2: the patient and one member of staff), with the same
  once-per-incident and cooldown rule; the hour is checked every frame, so a visit that runs past the end
  of visiting hours is raised at the boundary. Local time comes from ``hour_of(scene.time)`` if given,
  else from the Unix timestamp shifted by ``utc_offset_hours`` (fixed: no daylight-saving changes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from firmware.apps.base import AppEvent
from firmware.scene import Scene, ScenePerson
from wardsight.wire import Severity

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class OccupancyAppConfig:
    """The occupancy app's rules (not ``wardsight.device_config.OccupancyConfig``, the device TOML model)."""

    stable_seconds: float = 1.0  # seconds a new count must hold before it is reported
    min_score: float = 0.15  # person confidence (0..1) to be counted; tracks start only at 0.35, so a person
    # lying on the floor after a fall (scores near 0.2) still counts as present
    zones: tuple[str, ...] = ()  # zone names counted separately; an event's zone_index is the position here
    patient_zone: str | None = None  # zone name of the patient's bed; None: no patient-alone timing
    patient_alone_seconds: float = 1800.0  # seconds alone before patient_alone
    max_people: int | None = None  # people; more than this is over capacity; None: no over-capacity alert
    visiting_hours: tuple[float, float] | None = None  # (start_hour, end_hour) local, [start, end); None: always
    after_hours_max_people: int = 2  # people; more than this outside visiting hours alerts
    utc_offset_hours: float = 0.0  # local time = UTC + this (hours); used when hour_of is None
    hour_of: Callable[[float], float] | None = None  # scene time (Unix s) -> local hour in [0, 24); overrides offset
    cooldown_seconds: float = 600.0  # seconds between two alerts of the same kind (over_capacity, after_hours)

    def __post_init__(self) -> None:
        if len(set(self.zones)) != len(self.zones):
            raise ValueError("zones must not repeat a name (zone_index would be ambiguous)")
        if len(self.zones) > 1024:
            raise ValueError("at most 1024 zones")
        if self.visiting_hours is not None:
            start, end = self.visiting_hours
            if not (0 <= start <= 24 and 0 <= end <= 24) or start == end:
                raise ValueError("visiting_hours must be two different hours in [0, 24]")

    def local_hour(self, time: float) -> float:
        """The local hour of day, in [0, 24), of a Unix timestamp."""
        if self.hour_of is not None:
            return self.hour_of(time)
        return ((time + self.utc_offset_hours * 3600.0) % SECONDS_PER_DAY) / 3600.0

    def is_visiting_hours(self, time: float) -> bool:
        """Whether ``time`` falls in [start, end) of the visiting hours (wrapping past midnight if start > end)."""
        if self.visiting_hours is None:
            return True
        start, end = self.visiting_hours
        hour = self.local_hour(time)
        return start <= hour < end if start < end else (hour >= start or hour < end)


@dataclass(frozen=True)
class _Change:
    count: int
    previous: int
    held: float
    confidence: float


class _Debounced:
    """A count reported only once a new value has held for ``stable_seconds``."""

    def __init__(self, stable_seconds: float) -> None:
        self.stable_seconds = stable_seconds
        self.reported = 0
        self._pending: int | None = None
        self._pending_since = 0.0
        self._pending_scores: list[float] = []

    def update(self, time: float, scores: list[float]) -> _Change | None:
        count = len(scores)
        if count == self.reported:
            self._pending = None
            return None
        if count != self._pending:
            self._pending, self._pending_since, self._pending_scores = count, time, []
        self._pending_scores.append(sum(scores) / count if count else 1.0)
        held = time - self._pending_since
        if held < self.stable_seconds:
            return None
        previous, self.reported, self._pending = self.reported, count, None
        confidence = min(1.0, sum(self._pending_scores) / len(self._pending_scores))
        return _Change(count, previous, held, confidence)


class OccupancyApp:
    name = "occupancy"
    needs: frozenset[str] = frozenset()

    def __init__(
        self,
        config: OccupancyAppConfig | None = None,
        *,
        stable_seconds: float | None = None,
        min_score: float | None = None,
    ) -> None:
        config = config or OccupancyAppConfig()
        if stable_seconds is not None:
            config = dataclasses.replace(config, stable_seconds=stable_seconds)
        if min_score is not None:
            config = dataclasses.replace(config, min_score=min_score)
        self.config = config
        self._room = _Debounced(config.stable_seconds)
        tracked = dict.fromkeys(config.zones)
        if config.patient_zone is not None:
            tracked[config.patient_zone] = None
        self._zones = {zone: _Debounced(config.stable_seconds) for zone in tracked}
        self._alone_since: float | None = None
        self._alone_alerted = False
        self._open: dict[str, bool] = {"over_capacity": False, "after_hours_visitor": False}  # incident alerted
        self._last_alert: dict[str, float] = {}

    @property
    def stable_seconds(self) -> float:
        return self.config.stable_seconds

    @property
    def min_score(self) -> float:
        return self.config.min_score

    @property
    def reported(self) -> int:
        """The debounced room count."""
        return self._room.reported

    def zone_count(self, zone: str) -> int:
        """The debounced count of a configured zone."""
        return self._zones[zone].reported

    def update(self, scene: Scene) -> list[AppEvent]:
        c, t = self.config, scene.time
        counted = [p for p in scene.people if p.score >= c.min_score]
        events: list[AppEvent] = []
        change = self._room.update(t, [p.score for p in counted])
        if change is not None:
            events.append(self._change_event("count_changed", change, t))
        for index, zone in enumerate(c.zones):
            change = self._zones[zone].update(t, _scores_in(counted, zone))
            if change is not None:
                events.append(self._change_event("zone_count_changed", change, t, zone_index=index))
        if c.patient_zone is not None:
            if c.patient_zone not in c.zones:
                self._zones[c.patient_zone].update(t, _scores_in(counted, c.patient_zone))
            events += self._patient(t)
        count = self._room.reported
        if c.max_people is not None:
            events += self._incident("over_capacity", count > c.max_people, t, max_people=c.max_people)
        if c.visiting_hours is not None:
            after_hours = count > c.after_hours_max_people and not c.is_visiting_hours(t)
            events += self._incident(
                "after_hours_visitor",
                after_hours,
                t,
                max_people=c.after_hours_max_people,
                local_hour=round(c.local_hour(t), 2),
            )
        return events

    def _patient(self, t: float) -> list[AppEvent]:
        c = self.config
        assert c.patient_zone is not None
        room, in_zone = self._room.reported, self._zones[c.patient_zone].reported
        alone = room == 1 and in_zone == 1
        if alone:
            if self._alone_since is None:
                self._alone_since, self._alone_alerted = t, False
            seconds = t - self._alone_since
            if not self._alone_alerted and seconds >= c.patient_alone_seconds:
                self._alone_alerted = True
                return [self._event("patient_alone", "warning", t, seconds_alone=round(seconds, 1))]
            return []
        events = []
        if self._alone_since is not None and self._alone_alerted and room >= 2:
            seconds = t - self._alone_since
            events.append(self._event("patient_attended", "info", t, seconds_alone=round(seconds, 1), count=room))
        self._alone_since, self._alone_alerted = None, False
        return events

    def _incident(self, kind: str, active: bool, t: float, **data: float | int | bool) -> list[AppEvent]:
        if not active:
            self._open[kind] = False
            return []
        last = self._last_alert.get(kind)
        if self._open[kind] or (last is not None and t - last < self.config.cooldown_seconds):
            return []
        self._open[kind], self._last_alert[kind] = True, t
        return [self._event(kind, "warning", t, count=self._room.reported, **data)]

    def _change_event(self, kind: str, change: _Change, t: float, **extra: int) -> AppEvent:
        data: dict[str, float | int | bool] = {
            "count": change.count,
            "previous": change.previous,
            "held_seconds": round(change.held, 2),
        }
        data.update(extra)
        return AppEvent(app="occupancy", type=kind, time=t, confidence=round(change.confidence, 3), data=data)

    def _event(self, kind: str, severity: Severity, t: float, **data: float | int | bool) -> AppEvent:
        return AppEvent(app="occupancy", type=kind, time=t, severity=severity, data=dict(data))


def _scores_in(people: list[ScenePerson], zone: str) -> list[float]:
    return [p.score for p in people if zone in p.zones]
