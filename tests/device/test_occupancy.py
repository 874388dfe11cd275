import numpy as np
import pytest

from accelerators.types import Person
from firmware.apps.occupancy import OccupancyApp, OccupancyAppConfig
from firmware.scene import Scene, ScenePerson
from firmware.tracking import TrackedPerson
from tests.device.helpers import assert_on_the_wire


def people(n, score=0.8):
    return [Person((0, 0, 10, 10), score, np.zeros((17, 3), np.float32)) for _ in range(n)]


def scene(t, persons):
    return Scene(
        t, (640, 480), tuple(ScenePerson(TrackedPerson(i, p, 0.0, 1), frozenset()) for i, p in enumerate(persons))
    )


def run(app, script, fps=10.0):
    """script: list of (seconds, count); returns emitted events."""
    events, t = [], 0.0
    for seconds, count in script:
        for _ in range(int(seconds * fps)):
            events += app.update(scene(t, people(count)))
            t += 1 / fps
    return events


def test_count_change_reported_once_after_it_holds():
    events = run(OccupancyApp(stable_seconds=1.0), [(2, 0), (3, 2), (3, 1)])
    assert [(e.data["previous"], e.data["count"]) for e in events] == [(0, 2), (2, 1)]
    assert all(e.app == "occupancy" and e.type == "count_changed" for e in events)
    assert events[0].time == pytest.approx(3.0, abs=0.11)


def test_flicker_shorter_than_stable_time_is_ignored():
    events = run(OccupancyApp(stable_seconds=1.0), [(2, 1), (0.5, 0), (2, 1), (0.9, 2), (2, 1)])
    assert [(e.data["previous"], e.data["count"]) for e in events] == [(0, 1)]


def test_low_confidence_people_are_not_counted():
    app = OccupancyApp(stable_seconds=0.0, min_score=0.5)
    assert app.update(scene(0.0, people(2, score=0.3))) == []
    (event,) = app.update(scene(0.1, people(1, score=0.9)))
    assert event.data["count"] == 1 and event.confidence == 0.9


def test_pending_count_restarts_when_it_changes_again():
    # 0 -> 1 for 0.6 s then 2 for 0.6 s: neither held 1 s, so nothing yet; 2 holding on reports 0 -> 2.
    events = run(OccupancyApp(stable_seconds=1.0), [(0.6, 1), (0.6, 2), (0.5, 2)])
    assert [(e.data["previous"], e.data["count"]) for e in events] == [(0, 2)]


# ---- the extended rules: config, zones, patient alone, over capacity, after hours ------------------------

FPS = 10


class Script:
    """Frames at exact multiples of 0.1 s from ``start``; people_fn(i) -> list of zone tuples, one per person."""

    def __init__(self, config=None, start=0.0, **kwargs):
        self.app, self.start, self.frame, self.events = OccupancyApp(config, **kwargs), start, 0, []

    @property
    def t(self):
        return self.start + self.frame / FPS

    def frames(self, seconds, people_fn):
        if not callable(people_fn):
            fixed = people_fn
            people_fn = lambda i: fixed  # noqa: E731
        for i in range(round(seconds * FPS)):
            persons = tuple(
                ScenePerson(TrackedPerson(n, p, 0.0, 1), frozenset(zones))
                for n, (p, zones) in enumerate(zip(people(len(people_fn(i))), people_fn(i), strict=True))
            )
            self.events += self.app.update(Scene(self.t, (640, 480), persons))
            self.frame += 1
        return self

    def of(self, *types):
        return [e for e in self.events if e.type in types]

    def types(self):
        return [e.type for e in self.events]


def test_keyword_arguments_still_work_and_override_the_config():
    app = OccupancyApp(stable_seconds=2.5, min_score=0.4)
    assert (app.stable_seconds, app.min_score) == (2.5, 0.4) and app.config == OccupancyAppConfig(2.5, 0.4)
    app = OccupancyApp(OccupancyAppConfig(stable_seconds=3.0, max_people=4), min_score=0.6)
    assert (app.config.stable_seconds, app.config.min_score, app.config.max_people) == (3.0, 0.6, 4)
    assert OccupancyApp().config == OccupancyAppConfig()
    with pytest.raises(ValueError, match="repeat"):
        OccupancyAppConfig(zones=("bed", "bed"))
    with pytest.raises(ValueError, match="visiting_hours"):
        OccupancyAppConfig(visiting_hours=(8, 8))


