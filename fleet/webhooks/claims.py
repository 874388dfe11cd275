"""Claiming an endpoint's head delivery for one attempt: each delivery is attempted by one worker at a time.

A drain (:mod:`fleet.webhooks.worker`) asks :meth:`claim` for its endpoint's head, sends it, and records the
outcome through :meth:`Claim.record`. How a claim is held depends on who else may send from the same queue:

- **SQLite** (:class:`SharedClaims`): one server process, one worker, one drain per endpoint: nothing else can
  send the endpoint's deliveries, so a claim is only the head as read on the app's connection, and the outcome is
  recorded in a write transaction of its own after the attempt. Nothing is held while the request is out.
- **PostgreSQL** (:class:`PgClaims`): several workers (processes, maybe hosts) drain the same queue. A claim is a
  transaction on a *dedicated* connection (never the app's shared one, which must not hold a transaction across an
  ``await``; a small pool, one per concurrent drain): it reads the head id, locks that row with
  ``SELECT ... FOR UPDATE SKIP LOCKED`` and checks it is still the head (a redelivered older one may have come
  back). If another worker holds the row, :class:`Busy`: that endpoint is being drained elsewhere (the worker
  looks again at its next poll), and the next delivery is never taken instead, which would break the order. The
  row lock is held for the HTTP attempt; the outcome is written in the same transaction (taking the store's write
  lock, :data:`fleet.store.schema.WRITE_LOCK_KEY`, for the writes only, with no ``await`` until COMMIT) and
  committed, which ends the claim. A claim is held at most ``hold_seconds`` (the attempt's timeout and a grace):
  PostgreSQL ends a session idle in its claim for longer (``idle_in_transaction_session_timeout``, set for the
  claim's transaction only), so a worker that hangs rather than dies lets go too.

A worker that dies mid-attempt (killed, its host lost, its connection dropped): PostgreSQL ends its session, the
transaction rolls back, the row lock goes, and the delivery is pending exactly as before; another worker sends it
again at its next look at the queue. Delivery is therefore at least once, here as after a crash between a
receiver's 2xx and its record: the receiver deduplicates on the ``webhook-id`` header, the message id every
attempt of a delivery carries unchanged (:func:`fleet.webhooks.envelope.msg_id_for`).

Nothing on the app's shared connection waits for a claimed row (an ``await``-free statement waiting on a lock
that this same process's drain holds would stop the event loop for good): pending deliveries are written only by
their claim (queueing inserts new rows, redelivering updates dead ones), and
:func:`fleet.webhooks.store.delete_endpoint` refuses rather than waits while one is claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from fleet.store.connection import Database, is_postgres
from fleet.store.pg import PgConnection, PgDatabase
from fleet.store.schema import WRITE_LOCK_KEY, transaction
from fleet.webhooks import queue

log = logging.getLogger("wardsight.fleet.delivery")

Write = Callable[[Database], None]
HEAD_TRIES = 3  # looks at an endpoint's head per claim when older deliveries keep coming back (redeliver)


class Busy(Exception):
    """The endpoint's head delivery is claimed by another worker: the endpoint is being drained elsewhere."""

    def __init__(self, endpoint_id: int) -> None:
        super().__init__(f"webhook endpoint {endpoint_id}: its head delivery is being sent by another worker")
        self.endpoint_id = endpoint_id


class ClaimLost(Exception):
    """The claim's connection was lost before the attempt was recorded: its row lock went with it, so another
    worker may be sending the delivery by now. Nothing is recorded; the delivery stays pending (at least once)."""

    def __init__(self, delivery_id: int) -> None:
        super().__init__(f"webhook delivery {delivery_id}: the claim's database connection was lost")
        self.delivery_id = delivery_id


class Claim:
    """One claimed head delivery: ``delivery`` (all columns), ``db`` to read with, :meth:`record` to write with."""

    def __init__(self, db: Database, delivery: dict[str, Any], commit: Callable[[Write], None]) -> None:
        self.db = db
        self.delivery = delivery
        self._commit = commit

    def record(self, write: Write) -> None:
        """Run ``write(db)`` (the attempt's result) in a write transaction and commit it."""
        self._commit(write)


class Claims(Protocol):
    shared: bool  # whether other workers drain the same queue (the worker polls it more often then)
    holding: dict[int, Any]  # delivery id -> the connection its claim is on, while it is claimed

    def claim(self, endpoint_id: int) -> contextlib.AbstractAsyncContextManager[Claim | None]:
        """The endpoint's head, claimed for the block (None: nothing pending). Raises :class:`Busy`."""
        ...

    def close(self) -> None: ...


def for_database(db: Database, size: int, hold_seconds: float) -> Claims:
    """The claims for the app's database ``db``: on PostgreSQL :class:`PgClaims` (``size`` connections at most, to
    the same database and schema as ``db``, each claim held ``hold_seconds`` at most)."""
    if is_postgres(db):
        return PgClaims(str(db.conn.url), size, hold_seconds)
    return SharedClaims(db)


