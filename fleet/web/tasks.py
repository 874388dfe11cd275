"""Background tasks that live as long as the fleet application (started and stopped by its cleanup contexts)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

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


def periodic(
    step: Callable[[web.Application], Any],
    interval: Callable[[web.Application], float],
    *,
    name: str,
    what: str,
    sleep_first: bool = True,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context (``app.cleanup_ctx.append(...)``) running :func:`repeat` for the app's lifetime."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with running(repeat(app, step, interval, what=what, sleep_first=sleep_first), name):
            yield

    return context