def test_count_change_at_the_debounce_boundary():
    s = Script(stable_seconds=1.0).frames(2, [])
    s.frames(0.9, [(), ()])  # 2.0 .. 2.8 s: held 0.8 s
    s.frames(0.1, [(), ()])  # 2.9 s: held 0.9 s
    assert s.events == []
    s.frames(0.1, [(), ()])  # 3.0 s: held exactly stable_seconds
    (event,) = s.events
    assert event.time == pytest.approx(3.0) and event.data == {"count": 2, "previous": 0, "held_seconds": 1.0}
    # a drop that lasts 0.9 s is ignored; back at the reported count clears the pending one
    s.frames(0.9, [()]).frames(0.5, [(), ()]).frames(0.9, [()]).frames(0.2, [(), ()])
    assert s.types() == ["count_changed"]
    s.frames(1.0, [()])  # ten frames span 0.9 s: not yet
    assert s.types() == ["count_changed"]
    s.frames(0.1, [()])
    assert [e.data["count"] for e in s.events] == [2, 1] and s.app.reported == 1


def test_zone_counts_one_event_per_zone_change_with_its_index():
    config = OccupancyAppConfig(zones=("door", "bed", "chair"), stable_seconds=1.0)
    s = Script(config)
    s.frames(5, [("bed",)])  # the patient in bed
    s.frames(3, [("bed",), ("door",)])  # a visitor comes in through the door
    s.frames(0.5, [("bed",), ()])  # crosses the room for less than the stable time
    s.frames(5, [("bed",), ("chair", "bed")])  # sits by the bed: in two zones at once
    zone_events = s.of("zone_count_changed")
    assert [(e.data["zone_index"], e.data["previous"], e.data["count"]) for e in zone_events] == [
        (1, 0, 1),  # bed (at 1 s)
        (0, 0, 1),  # door
        (0, 1, 0),  # door empties once the visitor is in the chair (the 0.5 s crossing counted towards it)
        (1, 1, 2),  # bed: two people
        (2, 0, 1),  # chair
    ]
    assert zone_events[0].time == pytest.approx(1.0) and zone_events[1].time == pytest.approx(6.0)
    assert all(set(e.data) == {"count", "previous", "held_seconds", "zone_index"} for e in zone_events)
    # the room count is unaffected by zones: 0 -> 1 -> 2 only
    assert [e.data["count"] for e in s.of("count_changed")] == [1, 2]


def test_zone_flicker_is_ignored_and_unconfigured_zones_are_not_reported():
    s = Script(OccupancyAppConfig(zones=("door",)))
    s.frames(3, [("floor",)]).frames(0.9, [("door", "floor")]).frames(3, [("floor",)])
    assert s.of("zone_count_changed") == []


def alone_config(**kw):
    return OccupancyAppConfig(patient_zone="bed", patient_alone_seconds=60.0, stable_seconds=1.0, **kw)


def test_patient_alone_timer_starts_when_the_last_visitor_leaves_and_alerts_after_the_time():
    s = Script(alone_config())
    s.frames(10, [("bed",), ()])  # a nurse with the patient
    s.frames(60.9, [("bed",)])  # nurse leaves at 10 s, counted gone at 11 s: alone from 11 s
    assert s.of("patient_alone") == []  # t = 70.8 s
    s.frames(0.1, [("bed",)])  # 70.9 s
    assert s.of("patient_alone") == []
    s.frames(0.1, [("bed",)])  # 71.0 s: 60 s alone
    (alone,) = s.of("patient_alone")
    assert alone.time == pytest.approx(71.0) and alone.severity == "warning"
    assert alone.data["seconds_alone"] == pytest.approx(60.0)
    s.frames(100 - 71.1, [("bed",)])
    s.frames(5, [("bed",), ("door",)])  # someone arrives at 100 s, counted at 101 s
    (attended,) = s.of("patient_attended")
    assert attended.time == pytest.approx(101.0) and attended.severity == "info"
    assert attended.data == {"seconds_alone": 90.0, "count": 2}
    assert s.of("patient_alone") == [alone]  # once per alone period
    # no zone events: the patient zone is timed, not reported, unless listed in zones
    assert s.of("zone_count_changed") == []


def test_patient_alone_timer_stops_when_someone_comes_and_restarts_from_zero():
    s = Script(alone_config())
    s.frames(50, [("bed",)])  # alone from 1 s
    s.frames(5, [("bed",), ()])  # visitor at 50 s (counted at 51 s), leaves at 55 s (counted at 56 s)
    s.frames(60.9, [("bed",)])  # to 115.8 s: only 59.8 s alone since 56 s
    assert s.types() == ["count_changed"] * 3  # no patient_attended either: there was no alert to resolve
    s.frames(0.2, [("bed",)])
    assert [e.time for e in s.of("patient_alone")] == pytest.approx([116.0])


def test_one_person_outside_the_patient_zone_or_an_empty_room_is_not_a_patient_alone():
    s = Script(alone_config()).frames(100, [("floor",)]).frames(100, [])
    assert s.of("patient_alone") == []
    # a patient alone who gets out of bed ends the period without a patient_attended event
    s.frames(70, [("bed",)]).frames(5, [("floor",)]).frames(5, [("floor",), ()])
    assert [e.type for e in s.events if e.type.startswith("patient")] == ["patient_alone"]


