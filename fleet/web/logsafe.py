"""Log lines nobody can forge: control characters in what the fleet server logs are escaped.

Log messages carry what clients send (request paths, user names, reasons, device names). A newline in one would
start a forged line in the server's log (``GET /api/v1/devices/x%0a<fake line>``), and a terminal escape could
rewrite what an operator sees. :func:`install` wraps the process's log record factory so every record of the
fleet's loggers (``wardsight.fleet.*``, ``fleet.*``) and aiohttp's (``aiohttp.*``, the access log included) has its
final message escaped when it is made, whoever logged it and however (``%`` arguments or not): no caller can
forget. An exception's message in a logged traceback is escaped too; the traceback's own lines stay lines.
"""

from __future__ import annotations

import logging
import re
import traceback
from types import TracebackType
from typing import Any

LOGGERS = ("wardsight.fleet", "fleet", "aiohttp")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# How a formatted traceback's own pieces begin; any other piece is an exception's message (or a note).
_STRUCTURE = (
    "Traceback (most recent call last):",
    "  File ",
    "  [Previous line repeated",
    "\nThe above exception was the direct cause",
    "\nDuring handling of the above exception",
)
_MARK = "_wardsight_escapes_control_characters"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape(text: str) -> str:
    """``text`` with every control character (C0, DEL, C1, the Unicode line and paragraph separators) escaped."""
    return _CONTROL.sub(_escape_char, text)


def _in_scope(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in LOGGERS)


def exception_text(exc_info: ExcInfo) -> str:
    """The traceback as :class:`logging.Formatter` writes it, with each exception's message escaped."""
    pieces = []
    for piece in traceback.format_exception(*exc_info):
        if piece.startswith(_STRUCTURE):
            pieces.append(piece)
        else:
            body, end = (piece[:-1], "\n") if piece.endswith("\n") else (piece, "")
            pieces.append(escape(body) + end)
    return "".join(pieces).removesuffix("\n")


def make_safe(record: logging.LogRecord) -> None:
    """Escape the record's final message (and its exception's) in place."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging reports it as it always does
        return
    record.msg, record.args = escape(message), None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        record.exc_text = exception_text(record.exc_info)


def install() -> None:
    """Make every record of :data:`LOGGERS` safe as it is made (once per process; later calls do nothing)."""
    current = logging.getLogRecordFactory()
    if getattr(current, _MARK, False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        if _in_scope(record.name):
            make_safe(record)
        return record

    setattr(factory, _MARK, True)
    logging.setLogRecordFactory(factory)
