"""Which worker runs each periodic task: one at a time, and another one as soon as it dies.

Several server workers (processes, maybe on several hosts) may share one PostgreSQL database; a periodic task
(the offline check, the rollout tick, the job release pass, re-signing the OTA metadata) must run in one of them
at a time: two offline checks would race to announce the same device, two rollout ticks to decide the same step.
Each worker keeps one :class:`Leadership`: a dedicated connection (never the store's, which the handlers use and
which opens and ends transactions) on which it holds a session-level advisory lock per task it leads
(``pg_try_advisory_lock``; the key is derived from the task's name and the schema, :func:`lock_key`). The worker
holding a task's lock runs it; the others try again at each of their intervals and one of them takes the task over
once the holder's session ends: PostgreSQL frees a session's locks when its process exits, when it closes the
connection, and (with the keepalives set here) within about half a minute when its host or network is gone.

Before each run the holder checks that its session is still alive: a worker cut off from the database stops
leading at once instead of acting on a lock it may have lost. A broken connection drops every lock it held (logged
once) and is opened again at the next try. On SQLite there is one worker: :class:`Leadership` with no URL always
leads and opens nothing.

The calls block (a connect waits up to :data:`fleet.store.pg.CONNECT_TIMEOUT_SECONDS`): the server makes them on a
worker thread (:func:`fleet.web.tasks.periodic`); one lock makes them safe from several threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable

from fleet.store.pg import PgConnection, redact

log = logging.getLogger("wardsight.fleet.leader")

LOCK_NAMESPACE = "wardsight-periodic-task"

# The dedicated connection notices a dead peer (libpq keepalives, a cap on unacknowledged data) and so does the
# server (the same settings for this session): a worker whose host vanished loses its locks in ~30 s, not hours.
CLIENT_KEEPALIVES = (
    ("keepalives", "1"),
    ("keepalives_idle", "10"),
    ("keepalives_interval", "5"),
    ("keepalives_count", "3"),
    ("tcp_user_timeout", "30000"),
)
SESSION_SETTINGS = (
    "SET tcp_keepalives_idle = 10",
    "SET tcp_keepalives_interval = 5",
    "SET tcp_keepalives_count = 3",
    "SET tcp_user_timeout = 30000",
)

Clock = Callable[[], float]


def lock_key(name: str, schema: str = "") -> int:
    """The advisory lock key (a signed 64-bit integer) of the task ``name`` for the fleet whose tables live in
    ``schema``: stable across processes and versions (advisory locks are per database, not per schema, so two
    fleets in two schemas of one database do not share their tasks' locks)."""
    digest = hashlib.sha256(f"{LOCK_NAMESPACE}|{schema}|{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def with_keepalives(url: str) -> str:
    """``url`` with :data:`CLIENT_KEEPALIVES` added as connection parameters (those it sets itself stay)."""
    parts = urllib.parse.urlsplit(url)
    given = {key for key, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)}
    extra = "&".join(f"{key}={value}" for key, value in CLIENT_KEEPALIVES if key not in given)
    if not extra:
        return url
    return urllib.parse.urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


class Leadership:
    """One worker's claim on the periodic tasks it runs (see the module's documentation).

    ``url``: the fleet's PostgreSQL database, or None on SQLite (always the leader). ``clock``: the server's
    clock, for :meth:`contact_since`.
    """

    def __init__(self, url: str | None, *, clock: Clock = time.time) -> None:
        self.url = url
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: PgConnection | None = None
        self._schema = ""
        self._held: set[str] = set()
        self._refused: set[str] = set()  # tasks another worker was found running
        self._since: float | None = None  # when the open connection was opened
        self._told = False  # the loss of contact was logged (once, until contact is back)
        self._closed = False

    @property
    def shared(self) -> bool:
        """Whether other workers may share the database (PostgreSQL): only then is leading ever in question."""
        return self.url is not None

    def leads(self, name: str) -> bool:
        """Whether this worker is to run the task ``name`` now: it holds the task's lock, on a live session (taking
        the lock if it is free, opening the connection if there is none). False, never an exception, when the
        database cannot be reached. Always True on SQLite."""
        if self.url is None:
            return True
        with self._lock:
            if self._closed or (self._conn is None and not self._connect()):
                return False
            assert self._conn is not None
            try:
                if name in self._held:
                    self._conn.execute("SELECT 1")  # our session, hence our lock, is still there
                    return True
                row = self._conn.execute("SELECT pg_try_advisory_lock(?)", [lock_key(name, self._schema)]).fetchone()
            except sqlite3.Error as exc:
                self._drop(exc)
                return False
            if row is None or not row[0]:
                self._refused.add(name)
                return False
            self._held.add(name)
            if name in self._refused:  # a takeover is news; every worker's first lead at start-up is not
                log.info("this worker takes %s over", name)
            else:
                log.debug("this worker runs %s", name)
            return True

    def holds(self, name: str) -> bool:
        """Whether this worker held the lock of ``name`` at its last :meth:`leads` (no I/O). True on SQLite."""
        return self.url is None or name in self._held

    def connect(self) -> bool:
        """Open the dedicated connection now if there is none (the server does at start-up); whether it is open."""
        if self.url is None:
            return True
        with self._lock:
            return not self._closed and (self._conn is not None or self._connect())

    def contact_since(self) -> float | None:
        """Since when (the clock's time) this worker has been in unbroken contact with the database: when its
        connection was opened, or now while it has none. None on SQLite (no connection: nothing to lose)."""
        if self.url is None:
            return None
        since = self._since
        return self._clock() if since is None else since

    def close(self) -> None:
        """Give up every task (the session ends: the server frees its locks as its backend exits) and stop trying."""
        with self._lock:
            self._closed = True
            self._close_connection()

    def _connect(self) -> bool:
        assert self.url is not None
        try:
            conn = PgConnection(with_keepalives(self.url))
            try:
                for setting in SESSION_SETTINGS:
                    conn.execute(setting)
                row = conn.execute("SELECT current_schema()").fetchone()
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            self._tell(f"cannot reach the database for the periodic tasks ({exc}); trying again at the next interval")
            return False
        self._conn = conn
        self._schema = str(row[0] or "") if row is not None else ""
        self._since = self._clock()
        if self._told:
            log.info("the periodic tasks' connection to %s is back", redact(self.url))
        self._told = False
        return True

    def _drop(self, exc: Exception) -> None:
        given_up = ", ".join(sorted(self._held)) or "no task"
        self._close_connection()
        self._tell(f"lost the periodic tasks' connection ({exc}); gave up {given_up}, reconnecting at the next try")

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._held.clear()
        self._since = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _tell(self, message: str) -> None:
        if not self._told:
            log.warning("%s: %s", redact(self.url or ""), message)
            self._told = True
