"""Background tasks that live as long as the fleet application (started and stopped by its cleanup contexts).

A :func:`periodic` task runs in one worker at a time: before each step the app's :class:`~fleet.store.leader.
Leadership` (one per app, opened by its first periodic task and closed after its last) says whether this worker
leads the task's ``name``; the others skip the step and take the task over when its leader dies. On SQLite there
is one worker, which always leads, and nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

from fleet.store.connection import is_postgres
from fleet.store.leader import Leadership
from fleet.web.appkeys import CLOCK_KEY, DB_KEY

log = logging.getLogger("wardsight.fleet.tasks")


@contextlib.asynccontextmanager
async def running(coro: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run ``coro`` as a task for the body of the ``async with``; cancel it and wait for it at the end."""
    task = asyncio.create_task(coro, name=name)
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def repeat(
    app: web.Application,
    step: Callable[[web.Application], Any],
    interval: Callable[[web.Application], float],
    *,
    what: str,
    sleep_first: bool = True,
) -> None:
    """Call ``step(app)`` every ``interval(app)`` seconds until cancelled. An exception in a step (a locked
    database, a bad row) is logged with ``what`` and the loop goes on: it must not end the task."""
    while True:
        if sleep_first:
            await asyncio.sleep(interval(app))
        try:
            result = step(app)
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("%s failed; trying again in %.0f s", what, interval(app))
        if not sleep_first:
            await asyncio.sleep(interval(app))


class _Shared:
    """The app's :class:`Leadership` and how many of its periodic tasks are running."""

    def __init__(self, leadership: Leadership) -> None:
        self.leadership = leadership
        self.users = 0


LEADERSHIP_KEY = web.AppKey("leadership", _Shared)


def leadership_of(app: web.Application) -> Leadership | None:
    """The app's :class:`Leadership` while its periodic tasks run (None before they start or without any)."""
    shared = app.get(LEADERSHIP_KEY)
    return None if shared is None else shared.leadership


def _database_url(app: web.Application) -> str | None:
    """The URL of the app's store if it is on PostgreSQL (its workers may be several), else None."""
    fleet = app.get(DB_KEY)
    conn = None if fleet is None else fleet.db.conn
    return str(conn.url) if conn is not None and is_postgres(conn) else None


async def _join(app: web.Application) -> Leadership:
    shared = app.get(LEADERSHIP_KEY)
    if shared is None:
        shared = _Shared(Leadership(_database_url(app), clock=app.get(CLOCK_KEY) or time.time))
        app[LEADERSHIP_KEY] = shared
        if shared.leadership.shared:  # open it now: its contact with the database counts from start-up
            await asyncio.to_thread(shared.leadership.connect)
    shared.users += 1
    return shared.leadership


async def _leave(app: web.Application) -> None:
    shared = app[LEADERSHIP_KEY]
    shared.users -= 1
    if shared.users == 0 and shared.leadership.shared:
        await asyncio.to_thread(shared.leadership.close)


def led(leadership: Leadership, name: str, step: Callable[[web.Application], Any]) -> Callable[[web.Application], Any]:
    """``step``, run only when this worker leads ``name`` (asked on a worker thread: it may wait for the database)."""
    if not leadership.shared:
        return step

    async def step_if_leading(app: web.Application) -> None:
        if not await asyncio.to_thread(leadership.leads, name):
            return
        result = step(app)
        if asyncio.iscoroutine(result):
            await result

    return step_if_leading


def periodic(
    step: Callable[[web.Application], Any],
    interval: Callable[[web.Application], float],
    *,
    name: str,
    what: str,
    sleep_first: bool = True,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context (``app.cleanup_ctx.append(...)``) running :func:`repeat` for the app's lifetime, the step
    only while this worker leads ``name`` (the task's name among the fleet's workers: one per task)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        leadership = await _join(app)
        try:
            task = repeat(app, led(leadership, name, step), interval, what=what, sleep_first=sleep_first)
            async with running(task, name):
                yield
        finally:
            await _leave(app)

    return context
