"""Group commit: the writes of device requests that arrive together share one transaction and one commit.

On SQLite a commit is an fsync, the largest single cost of storing an event. :meth:`GroupCommit.write` queues a
write (a function of the connection) and returns once it is committed; the queue is run (see
:class:`GroupCommit` for when) as one transaction, each write inside a savepoint of its own, so a write
that raises is undone alone and its caller gets the exception. Every caller is answered after the commit, so an
acknowledged write is on disk exactly as with a commit per request. If the commit fails (a full disk), every
write of the batch fails with it and nothing of it is stored.

No transaction is open between rounds: other code (reads, the console's writes) sees only committed data and
runs its own transactions as before.

On PostgreSQL too: there a commit waits for its WAL flush, and the write lock every write transaction takes
(:data:`fleet.store.schema.WRITE_LOCK_KEY`) is held through it, so a commit per request made every worker wait one
WAL flush per request of any worker. The lock is taken when a batch runs, never while it gathers: another worker
waits one batch's writes and one commit. (Measured with ``bench/fleet_load.py``: one worker at 3,000 devices went
from 174 to 313 events/s.)
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from fleet.store.connection import Connection
from fleet.store.schema import transaction

T = TypeVar("T")
Write = Callable[[Connection], Any]


class GroupCommit:
    """Writes on one connection, grouped into shared commits (see the module).

    A request announces its write while it is still being checked (:meth:`coming`); a batch is committed as soon
    as no announced write is still on its way, or ``max_wait`` seconds after its first write, or when it holds
    ``max_batch`` writes: requests checked off the event loop at the same time share a commit.
    """

    def __init__(self, conn: Connection, *, max_batch: int = 256, max_wait: float = 0.005) -> None:
        self._conn = conn
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._queue: list[tuple[Write, asyncio.Future[Any]]] = []
        self._coming = 0
        self._timer: asyncio.Handle | None = None
        self.commits = 0  # batches committed (the bench and tests read these)
        self.writes = 0  # writes committed in them

    @contextlib.contextmanager
    def coming(self) -> Iterator[None]:
        """Inside the block a write (:meth:`submit`) is on its way: the open batch waits for it (up to max_wait)."""
        self._coming += 1
        try:
            yield
        finally:
            self._coming -= 1
            if self._queue and not self._coming:
                self._flush_soon(0.0)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """``fn(connection)`` inside a write transaction; its result once committed (or its exception)."""
        result: T = await self.submit(fn)
        return result

    def submit(self, fn: Callable[[Connection], T]) -> asyncio.Future[T]:
        """Queue ``fn(connection)``; the future of its result, set once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((fn, future))
        if len(self._queue) >= self._max_batch:
            self.flush()
        else:
            self._flush_soon(0.0 if not self._coming else self._max_wait)
        return future

    def _flush_soon(self, delay: float) -> None:
        if self._timer is not None and (delay or not isinstance(self._timer, asyncio.TimerHandle)):
            return  # (already due as soon, or sooner)
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay, self.flush) if delay else loop.call_soon(self.flush)

    def flush(self) -> None:
        """Run and commit every queued write now, in one transaction, and answer their callers."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queue, self._queue = self._queue, []
        if not queue:
            return
        try:
            with transaction(self._conn) as conn:
                outcomes = [_attempt(conn, fn) for fn, _ in queue]
        except BaseException as exc:  # the commit failed, or SQLite ended the transaction itself: nothing was stored
            for _, future in queue:
                if not future.done():
                    future.set_exception(_copy(exc) if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        self.commits += 1
        self.writes += len(queue)
        for (_, future), (value, error) in zip(queue, outcomes, strict=True):
            if future.done():  # (its caller was cancelled; the write is stored all the same)
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)


def _attempt(conn: Connection, fn: Write) -> tuple[Any, Exception | None]:
    """``fn(conn)`` in a savepoint: (its result, None), or (None, its exception) with its writes undone."""
    conn.execute("SAVEPOINT group_write")
    try:
        value = fn(conn)
    except Exception as exc:
        if not conn.in_transaction:  # SQLite rolled the whole transaction back (e.g. a full disk): the batch fails
            raise
        conn.execute("ROLLBACK TO group_write")
        conn.execute("RELEASE group_write")
        return None, exc
    try:
        conn.execute("RELEASE group_write")
    except Exception as exc:  # (PostgreSQL: the write caught a failed statement and went on; its writes are void)
        if not conn.in_transaction:
            raise
        conn.execute("ROLLBACK TO group_write")
        conn.execute("RELEASE group_write")
        return None, exc
    return value, None


def _copy(exc: Exception) -> Exception:
    """One exception object per waiting caller (each raise adds to its traceback)."""
    try:
        return copy.copy(exc)
    except Exception:
        return exc
