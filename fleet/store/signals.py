"""Wake-ups between the server's workers: "something changed, look again" (a job released to a device, an alert
stored), published by whichever worker made the change and heard by every worker.

A wake-up carries no data a reader relies on: the woken code reads what changed from the database. So a wake-up
may be repeated, coalesced or widened to "everything" (:data:`ALL`) without harm; only its promptness matters.

- **SQLite** (one worker): :meth:`Signals.publish` calls this process's subscribers at once, as the features did
  before there were workers.
- **PostgreSQL** (several workers): :meth:`Signals.publish` runs ``SELECT pg_notify(channel, payload)`` on the
  store connection, and one listener per worker (:meth:`Signals.running`: a psycopg ``AsyncConnection`` in
  autocommit mode holding ``LISTEN`` on every subscribed channel) calls the subscribers of each notification it
  receives, its own worker's included. What we rely on: a notification is delivered only once the transaction
  that sent it commits. Publishers call :meth:`~Signals.publish` after their writes committed (on the autocommit
  store connection the notification leaves at once); one called inside an open transaction is delivered at its
  commit, and not at all if it rolls back. Either way a woken worker reads committed data, so no wake-up is early.
  Notifications from one connection arrive in the order they were committed.

  If the listener's connection is lost (PostgreSQL restarts, a fail-over, a network cut, found within
  :data:`PING_SECONDS` by a ping), it logs one warning, reconnects with a growing pause (:data:`BACKOFF_SECONDS`
  up to :data:`BACKOFF_MAX_SECONDS`), and meanwhile every subscriber is woken with :data:`ALL` every
  :data:`FALLBACK_SECONDS` and this worker's own wake-ups are delivered directly, so nothing waits for a wake-up
  that cannot come. Reconnected, it wakes everything once (what was published while nobody listened) and logs
  that it listens again.

Channels are named per schema (``wardsight.<schema>.<channel>``): fleets in different schemas of one PostgreSQL
database, the tests' among them, do not wake each other. A payload is at most :data:`MAX_PAYLOAD_BYTES` (the
limit of ``pg_notify``); :meth:`Signals.publish_items` splits a list of ids into payloads that fit, or sends
:data:`ALL` when there are too many.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from fleet.store.connection import Connection, is_postgres

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("wardsight.fleet.signals")

ALL = "*"  # a payload that means "wake everything on this channel"
SEPARATOR = "\n"  # between the items of a payload (ids never hold one)
MAX_PAYLOAD_BYTES = 7999  # PostgreSQL: a payload must be shorter than 8000 bytes
MAX_CHUNKS = 8  # a list of ids that needs more payloads than this is sent as ALL
MAX_CHANNEL_BYTES = 63  # NAMEDATALEN - 1
PING_SECONDS = 5.0  # the listener checks its connection this often when nothing arrives
PING_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 10
BACKOFF_SECONDS = 0.5  # the first pause before reconnecting; doubled each failure
BACKOFF_MAX_SECONDS = 10.0
FALLBACK_SECONDS = 2.0  # while not listening, every subscriber is woken this often
READY_TIMEOUT_SECONDS = 5.0  # startup waits this long at most for the listener's first LISTEN
APPLICATION_NAME = "wardsight-signals"
# The listener's connection notices a dead peer within about half a minute, and so does PostgreSQL (a listener
# whose host vanished would otherwise hold the server's notification queue back until TCP gives up on it).
CLIENT_KEEPALIVES = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5",
                     "keepalives_count": "3", "tcp_user_timeout": "30000"}  # fmt: skip
SERVER_KEEPALIVES = ("SET tcp_keepalives_idle = 10", "SET tcp_keepalives_interval = 5",
                     "SET tcp_keepalives_count = 3", "SET tcp_user_timeout = 30000")  # fmt: skip

Subscriber = Callable[[str], None]  # called with the payload, on the event loop

_CHANNEL = re.compile(r"[a-z][a-z0-9_]*\Z")


class Signals:
    """The app's wake-ups: :meth:`subscribe` while the app is set up, :meth:`publish` from handlers and tasks (on
    the event loop). On PostgreSQL :meth:`running` (a cleanup context's body) holds the listener."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._conn: Connection | None = None  # the store connection, while running on PostgreSQL
        self._namespace = ""
        self._started = False
        self._publish_failing = False
        self.listening = False  # the listener holds LISTEN on every channel now (PostgreSQL)
        self.listener_pid: int | None = None  # its PostgreSQL backend's pid then (pg_stat_activity)

    @property
    def channels(self) -> list[str]:
        return list(self._subscribers)

    def subscribe(self, channel: str, subscriber: Subscriber) -> None:
        """Call ``subscriber(payload)`` for every wake-up on ``channel`` (before the app starts)."""
        if not _CHANNEL.match(channel):
            raise ValueError(f"not a channel name: {channel!r}")
        if self._started:
            raise RuntimeError("subscribe before the app starts: the listener LISTENs on the channels it knows then")
        self._subscribers.setdefault(channel, []).append(subscriber)

    def publish(self, channel: str, payload: str = ALL) -> None:
        """Wake ``channel``'s subscribers on every worker (call it after the change committed). Never raises for a
        database error: the change is stored, so a lost wake-up only delays it (logged once per outage)."""
        if len(payload.encode("utf-8")) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload over {MAX_PAYLOAD_BYTES} bytes (use publish_items)")
        if self._conn is not None:
            try:
                self._conn.execute("SELECT pg_notify(?, ?)", [self.pg_channel(channel), payload])
            except sqlite3.Error as exc:  # (fleet.store.pg raises psycopg's errors as these)
                if not self._publish_failing:
                    log.warning("cannot publish wake-ups through PostgreSQL (%s); other workers catch up later", exc)
                self._publish_failing = True
                self.dispatch(channel, payload)
                return
            if self._publish_failing:
                log.info("publishing wake-ups through PostgreSQL again")
            self._publish_failing = False
            if self.listening:
                return  # our own listener hears it too and wakes this worker's subscribers
        self.dispatch(channel, payload)

    def publish_items(self, channel: str, items: Iterable[str]) -> None:
        """Publish ``items`` (ids) in as few payloads as fit; nothing when there are none."""
        for payload in chunk(items):
            self.publish(channel, payload)

    def dispatch(self, channel: str, payload: str) -> None:
        """Call this worker's subscribers of ``channel``; one that fails is logged and the others still hear."""
        for subscriber in self._subscribers.get(channel, ()):
            try:
                subscriber(payload)
            except Exception:
                log.exception("a %s wake-up subscriber failed", channel)

    def wake_all(self) -> None:
        """Wake every subscriber of every channel with :data:`ALL` (this worker only)."""
        for channel in self.channels:
            self.dispatch(channel, ALL)

    def pg_channel(self, channel: str) -> str:
        """The PostgreSQL channel of ``channel`` in this fleet's schema."""
        name = f"wardsight.{self._namespace}.{channel}"
        if len(name.encode("utf-8")) > MAX_CHANNEL_BYTES:
            digest = hashlib.sha256(self._namespace.encode("utf-8")).hexdigest()[:16]
            name = f"wardsight.{digest}.{channel}"
        return name

    @contextlib.asynccontextmanager
    async def running(self, conn: Connection, listen_url: str | None = None) -> AsyncIterator[None]:
        """While the app runs: on PostgreSQL, publish through ``conn`` (the store connection) and hold the listener
        (on ``listen_url``, by default the store's) and the fallback; on SQLite nothing to run."""
        self._started = True
        if not is_postgres(conn):
            yield
            return
        self._namespace = str(conn.execute("SELECT current_schema()").fetchone()[0])
        url = listen_url if listen_url is not None else _url_of(conn)
        ready = asyncio.Event()
        tasks = [
            asyncio.create_task(listen(self, url, ready), name="signals-listener"),
            asyncio.create_task(fallback(self), name="signals-fallback"),
        ]
        self._conn = conn
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), READY_TIMEOUT_SECONDS)  # (unreachable: the fallback covers)
            yield
        finally:
            self._conn = None
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.listening = False


