"""The append-only audit log: who changed what, when, as a sha256 hash chain in SQLite.

Each row's ``hash`` is sha256 over ``prev_hash`` followed by the canonical JSON (sorted keys, no spaces,
ASCII) of the row's fields ``seq, time, actor, action, target, details``; the first row's ``prev_hash``
is 64 zeros. Triggers make the database itself refuse UPDATE and DELETE on the table, and
:func:`verify` recomputes the chain, so an edit, a removed row or a cut-off tail made behind the
server's back (by someone who dropped the triggers) is reported with the first row that is wrong.
Someone who can write the file can still rebuild the whole chain; keep a copy of ``head_hash`` from
:func:`verify` elsewhere to detect that.

Actors are strings such as ``user:alice``, ``apitoken:<id>``, ``device:<id>``, ``cli:<os user>`` or
``system``. ``details`` is a small JSON object and never holds secrets (keys named like passwords,
tokens or secrets are refused). :func:`cli_actor` names the person behind a command-line change.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fleet.store.connection import Database
from fleet.store.schema import conditions, transaction

GENESIS = "0" * 64
MAX_QUERY_LIMIT = 1000
# Keys a caller must never put in details (their values would be secrets).
FORBIDDEN_DETAIL_KEYS = frozenset(
    {
        "password",
        "current_password",
        "new_password",
        "password_hash",
        "secret",
        "secret_hash",
        "token",
        "csrf_token",
        "session",
        "session_id",
    }
)


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify`: ``ok`` or the first row (``first_bad_seq``) that breaks the chain."""

    ok: bool
    checked: int
    head_hash: str | None = None
    first_bad_seq: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "head_hash": self.head_hash,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
        }


def cli_actor() -> str:
    """``cli:<os user>``: who ran a command-line change, for the audit log."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"cli:{user}"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _row_hash(prev_hash: str, seq: int, time: float, actor: str, action: str, target: str, details: str) -> str:
    fields = {"seq": seq, "time": time, "actor": actor, "action": action, "target": target, "details": details}
    return hashlib.sha256((prev_hash + _canonical(fields)).encode("ascii")).hexdigest()


def _check_details(details: Any, path: str = "details") -> None:
    if isinstance(details, Mapping):
        for key, value in details.items():
            if not isinstance(key, str):
                raise ValueError(f"{path} keys must be strings")
            if key.lower() in FORBIDDEN_DETAIL_KEYS:
                raise ValueError(f"{path}.{key} looks like a secret; secrets never go into the audit log")
            _check_details(value, f"{path}.{key}")
    elif isinstance(details, list | tuple):
        for item in details:
            _check_details(item, path)


def _append(conn: Any, time: float, actor: str, action: str, target: str, details: str) -> int:
    last = conn.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    counter = conn.execute("SELECT seq FROM audit_counter WHERE name = 'audit'").fetchone()
    seq = (counter[0] if counter else 0) + 1  # a row removed behind the triggers' back leaves its number used
    prev_hash = last[0] if last else GENESIS
    digest = _row_hash(prev_hash, seq, time, actor, action, target, details)
    conn.execute(
        "INSERT INTO audit (seq, time, actor, action, target, details, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [seq, time, actor, action, target, details, prev_hash, digest],
    )
    conn.execute("UPDATE audit_counter SET seq = ? WHERE name = 'audit'", [seq])
    return seq


def record(
    db: Database,
    *,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any] | None = None,
    now: float,
) -> int:
    """Append one entry and return its ``seq``.

    Inside the caller's open transaction (which must hold the write lock: ``BEGIN IMMEDIATE``) the entry
    commits or rolls back with the caller's changes; outside one it is written in its own transaction.
    """
    for name, value in (("actor", actor), ("action", action), ("target", target)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"audit {name} must be a non-empty string")
    time = float(now)
    if not math.isfinite(time):
        raise ValueError("audit time must be a finite number")
    _check_details(details or {})
    text = _canonical(dict(details or {}))
    with transaction(db.conn) as conn:
        return _append(conn, time, actor, action, target, text)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def query(
    db: Database,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    text: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 100,
    before_seq: int | None = None,
) -> list[dict[str, Any]]:
    """Entries newest first. ``actor``, ``action`` and ``target`` match exactly; ``text`` is a
    case-insensitive substring of any of them or of the details; ``since <= time < until``;
    ``before_seq`` pages back (pass the last ``seq`` of the previous page)."""
    if not 1 <= limit <= MAX_QUERY_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_QUERY_LIMIT}")
    clauses, params = conditions(
        ("actor = ?", actor),
        ("action = ?", action),
        ("target = ?", target),
        ("time >= ?", since),
        ("time < ?", until),
        ("seq < ?", before_seq),
    )
    if text:
        like = f"%{_escape_like(text)}%"
        clauses.append(
            "(actor LIKE ? ESCAPE '\\' OR action LIKE ? ESCAPE '\\' OR target LIKE ? ESCAPE '\\'"
            " OR details LIKE ? ESCAPE '\\')"
        )
        params.extend([like] * 4)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    sql = "SELECT seq, time, actor, action, target, details, hash FROM audit" + where  # noqa: S608 (fixed clauses)
    rows = list(db.query(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit]))
    for row in rows:
        row["details"] = json.loads(row["details"])
    return rows


def _rows(db: Database) -> Iterator[tuple[Any, ...]]:
    cursor = db.conn.execute(
        "SELECT seq, time, actor, action, target, details, prev_hash, hash FROM audit ORDER BY seq"
    )
    yield from cursor


def verify(db: Database) -> VerifyResult:
    """Recompute the chain from the first row; report the first row that is missing, edited or relinked."""
    prev = GENESIS
    expected = 1
    checked = 0
    for seq, time, actor, action, target, details, prev_hash, digest in _rows(db):
        if seq != expected:
            return VerifyResult(False, checked, None, seq, f"row {expected} is missing (next row is {seq})")
        if prev_hash != prev:
            return VerifyResult(False, checked, None, seq, "prev_hash does not match the previous row's hash")
        if not isinstance(time, float) or _row_hash(prev, seq, time, actor, action, target, details) != digest:
            return VerifyResult(False, checked, None, seq, "row contents do not match its hash")
        prev = digest
        expected += 1
        checked += 1
    counter = db.conn.execute("SELECT seq FROM audit_counter WHERE name = 'audit'").fetchone()
    if counter is not None and counter[0] >= expected:
        return VerifyResult(False, checked, None, expected, f"rows {expected} to {counter[0]} are missing at the end")
    return VerifyResult(True, checked, prev if checked else None)