class SharedClaims:
    """SQLite: the head as read on the app's own connection; the result recorded in a transaction of its own."""

    shared = False

    def __init__(self, db: Database) -> None:
        self.db = db
        self.holding: dict[int, Any] = {}

    @contextlib.asynccontextmanager
    async def claim(self, endpoint_id: int) -> AsyncIterator[Claim | None]:
        head = queue.head(self.db, endpoint_id)
        if head is None:
            yield None
            return
        self.holding[head["id"]] = self.db.conn
        try:
            yield Claim(self.db, head, self._commit)
        finally:
            self.holding.pop(head["id"], None)

    def _commit(self, write: Write) -> None:
        with transaction(self.db.conn):
            write(self.db)

    def close(self) -> None:
        """Nothing of its own to close (the app closes its database)."""


class PgClaims:
    """PostgreSQL: each claim a transaction holding the head's row lock on a dedicated connection (a small pool)."""

    shared = True

    def __init__(self, url: str, size: int, hold_seconds: float) -> None:
        self.url = url
        self.size = size
        self.hold_seconds = hold_seconds
        self.idle: list[PgConnection] = []
        self.holding: dict[int, Any] = {}
        self.closed = False

    @contextlib.asynccontextmanager
    async def claim(self, endpoint_id: int) -> AsyncIterator[Claim | None]:
        conn = await self._connection()
        try:
            delivery = _lock_head(conn, endpoint_id, self.hold_seconds)
            if delivery is None:
                yield None
                return
            self.holding[delivery["id"]] = conn
            try:
                yield Claim(PgDatabase(conn), delivery, lambda write: _commit(conn, delivery["id"], write))
            finally:
                self.holding.pop(delivery["id"], None)
        finally:
            self._release(conn)

    async def _connection(self) -> PgConnection:
        if self.closed:
            raise RuntimeError("the webhook worker's database connections are closed")
        if self.idle:
            return self.idle.pop()
        opening = asyncio.ensure_future(asyncio.to_thread(PgConnection, self.url))  # connecting may take a while
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_opened)
            raise

    def _release(self, conn: PgConnection) -> None:
        """Back to the pool, its transaction (if any: a claim not recorded) rolled back; dropped if it is lost."""
        if not _lost(conn) and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.DatabaseError:
                conn.close()
        if _lost(conn):
            with contextlib.suppress(Exception):
                conn.close()
        elif self.closed or len(self.idle) >= self.size:
            conn.close()
        else:
            self.idle.append(conn)

    def close(self) -> None:
        """Close every connection (the app is stopping): claims still held end, their deliveries stay pending."""
        self.closed = True
        for conn in [*self.idle, *self.holding.values()]:
            with contextlib.suppress(Exception):
                conn.close()
        self.idle.clear()


def _lock_head(conn: PgConnection, endpoint_id: int, hold_seconds: float) -> dict[str, Any] | None:
    """BEGIN, and lock the endpoint's head delivery: the row, or None if nothing is pending. Raises :class:`Busy`."""
    db = PgDatabase(conn)
    for _ in range(HEAD_TRIES):
        if conn.in_transaction:
            conn.execute("ROLLBACK")  # an older delivery came back (redelivered) while we locked the one after it
        conn.execute("BEGIN")
        timeout_ms = str(int(hold_seconds * 1000))
        conn.execute("SELECT set_config('idle_in_transaction_session_timeout', ?, true)", [timeout_ms])
        head_id = queue.head_id(db, endpoint_id)
        if head_id is None:
            return None
        delivery = queue.lock_pending(db, head_id)
        if delivery is None:  # another worker holds it (or has just sent it): it drains this endpoint
            raise Busy(endpoint_id)
        if queue.head_id(db, endpoint_id) == head_id:
            return delivery
    return None


def _commit(conn: PgConnection, delivery_id: int, write: Write) -> None:
    """Write the attempt's result in the claim's transaction (under the store's write lock) and commit. Raises
    :class:`ClaimLost` if that transaction is gone: never written outside it, on a connection opened again."""
    if _lost(conn) or not conn.in_transaction:
        raise ClaimLost(delivery_id)
    try:
        conn.execute("SELECT pg_advisory_xact_lock(?)", [WRITE_LOCK_KEY])
        write(PgDatabase(conn))
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:  # (the session ended: PgOperationalError, or a 25P03 PgDatabaseError)
        if _lost(conn):
            raise ClaimLost(delivery_id) from exc
        raise


def _lost(conn: PgConnection) -> bool:
    """Whether ``conn`` is closed or psycopg found it broken (PostgreSQL ended the session)."""
    return conn.closed or bool(getattr(conn.raw, "broken", False))


def _close_opened(opening: asyncio.Future[PgConnection]) -> None:
    """A connection whose opening was cancelled: close it once it is open."""
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()
