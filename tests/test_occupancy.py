import numpy as np

from accelerators.types import Person
from firmware.apps.occupancy import OccupancyApp
from firmware.scene import Scene, ScenePerson
from firmware.tracking import TrackedPerson


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
    assert events[0].time == __import__("pytest").approx(3.0, abs=0.11)


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