SIGNALS_KEY = web.AppKey("signals", Signals)


def _url_of(conn: Connection) -> str:
    from fleet.store.pg import PgConnection

    if not isinstance(conn, PgConnection):
        raise TypeError(f"not a PostgreSQL store connection: {conn!r}")
    return conn.url


def chunk(items: Iterable[str]) -> list[str]:
    """``items`` (each once, in order) joined into payloads of at most :data:`MAX_PAYLOAD_BYTES`; ``[ALL]`` when
    they need more than :data:`MAX_CHUNKS` payloads or one cannot be sent as an item."""
    payloads: list[str] = []
    current: list[str] = []
    size = 0
    for item in dict.fromkeys(items):
        length = len(item.encode("utf-8"))
        if not item or item == ALL or SEPARATOR in item or length > MAX_PAYLOAD_BYTES:
            return [ALL]
        if current and size + len(SEPARATOR) + length > MAX_PAYLOAD_BYTES:
            payloads.append(SEPARATOR.join(current))
            current, size = [], 0
        size += length + (len(SEPARATOR) if current else 0)
        current.append(item)
    if current:
        payloads.append(SEPARATOR.join(current))
    return [ALL] if len(payloads) > MAX_CHUNKS else payloads


def items_of(payload: str) -> list[str] | None:
    """The items of a payload made by :func:`chunk`; None for :data:`ALL`."""
    return None if payload == ALL else [item for item in payload.split(SEPARATOR) if item]


