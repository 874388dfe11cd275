"""Diagnostics bundles: what an operator may see of a device, as plain text lines that cannot carry pixels.

- :class:`LogRing` is a ``logging.Handler`` keeping the last records (and, separately, the last warnings and
  errors) in memory, as text: already redacted, one line per record, cut at :data:`MAX_LINE`.
- :func:`redact` removes credentials from text: ``rtsp://user:pass@`` userinfo, ``password=``-style
  parameters, bearer and WardSight credentials, enrollment and API tokens, compact JWS/JWT, PEM blocks.
- :func:`build_bundle` assembles titled sections into one text; :func:`check_bundle` is the last gate before
  upload: printable ASCII only (newline and tab allowed), no line over :data:`MAX_LINE`, no long unbroken
  run of base64- or hex-like characters, escaped bytes or numbers (how an image could be smuggled in as text),
  within the cap.
  Over the cap, the oldest log lines go first and the bundle says how many were dropped.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MAX_BUNDLE_BYTES = 256 * 1024  # the job report's ``output`` limit
MAX_LINE = 400
MAX_TOKEN = 120  # longest run of [A-Za-z0-9+/=_-] kept; longer runs are replaced
MAX_NUMBERS = 48  # longest run of numbers kept (an array dumped into a log line could be pixels)
LOG_CAPACITY = 1000
ERROR_CAPACITY = 200

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{1,15}://)[^\s/@]*@")
_SECRET_PARAM = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|api_key|apikey|credential|access_token|auth)"
    r"(\s*[=:]\s*|\"\s*:\s*\")([^\s&\"',;]+)"
)
_AUTH_HEADER = re.compile(r"(?i)\b(Bearer|Basic|WardSight)\s+[A-Za-z0-9._~+/=-]{8,}")
_JWS = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
_FLEET_TOKEN = re.compile(r"\b(wst|wsa|whsk)[._][A-Za-z0-9_.-]{6,}")
_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?(-----END [A-Z ]+-----|$)", re.DOTALL)
_LONG_TOKEN = re.compile(rf"[A-Za-z0-9+/=_-]{{{MAX_TOKEN + 1},}}")
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_BYTES_REPR = re.compile(r"(?:\\x[0-9a-fA-F]{2}[^\\\s]{0,3}){8,}")  # b'\x89PNG\r\n...' as a repr
_NUMBER_RUN = re.compile(r"(?:-?\d+(?:\.\d+)?[\s,;\[\]()]+){" + str(MAX_NUMBERS) + ",}")  # an array's values


class BundleError(ValueError):
    """A diagnostics bundle that must not leave the device."""


_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "credential", "auth")  # cheap tests before the regexes
_SCHEMES = ("bearer", "basic", "wardsight")


def redact(text: str) -> str:
    """``text`` without the credentials it may hold (URLs keep scheme and host, secrets become ``***``)."""
    low = text.lower()
    if "-----BEGIN " in text:
        text = _PEM.sub("[pem removed]", text)
    if "://" in text:
        text = _USERINFO.sub(r"\1***@", text)
    if any(word in low for word in _SCHEMES):
        text = _AUTH_HEADER.sub(r"\1 ***", text)
    if "eyJ" in text:
        text = _JWS.sub("[jws removed]", text)
    if "wst" in text or "wsa" in text or "whsk" in text:
        text = _FLEET_TOKEN.sub(r"\1.***", text)
    if any(word in low for word in _SECRET_WORDS):
        text = _SECRET_PARAM.sub(r"\1\2***", text)
    return text


def _has_number_run(text: str) -> bool:
    return sum(c.isdigit() for c in text) >= MAX_NUMBERS and _NUMBER_RUN.search(text) is not None


def clean_line(text: str, max_len: int = MAX_LINE) -> str:
    """One redacted line of printable ASCII: other characters become ``?``, long tokens are replaced, cut."""
    if len(text) > 8 * max_len:  # cut first (cheap), without leaving half a word (half a URL) at the end
        head = text[: 8 * max_len]
        text = (head.rsplit(" ", 1)[0] if " " in head else "") + " [cut]"
    text = redact(text).replace("\t", " ")
    text = _NOT_PRINTABLE.sub("?", text)
    text = _LONG_TOKEN.sub("[long token removed]", text)
    if "\\x" in text:
        text = _BYTES_REPR.sub("[bytes removed]", text)
    if _has_number_run(text):
        text = _NUMBER_RUN.sub("[numbers removed] ", text)
    return text if len(text) <= max_len else text[: max_len - 3] + "..."


class LogRing(logging.Handler):
    """The most recent log records as redacted text lines, in memory only (bounded)."""

    def __init__(self, capacity: int = LOG_CAPACITY, error_capacity: int = ERROR_CAPACITY) -> None:
        super().__init__(logging.NOTSET)
        self._records: collections.deque[str] = collections.deque(maxlen=capacity)
        self._errors: collections.deque[str] = collections.deque(maxlen=error_capacity)
        self._ring_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not cost the record
            message = f"{record.msg!r} (unformattable arguments)"
        if record.exc_info and record.exc_info[0] is not None:
            exc = record.exc_info[1]
            message += f" [{record.exc_info[0].__name__}: {exc}]"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = clean_line(f"{stamp}Z {record.levelname} {record.name}: {message}")
        with self._ring_lock:
            self._records.append(line)
            if record.levelno >= logging.WARNING:
                self._errors.append(line)

    def records(self) -> list[str]:
        with self._ring_lock:
            return list(self._records)

    def errors(self) -> list[str]:
        with self._ring_lock:
            return list(self._errors)


_installed: LogRing | None = None
_install_lock = threading.Lock()


def install_log_ring(capacity: int = LOG_CAPACITY) -> LogRing:
    """The process's ring on the root logger (added once; later calls return the same one)."""
    global _installed
    with _install_lock:
        if _installed is None:
            _installed = LogRing(capacity)
            logging.getLogger().addHandler(_installed)
        return _installed


