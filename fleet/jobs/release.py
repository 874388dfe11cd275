"""The release pass: expire, stop and release due jobs (:func:`fleet.jobs.store.advance`) and wake the devices
whose long poll waits for them. Routes run it for the batches they touch; a background task runs it for all
every second."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from fleet.jobs import store
from fleet.jobs.wakeup import WAITERS_KEY
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.web.tasks import periodic

TICK_SECONDS = 1.0


def request_time(request: web.Request) -> float:
    """The server's time for this request (the app's clock)."""
    return request.app[CLOCK_KEY]()


def step(app: web.Application, now: float, batch_ids: Iterable[str] | None = None) -> None:
    """Advance ``batch_ids`` (all batches with unacknowledged jobs when None) and wake the devices concerned."""
    app[WAITERS_KEY].wake(store.advance(app[DB_KEY].db, now, batch_ids))


def _tick(app: web.Application) -> None:
    step(app, app[CLOCK_KEY]())


def _interval(app: web.Application) -> float:
    return TICK_SECONDS


ticker = periodic(_tick, _interval, name="job-release", what="job release pass")
