"""Frame time does not jump when the wall clock steps (a Pi without a real-time clock syncing NTP)."""

from firmware.agent import EventStamper
from firmware.apps.base import AppEvent
from firmware.clock import SteadyClock
from wardsight import wire


class Fake:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_steady_time_ignores_wall_clock_steps_and_events_get_the_corrected_wall_time():
    wall, mono = Fake(86_400.0), Fake(100.0)  # booted believing it is 2 January 1970
    clock = SteadyClock(wall, mono)
    start = clock()
    mono.t += 5.0
    wall.t = 1_800_000_000.0  # NTP syncs: the wall clock steps forward by decades
    assert clock() - start == 5.0  # durations seen by the apps are untouched
    mono.t += 1.0
    wall.t += 1.0
    # an event from the frame 1 s ago is stamped with the wall clock's current (correct) reading, minus 1 s
    assert clock.to_wall(clock() - 1.0) == 1_800_000_000.0

    key = wire.generate_key()
    stamp = EventStamper("dev-1", "3B-12", lambda ev: wire.sign_event(ev, key), to_wall=clock.to_wall)
    token = stamp(AppEvent(app="fall", type="fall", time=clock() - 2.0))
    event = wire.verify_event(token, lambda kid: key.public_key())
    assert event.time == 1_800_000_001.0 - 2.0


def test_steady_time_does_not_go_back_when_the_wall_clock_does():
    wall, mono = Fake(1_800_000_000.0), Fake(0.0)
    clock = SteadyClock(wall, mono)
    before = clock()
    wall.t -= 3600  # stepped back an hour
    mono.t += 0.5
    assert clock() == before + 0.5
