"""The agent's recent frame rate: frames analysed per second over the last minute, for heartbeats.

A rate averaged since the agent started hides a device that slowed down after a day (the fleet judges "too slow
for the apps" on it), and one over the last few seconds jumps with every pause. Pure: counts and monotonic times
in, a rate out.
"""

from __future__ import annotations

from collections import deque

WINDOW_S = 60.0  # the span the rate is measured over, once the agent has run that long
MIN_SPAN_S = 5.0  # before the agent has run this long there is no rate yet (None: "measuring", not "0 fps")


class RecentRate:
    """Frames per second over about the last ``window_s`` seconds (the whole run while shorter than that)."""

    def __init__(self, started: float, window_s: float = WINDOW_S, min_span_s: float = MIN_SPAN_S) -> None:
        self.started, self.window_s, self.min_span_s = started, window_s, min_span_s
        self._samples: deque[tuple[float, int]] = deque([(started, 0)])

    def rate(self, now: float, count: int) -> float | None:
        """The rate at ``now`` with ``count`` frames analysed since the start (counts never go down); None while
        the agent has run less than ``min_span_s`` (its first heartbeat goes out before its first frame)."""
        if now - self.started < self.min_span_s:
            return None
        samples = self._samples
        samples.append((now, count))
        # Drop samples older than the window, keeping one at or before its start: the span covers the whole
        # window, or the whole run while that is shorter.
        while len(samples) > 2 and samples[1][0] <= now - self.window_s:
            samples.popleft()
        then, before = samples[0]
        return round((count - before) / (now - then), 2)
