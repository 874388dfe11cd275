"""Sends signed events to the fleet server from a background thread, in order, with backoff.

Events wait in an :class:`firmware.outbox.EventQueue` (in memory, or the on-disk SQLite outbox the agent
uses), bounded (the oldest unsent event is dropped, and counted, when it overflows). A 4xx reply about the
event itself is final for that event (logged, not retried); 408/425/429, an unreachable server and a
server that does not accept the device right now (pending, quarantined, credential lost) are retried with
exponential backoff, keeping order and keeping the event.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass

from firmware.outbox import EventQueue, MemoryQueue
from firmware.transport import NotAuthorizedError, Reply, UnreachableError, post_jws

log = logging.getLogger("wardsight.device.sender")
RETRY_STATUSES = frozenset({408, 425, 429})


@dataclass
class SenderStats:
    sent: int = 0
    rejected: int = 0
    dropped: int = 0
    retries: int = 0


class EventSender:
    def __init__(
        self,
        url: str,
        *,
        queue: EventQueue | None = None,
        max_queue: int = 1000,
        post: Callable[[str, str], Reply] = post_jws,
        max_backoff: float = 30.0,  # seconds
    ) -> None:
        self.url = url
        self.stats = SenderStats()
        self._queue: EventQueue = queue if queue is not None else MemoryQueue(max_queue)
        self._post = post
        self._max_backoff = max_backoff
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="event-sender", daemon=True)

    def start(self) -> EventSender:
        self._thread.start()
        return self

    def submit(self, jws: str) -> None:
        with self._cond:
            try:
                dropped = self._queue.push(jws)
            except sqlite3.Error as exc:  # e.g. a full disk: lose this event, keep the agent running
                self.stats.dropped += 1
                log.error("cannot queue an event (%s): dropped", exc)
                return
            if dropped:
                self.stats.dropped += dropped
                log.error("event queue full: dropped the %d oldest unsent event(s)", dropped)
            self._cond.notify()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when stopping."""
        with self._cond:
            return self._cond.wait_for(lambda: self._stopping, timeout=seconds)

    def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                outcome = self._send_head(backoff)
            except Exception:  # a locked outbox, a bug in a transport: never end the sender thread
                log.exception("event sender: unexpected error; retrying in %.1fs", backoff)
                outcome = "retry"
            if outcome == "stop":
                return
            if outcome == "retry":
                self.stats.retries += 1
                if self._wait(backoff):
                    return
                backoff = min(backoff * 2, self._max_backoff)
            else:
                backoff = 0.5

    def _send_head(self, backoff: float) -> str:
        """Send the oldest queued event once: "stop", "retry" (keep it, back off) or "done" (removed)."""
        with self._cond:
            while not len(self._queue) and not self._stopping:
                self._cond.wait()
            entry = self._queue.head()
            if entry is None:
                return "stop"
        key, jws = entry
        try:
            reply = self._post(self.url, jws)
        except (UnreachableError, NotAuthorizedError) as exc:
            log.warning("%s; retrying in %.1fs (%d queued)", exc, backoff, self.pending)
            return "retry"
        if reply.status in RETRY_STATUSES:
            log.warning("server asked to retry (HTTP %d); retrying in %.1fs", reply.status, backoff)
            return "retry"
        with self._cond:
            self._queue.remove(key)  # exactly the entry sent, even if the bound dropped it meanwhile
        if reply.status in (200, 201):
            self.stats.sent += 1
        else:
            self.stats.rejected += 1
            log.error("server refused an event (HTTP %d): %s", reply.status, reply.error)
        return "done"

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Try to send what is queued for up to ``flush_timeout`` seconds, then stop."""
        deadline = threading.Event()
        with self._cond:
            self._cond.notify_all()
        for _ in range(int(flush_timeout * 20)):
            if self.pending == 0:
                break
            deadline.wait(0.05)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