# ---- the listener (PostgreSQL) ---------------------------------------------------------------------------


async def listen(signals: Signals, url: str, ready: asyncio.Event) -> None:
    """LISTEN on ``signals``' channels and dispatch what arrives, reconnecting for ever with a growing pause."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from fleet.store.pg import redact

    pause, lost = BACKOFF_SECONDS, False
    names = {signals.pg_channel(channel): channel for channel in signals.channels}
    given = conninfo_to_dict(url)
    conninfo = make_conninfo(
        url, connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name=APPLICATION_NAME,
        **{key: value for key, value in CLIENT_KEEPALIVES.items() if key not in given},
    )  # fmt: skip
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
            async with conn:
                for statement in SERVER_KEEPALIVES:
                    await conn.execute(statement)
                for name in names:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
                signals.listening, signals.listener_pid, pause = True, conn.info.backend_pid, BACKOFF_SECONDS
                ready.set()
                if lost:
                    log.info("listening for wake-ups from the other workers again")
                    lost = False
                signals.wake_all()  # whatever was published while nobody here listened
                await _receive(conn, signals, names)
        except Exception as exc:  # psycopg.Error, OSError, a ping's timeout: reconnect
            if not lost:
                log.warning(
                    "wake-up listener: no connection to %s (%s: %s); reconnecting, and waking everything"
                    " every %g s meanwhile",
                    redact(url), type(exc).__name__, _first_line(exc), FALLBACK_SECONDS,
                )  # fmt: skip
            lost = True
        finally:
            signals.listening, signals.listener_pid = False, None
        await asyncio.sleep(pause)
        pause = min(pause * 2, BACKOFF_MAX_SECONDS)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "-"


async def _receive(conn: psycopg.AsyncConnection[Any], signals: Signals, names: dict[str, str]) -> None:
    """Dispatch notifications until the connection fails (a ping every :data:`PING_SECONDS` of silence finds a
    connection that died without a word; psycopg keeps what arrives during the ping for the next ``notifies``)."""
    while True:
        async for note in conn.notifies(timeout=PING_SECONDS):
            channel = names.get(note.channel)
            if channel is not None:
                signals.dispatch(channel, note.payload)
        await asyncio.wait_for(conn.execute("SELECT 1"), PING_TIMEOUT_SECONDS)


async def fallback(signals: Signals) -> None:
    """While the listener is not listening, wake everything every :data:`FALLBACK_SECONDS`."""
    while True:
        await asyncio.sleep(FALLBACK_SECONDS)
        if not signals.listening:
            signals.wake_all()
