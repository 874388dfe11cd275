"""Background tasks that live as long as the fleet application (started and stopped by its cleanup contexts)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any


@contextlib.asynccontextmanager
async def running(coro: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run ``coro`` as a task for the body of the ``async with``; cancel it and wait for it at the end."""
    task = asyncio.create_task(coro, name=name)
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
