"""Log lines that repeat, printed once a minute with a count: what keeps ``wardsight demo``'s terminal readable.

A refused request (``GET /api/v1/devices from 127.0.0.1 rejected (401): not logged in``) or a quarantined device's
retries (the server's refusal and the agent's "heartbeat refused") come again and again, several a second, with
the same words. :class:`RepeatLimiter`, set on the terminal's log handler (:func:`limit_repeats`), lets each
distinct warning or error (the same logger, level and text) through once per ``window`` seconds and counts the
others; the next one printed after the window says how many were not (``[37 more like this in the last 60 s, not
shown]``). A line that differs in any word (another path, address, device, status or reason) is another line and is
printed at once: no refusal goes unseen, each is seen at least once a minute while it goes on. Lines below WARNING
(``-v``) pass untouched, and so do other handlers' records (nothing is changed in the record but a count).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 60.0
MAX_REMEMBERED = 1024  # distinct lines remembered (the oldest forgotten first): memory bounded whatever is logged
REPEATS_ATTR = "wardsight_repeats_not_shown"  # set on a record printed after some were held back: (count, seconds)


@dataclass
class _Seen:
    printed_at: float
    held_back: int = 0


class RepeatLimiter(logging.Filter):
    """A handler filter: each distinct line at WARNING or above once per ``window`` seconds (see the module)."""

    def __init__(
        self,
        window: float = WINDOW_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        remember: int = MAX_REMEMBERED,
    ) -> None:
        super().__init__()
        self.window, self._clock, self._remember = window, clock, remember
        self._seen: OrderedDict[tuple[str, int, str], _Seen] = OrderedDict()
        self._lock = threading.Lock()  # handlers filter outside their own lock; the server and agent log at once

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, record.getMessage())
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen.printed_at < self.window:
                seen.held_back += 1
                return False
            if seen is not None and seen.held_back:
                setattr(record, REPEATS_ATTR, (seen.held_back, now - seen.printed_at))
            self._seen[key] = _Seen(now)
            self._seen.move_to_end(key)
            while len(self._seen) > self._remember:
                self._seen.popitem(last=False)
        return True


class RepeatCountFormatter(logging.Formatter):
    """``inner``'s line, and after it how many like it were held back by a :class:`RepeatLimiter`."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        repeats = getattr(record, REPEATS_ATTR, None)
        if not repeats:
            return text
        count, seconds = repeats
        return f"{text} [{count} more like this in the last {seconds:.0f} s, not shown]"


def limit_repeats(logger: logging.Logger | None = None, window: float = WINDOW_SECONDS) -> list[logging.Handler]:
    """Set a :class:`RepeatLimiter` on the handlers that print to a terminal (stream handlers: ``wardsight``'s own
    stderr one) of ``logger`` (the root logger); returns them. Other handlers (files, a diagnostics job's capture)
    keep every line."""
    logger = logger or logging.getLogger()
    # Exactly StreamHandler: not a FileHandler (a subclass), nor a test's capture handler.
    chosen: list[logging.Handler] = [h for h in logger.handlers if type(h) is logging.StreamHandler]
    for handler in chosen:
        if not any(isinstance(f, RepeatLimiter) for f in handler.filters):
            handler.addFilter(RepeatLimiter(window))
            handler.setFormatter(RepeatCountFormatter(handler.formatter))
    return chosen
