"""Devices waiting in their long poll (``GET /api/v1/device/jobs?wait=25``), and what wakes them.

A device keeps one long poll open; whatever has news for it (a job released to it, an update offered to it)
calls :meth:`DeviceWaiters.wake` and the poll answers at once, on whichever worker the device's poll is open:
the wake-up goes out on the :data:`CHANNEL` of the app's :class:`~fleet.store.signals.Signals` (on SQLite, straight
to this process's polls; on PostgreSQL through NOTIFY to every worker, whose listener wakes its own polls with
:meth:`DeviceWaiters.wake_here`). A woken poll reads its jobs from the database, so a wake-up for a device with
nothing new, or for every device (too many ids for one notification), costs one query.

The poll also names the update offer waiting for the device (``wire.UPDATE_HINT_FIELD``), asked through
``UPDATE_HINT_KEY`` (set by ``fleet.ota.rollouts``), so the jobs feature does not import the OTA one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator

from aiohttp import web

from fleet.store import signals
from fleet.store.connection import Database

UpdateHint = Callable[[Database, str, float], "str | None"]  # (db, device id, now) -> offer key
CHANNEL = "jobs"  # payload: device ids (signals.chunk), or signals.ALL


class DeviceWaiters:
    """Long polls in flight per device in this server process (worker), and the wake-ups that reach every worker's
    (through ``signals`` when given; without, this process's only)."""

    def __init__(self, wakeups: signals.Signals | None = None) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}
        self._polls: dict[str, int] = {}  # long polls in flight per device (a woken poll is still one)
        self._signals = wakeups
        if wakeups is not None:
            wakeups.subscribe(CHANNEL, self._heard)

    def wake(self, device_ids: Iterable[str]) -> None:
        """Answer the long polls of ``device_ids`` on every worker (call it after the news committed)."""
        if self._signals is None:
            self.wake_here(device_ids)
        else:
            self._signals.publish_items(CHANNEL, device_ids)

    def wake_here(self, device_ids: Iterable[str] | None) -> None:
        """Answer this worker's long polls of ``device_ids`` (None: all of them)."""
        if device_ids is None:
            device_ids = list(self._events)
        for device_id in device_ids:
            for event in self._events.pop(device_id, ()):
                event.set()

    def _heard(self, payload: str) -> None:
        self.wake_here(signals.items_of(payload))

    def connected(self, device_id: str) -> bool:
        """Whether the device holds a long poll open now *on this worker* (news reaches it within a second). With
        several workers a device polling another worker is not seen here: this is this worker's view."""
        return self._polls.get(device_id, 0) > 0

    @contextlib.contextmanager
    def polling(self, device_id: str) -> Iterator[None]:
        """Around a device's whole long poll (for :meth:`connected`)."""
        self._polls[device_id] = self._polls.get(device_id, 0) + 1
        try:
            yield
        finally:
            left = self._polls.pop(device_id) - 1
            if left:
                self._polls[device_id] = left

    async def wait(self, device_id: str, timeout: float) -> None:
        event = asyncio.Event()
        waiting = self._events.setdefault(device_id, set())
        waiting.add(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            waiting.discard(event)
            if not waiting and self._events.get(device_id) is waiting:
                del self._events[device_id]


WAITERS_KEY = web.AppKey("device_waiters", DeviceWaiters)
UPDATE_HINT_KEY: web.AppKey[UpdateHint] = web.AppKey("update_hint")


def waiters(app: web.Application) -> DeviceWaiters:
    """The app's waiters, made on first use while the app is being set up (woken through the app's
    :data:`~fleet.store.signals.SIGNALS_KEY` when it has one, as :func:`fleet.app.create_app` gives it)."""
    if WAITERS_KEY not in app:
        app[WAITERS_KEY] = DeviceWaiters(app.get(signals.SIGNALS_KEY))
    return app[WAITERS_KEY]
