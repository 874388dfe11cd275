"""Where signed events wait to be sent: in memory, or in an on-disk SQLite outbox that survives restarts.

Both keep order and a bound. The sender takes the oldest entry, sends it, and removes exactly that entry
(by its key) once the server has answered; an entry dropped meanwhile by the bound is not confused with
the next one. The server stores each event id once, so an entry sent but not yet removed when the agent
dies is harmless when it is sent again after the restart.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Protocol

log = logging.getLogger("wardsight.device.outbox")


class EventQueue(Protocol):
    def push(self, jws: str) -> int:
        """Append; returns how many old entries the bound dropped to make room."""
        ...

    def head(self) -> tuple[int, str] | None:
        """(key, jws) of the oldest entry, or None."""
        ...

    def remove(self, key: int) -> None: ...

    def __len__(self) -> int: ...


class MemoryQueue:
    def __init__(self, max_entries: int = 1000) -> None:
        self._entries: deque[tuple[int, str]] = deque()
        self._keys = itertools.count()
        self._max = max_entries

    def push(self, jws: str) -> int:
        dropped = 0
        while len(self._entries) >= self._max:
            self._entries.popleft()
            dropped += 1
        self._entries.append((next(self._keys), jws))
        return dropped

    def head(self) -> tuple[int, str] | None:
        return self._entries[0] if self._entries else None

    def remove(self, key: int) -> None:
        if self._entries and self._entries[0][0] == key:
            self._entries.popleft()

    def __len__(self) -> int:
        return len(self._entries)


class SqliteOutbox:
    """A durable queue in one SQLite file (WAL, synchronous=FULL): a committed push survives a power cut."""

    def __init__(self, path: Path, max_entries: int = 100_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path, self._max = path, max_entries
        self._lock = threading.Lock()  # one connection shared by the agent and sender threads
        self._db = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, jws TEXT NOT NULL,"
            " queued_at REAL NOT NULL)"
        )

    def push(self, jws: str) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (count,) = self._db.execute("SELECT count(*) FROM outbox").fetchone()
                dropped = max(0, count + 1 - self._max)
                if dropped:
                    self._db.execute(
                        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", [dropped]
                    )
                self._db.execute("INSERT INTO outbox (jws, queued_at) VALUES (?, ?)", [jws, time.time()])
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return dropped

    def head(self) -> tuple[int, str] | None:
        with self._lock:
            row = self._db.execute("SELECT seq, jws FROM outbox ORDER BY seq LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def remove(self, key: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", [key])

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
