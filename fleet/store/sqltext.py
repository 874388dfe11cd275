"""The store's SQL, written once in SQLite's dialect, as PostgreSQL reads it: pure text in, text out (cached).

The features write SQL that both backends understand where it can (``INSERT ... ON CONFLICT``, ``COALESCE``,
``CASE``), and :func:`fleet.store.connection.json_text` and friends where the dialects differ in substance. What
is left is spelling, translated here statement by statement:

- placeholders: ``?`` becomes ``%s``, ``:name`` becomes ``%(name)s``, a literal ``%`` becomes ``%%``;
- ``INSERT OR IGNORE INTO`` becomes ``INSERT INTO ... ON CONFLICT DO NOTHING``; ``BEGIN IMMEDIATE`` becomes
  ``BEGIN`` (the write lock it stood for is :func:`fleet.store.schema.transaction`'s advisory lock);
- ``LIKE`` becomes ``ILIKE`` (SQLite's LIKE ignores ASCII case; the audit search relies on that);
- ``rowid`` stays a column name: PostgreSQL tables get a ``rowid`` identity column (:mod:`fleet.store.pgddl`).

Quoted strings and identifiers are kept as they are (with ``%`` doubled: psycopg reads the whole
text). ``INSERT OR REPLACE`` has no spelling without knowing the
conflict target, so it is refused (write ``ON CONFLICT (...) DO UPDATE``).
"""

from __future__ import annotations

import functools
import re

_TOKEN = re.compile(
    r"(--[^\n]*|/\*.*?\*/)"  # a comment
    r"""|('(?:[^']|'')*')"""  # a string literal
    r"""|("(?:[^"]|"")*")"""  # a quoted identifier
    r"|(::)"  # a PostgreSQL cast, never a named parameter
    r"|(:[A-Za-z_][A-Za-z0-9_]*)"  # a named parameter
    r"|(\?)"  # a positional parameter
    r"|(%)",  # a literal percent sign
    re.DOTALL,
)
_OR_IGNORE = re.compile(r"\bINSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_OR_REPLACE = re.compile(r"\bINSERT\s+OR\s+REPLACE\b", re.IGNORECASE)
_IMMEDIATE = re.compile(r"^\s*BEGIN\s+(IMMEDIATE|EXCLUSIVE|DEFERRED)\b", re.IGNORECASE)
_LIKE = re.compile(r"(?<![A-Za-z0-9_$])(NOT\s+)?LIKE\b", re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)


class UnsupportedSQL(ValueError):
    """SQL this translation cannot carry to PostgreSQL (a bug in the caller, not bad input)."""


@functools.lru_cache(maxsize=2048)
def to_postgres(sql: str) -> str:
    """``sql`` (SQLite dialect, ``?`` or ``:name`` parameters) in PostgreSQL's spelling for psycopg."""
    if _OR_REPLACE.search(sql):
        raise UnsupportedSQL("INSERT OR REPLACE has no PostgreSQL spelling; use INSERT ... ON CONFLICT (...) DO UPDATE")
    out: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(sql):
        out.append(_words(sql[pos : match.start()]))
        comment, literal, ident, cast, named, positional, percent = match.groups()
        if comment is not None:
            out.append(comment.replace("%", "%%"))
        elif literal is not None or ident is not None:
            out.append(match.group(0).replace("%", "%%"))  # psycopg reads placeholders even inside quotes
        elif cast is not None:
            out.append("::")
        elif named is not None:
            out.append(f"%({named[1:]})s")
        elif positional is not None:
            out.append("%s")
        elif percent is not None:
            out.append("%%")
        pos = match.end()
    out.append(_words(sql[pos:]))
    text = "".join(out)
    if _OR_IGNORE.search(text):
        text = _OR_IGNORE.sub("INSERT INTO", text, count=1)
        returning = _RETURNING.search(text)
        if returning:
            text = f"{text[: returning.start()]}ON CONFLICT DO NOTHING {text[returning.start() :]}"
        else:
            text = text.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    return _IMMEDIATE.sub("BEGIN", text)


def _words(chunk: str) -> str:
    """Keyword spellings in a stretch of SQL outside quotes."""
    return _LIKE.sub(lambda m: f"{m.group(1) or ''}ILIKE", chunk)