def flatten(value: Any, prefix: str = "") -> list[str]:
    """``key.sub = json`` lines for a nested mapping (a config or a health report), redacted later."""
    if isinstance(value, Mapping):
        lines: list[str] = []
        for key in sorted(value, key=str):
            lines += flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
        return lines
    return [f"{prefix} = {json.dumps(value, default=str, sort_keys=True)}"]


def build_bundle(
    sections: Sequence[tuple[str, Iterable[str]]],
    *,
    cap: int = MAX_BUNDLE_BYTES,
    trim: str = "logs",
) -> str:
    """Titled sections as text lines (each cleaned), within ``cap`` bytes.

    Over the cap, the oldest lines of the section titled ``trim`` are dropped first (a note says how many),
    then whole lines from the end.
    """
    cleaned = [(title, [clean_line(line) for line in lines]) for title, lines in sections]

    def render(parts: list[tuple[str, list[str]]]) -> str:
        return "".join(f"== {title} ==\n" + "".join(line + "\n" for line in lines) for title, lines in parts)

    text = render(cleaned)
    if len(text.encode("ascii")) > cap:
        size_without = len(render([(t, ls if t != trim else []) for t, ls in cleaned]).encode("ascii"))
        note = 64
        for i, (title, lines) in enumerate(cleaned):
            if title != trim:
                continue
            room = cap - size_without - note
            kept: list[str] = []
            for line in reversed(lines):
                room -= len(line) + 1
                if room < 0:
                    break
                kept.append(line)
            kept.reverse()
            dropped = len(lines) - len(kept)
            cleaned[i] = (title, [f"[{dropped} older lines dropped to fit {cap} bytes]", *kept] if dropped else kept)
        text = render(cleaned)
    if len(text.encode("ascii")) > cap:  # still too large: cut at a line boundary
        text = text[: text.rfind("\n", 0, cap - 1) + 1] if "\n" in text[:cap] else ""
    check_bundle(text, cap)
    return text


def check_bundle(text: str, cap: int = MAX_BUNDLE_BYTES) -> None:
    """Refuse anything but short lines of printable ASCII within ``cap`` bytes (raises :class:`BundleError`)."""
    try:
        size = len(text.encode("ascii"))
    except UnicodeEncodeError:
        raise BundleError("the bundle holds non-ASCII characters") from None
    if size > cap:
        raise BundleError(f"the bundle is {size} bytes, over the {cap}-byte cap")
    for number, line in enumerate(text.split("\n"), 1):
        if len(line) > MAX_LINE:
            raise BundleError(f"line {number} is longer than {MAX_LINE} characters")
        if _NOT_PRINTABLE.search(line):
            raise BundleError(f"line {number} holds a control character")
        if _LONG_TOKEN.search(line):
            raise BundleError(f"line {number} holds a run of more than {MAX_TOKEN} token characters")
        if ("\\x" in line and _BYTES_REPR.search(line)) or _has_number_run(line):
            raise BundleError(f"line {number} holds a run of bytes or numbers")
        if redact(line) != line:
            raise BundleError(f"line {number} holds a credential")
