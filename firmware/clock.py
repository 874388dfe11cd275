"""Frame time that never jumps: Unix-like seconds anchored once, advancing with the monotonic clock.

A Raspberry Pi has no real-time clock: its wall clock steps when NTP first syncs after boot (by days,
sometimes years), and can step again later. The apps time durations (grace periods, rubbing, time on the
floor) on frame times, so frames carry steady time; an event's time is converted to the wall clock's
current reading only when it is stamped (``to_wall``), so what the nurse sees is as right as the clock is.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SteadyClock:
    def __init__(self, wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic) -> None:
        self._wall, self._mono = wall, mono
        self._anchor_wall, self._anchor_mono = wall(), mono()

    def __call__(self) -> float:
        """Seconds, Unix-like at the anchor, then strictly following the monotonic clock."""
        return self._anchor_wall + (self._mono() - self._anchor_mono)

    def to_wall(self, t: float) -> float:
        """A steady time as the wall clock reads it now (the wall clock may have stepped since the anchor)."""
        return self._wall() - (self() - t)


STEADY = SteadyClock()