def test_over_capacity_alerts_once_per_incident_with_cooldown():
    s = Script(OccupancyAppConfig(max_people=2, cooldown_seconds=60.0))
    s.frames(10, [()] * 2)  # at capacity: fine
    assert s.of("over_capacity") == []
    s.frames(0.9, [()] * 3).frames(1, [()] * 2)  # a third person for less than the stable time
    assert s.of("over_capacity") == []
    s.frames(10, [()] * 3)  # 11.9 s: three people, counted at 12.9 s
    (first,) = s.of("over_capacity")
    assert first.time == pytest.approx(12.9) and first.severity == "warning"
    assert first.data == {"count": 3, "max_people": 2}
    s.frames(10, [()] * 2).frames(10, [()] * 4)  # back to 2, then 4 at 31.9 s: within the cooldown
    assert len(s.of("over_capacity")) == 1
    s.frames(40, [()] * 4)  # the incident is still going when the cooldown ends at 72.9 s: raised then
    assert [e.time for e in s.of("over_capacity")] == pytest.approx([12.9, 72.9])
    assert s.of("over_capacity")[1].data["count"] == 4
    s.frames(100, [()] * 4)  # one alert per incident, however long
    assert len(s.of("over_capacity")) == 2


def test_no_over_capacity_alert_without_a_limit():
    assert Script().frames(20, [()] * 9).of("over_capacity") == []


DAY = 19675 * 86400.0  # a UTC midnight (2023-11-14)


def local(hours, minutes=0, seconds=0.0, offset=2.0):
    """The Unix time of a local wall-clock time on DAY, in a zone at UTC+offset."""
    return DAY + (hours - offset) * 3600 + minutes * 60 + seconds


def hours_config(**kw):
    return OccupancyAppConfig(visiting_hours=(8, 20), utc_offset_hours=2.0, after_hours_max_people=2, **kw)


def test_after_hours_visitor_when_visiting_hours_end():
    s = Script(hours_config(), start=local(19, 59, 50.0)).frames(9.9, [()] * 3)  # to 19:59:59.8
    assert s.of("after_hours_visitor") == []
    s.frames(0.1, [()] * 3)  # 19:59:59.9
    assert s.of("after_hours_visitor") == []
    s.frames(0.1, [()] * 3)  # 20:00:00.0: visiting hours are [8, 20)
    (event,) = s.of("after_hours_visitor")
    assert event.time == local(20) and event.severity == "warning"
    assert event.data == {"count": 3, "max_people": 2, "local_hour": 20.0}


def test_after_hours_visitor_at_the_start_of_visiting_hours():
    # counted at 07:59:59.9: still night
    s = Script(hours_config(), start=local(7, 59, 58.9)).frames(2, [()] * 3)
    assert [e.time for e in s.of("after_hours_visitor")] == pytest.approx([local(7, 59, 59.9)])
    # counted exactly at 08:00: visiting hours
    s = Script(hours_config(), start=local(7, 59, 59.0)).frames(5, [()] * 3)
    assert s.of("after_hours_visitor") == [] and s.app.reported == 3


def test_after_hours_allows_patient_and_staff_and_uses_the_cooldown():
    s = Script(hours_config(cooldown_seconds=600.0), start=local(23))
    s.frames(30, [()] * 2)  # patient and nurse at night
    assert s.of("after_hours_visitor") == []
    s.frames(30, [()] * 3).frames(30, [()] * 2).frames(30, [()] * 3)  # a visitor, gone, back within 10 min
    assert len(s.of("after_hours_visitor")) == 1


def test_injected_hour_of_and_visiting_hours_past_midnight():
    config = OccupancyAppConfig(visiting_hours=(22, 6), hour_of=lambda t: (t / 3600.0) % 24)
    assert [config.is_visiting_hours(h * 3600.0) for h in (21.99, 22, 23.5, 0, 5.99, 6, 12)] == [
        False, True, True, True, True, False, False,
    ]  # fmt: skip
    assert OccupancyAppConfig(utc_offset_hours=-5).local_hour(DAY) == 19.0
    assert OccupancyAppConfig().is_visiting_hours(DAY)  # no visiting hours: always


def test_occupancy_events_fit_the_wire_schema():
    config = alone_config(zones=("bed", "door"), max_people=1, visiting_hours=(8, 20))
    s = Script(config, start=local(21, offset=0.0)).frames(70, [("bed",)]).frames(5, [("bed",), ("door",)])
    assert {"count_changed", "zone_count_changed", "patient_alone", "patient_attended", "over_capacity"} <= set(
        s.types()
    )
    assert_on_the_wire(s.events)
