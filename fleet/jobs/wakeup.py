"""Devices waiting in their long poll (``GET /api/v1/device/jobs?wait=25``), and what wakes them.

A device keeps one long poll open; whatever has news for it (a job released to it, an update offered to it)
calls :meth:`DeviceWaiters.wake` and the poll answers at once. The poll also names the update offer waiting
for the device (``wire.UPDATE_HINT_FIELD``), asked through ``UPDATE_HINT_KEY`` (set by ``fleet.ota.rollouts``),
so the jobs feature does not import the OTA one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator

from aiohttp import web

from fleet.store.connection import Database

UpdateHint = Callable[[Database, str, float], "str | None"]  # (db, device id, now) -> offer key


class DeviceWaiters:
    """Long polls in flight per device (in this server process)."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}
        self._polls: dict[str, int] = {}  # long polls in flight per device (a woken poll is still one)

    def wake(self, device_ids: Iterable[str]) -> None:
        for device_id in device_ids:
            for event in self._events.pop(device_id, ()):
                event.set()

    def connected(self, device_id: str) -> bool:
        """Whether the device holds a long poll open now (news reaches it within a second)."""
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
    """The app's waiters, made on first use while the app is being set up."""
    if WAITERS_KEY not in app:
        app[WAITERS_KEY] = DeviceWaiters()
    return app[WAITERS_KEY]
