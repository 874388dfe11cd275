"""Request bodies, one way for every route: the content type (415), a size cap (413), then the model (400).

The 400 names the first bad field the same way everywhere: ``unknown field 'x'``, ``missing field 'x'``,
``invalid value for 'x': <why>``, ``body: <why>`` (a rule over several fields), ``body is not valid JSON``,
``body must be a JSON object``. A value that does not have a field's format says the format in words
(:func:`pattern_in_words`: "use 1 to 64 characters: lowercase letters, digits, '_', '.' or '-', starting with ...").
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from fleet.web.appkeys import CONFIG_KEY
from fleet.web.errors import RejectedError

M = TypeVar("M", bound=BaseModel)
CHUNK = 64 * 1024


_CLASS = r"\[(\^?)((?:\\.|[^\]\\])+)\]"
_COUNT = r"(\{(\d+)(?:,(\d*))?\}|[+*?])?"
_SIMPLE = re.compile(rf"\^(?:{_CLASS})?{_CLASS}{_COUNT}\$")  # ^[first][rest]{m,n}$ or ^[chars]{m,n}$
_PARTS = re.compile(rf"\^{_CLASS}{_COUNT}\((?:\?:)?\\?(.){_CLASS}{_COUNT}\)\{{0,(\d+)\}}\$")  # ^A(\.A){0,k}$
_KNOWN = {r"^([01][0-9]|2[0-3]):[0-5][0-9]$": "use a time of day as HH:MM, 00:00 to 23:59"}
_RANGES = {"a-z": "lowercase letters", "A-Z": "uppercase letters", "0-9": "digits"}


_SINGULAR = {
    "letters": "a letter",
    "lowercase letters": "a lowercase letter",
    "uppercase letters": "an uppercase letter",
    "digits": "a digit",
    "spaces": "a space",
}


def _class_words(negated: str, body: str, *, one: bool = False) -> str:
    """``[A-Za-z0-9_.-]`` as "letters, digits, '_', '.' or '-'" (``one``: "a letter, a digit, ..."; a negated
    class: "any character but ...")."""
    if body in ("0-9a-f", "a-f0-9"):
        return "a lowercase hexadecimal digit" if one else "lowercase hexadecimal digits (0-9, a-f)"
    words: list[str] = []
    for name in ("a-z", "A-Z", "0-9"):
        if name in body:
            words.append(_RANGES[name])
            body = body.replace(name, "", 1)
    if "lowercase letters" in words and "uppercase letters" in words:
        words.remove("uppercase letters")
        words[words.index("lowercase letters")] = "letters"
    chars = re.findall(r"\\x[0-9a-fA-F]{2}-\\x[0-9a-fA-F]{2}|\\x[0-9a-fA-F]{2}|[^\\]-[^\\]|\\.|.", body)
    if negated:
        controls = any(c.startswith("\\x") for c in chars)
        return "any character but control characters" if controls else "any character but " + ", ".join(chars)
    words += ["spaces" if c == " " else f"'{c[0]}' to '{c[2]}'" if len(c) == 3 else f"'{c[-1]}'" for c in chars]
    if one:
        words = [_SINGULAR.get(w, w) for w in words]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _count(quantifier: str | None, low: str | None, high: str | None) -> tuple[int, int | None]:
    if not quantifier or quantifier == "?":
        return (1 if not quantifier else 0), 1
    if quantifier in "+*":
        return (1 if quantifier == "+" else 0), None
    return int(low or 0), (None if high == "" else int(high if high is not None else low or 0))


def _span(low: int, high: int | None, unit: str = "characters") -> str:
    if high is None:
        return f"at least {low} {unit}" if low > 1 else f"one or more {unit}"
    return f"{low} {unit}" if low == high else f"{low} to {high} {unit}"


def pattern_in_words(pattern: str) -> str:
    """The format a field's regular expression accepts, in words (the pattern itself when it is not a simple one)."""
    if pattern in _KNOWN:
        return _KNOWN[pattern]
    simple = _SIMPLE.fullmatch(pattern)
    if simple is not None:
        first_neg, first, neg, chars, quantifier, low, high = simple.groups()
        least, most = _count(quantifier, low, high)
        if first is None:
            return f"use {_span(least, most)}: {_class_words(neg, chars)}"
        total = _span(least + 1, None if most is None else most + 1)
        return f"use {total}: {_class_words(neg, chars)}, starting with {_class_words(first_neg, first, one=True)}"
    parts = _PARTS.fullmatch(pattern)
    if parts is not None:
        neg, chars, quantifier, low, high, sep, _, _, _, _, _, more = parts.groups()
        least, most = _count(quantifier, low, high)
        each = _span(least, most, _class_words(neg, chars).replace(" or ", ", "))
        return f"use 1 to {int(more) + 1} parts separated by '{sep}', each {each} (for example 1{sep}2)"
    return f"it must match the pattern {pattern}"


def _invalid(err: Any) -> str:
    if err["type"] == "string_pattern_mismatch" and "pattern" in err.get("ctx", {}):
        return pattern_in_words(str(err["ctx"]["pattern"]))
    return str(err["msg"])


def validation_message(exc: ValidationError, what: str = "") -> str:
    """The first error of ``exc`` in words; ``what`` prefixes it (``report``: ``report: missing field 'x'``)."""
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in err["loc"])
    if err["type"] == "json_invalid":
        message = "body is not valid JSON"
    elif err["type"] == "extra_forbidden":
        message = f"unknown field '{where}'"
    elif err["type"] == "missing":
        message = f"missing field '{where}'"
    elif not where and err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        message = "body must be a JSON object"
    elif not where:  # a rule over several fields
        message = f"body: {err['msg']}"
    else:
        message = f"invalid value for '{where}': {_invalid(err)}"
    return f"{what}: {message}" if what else message


async def read_body(
    request: web.Request, content_type: str | None, max_bytes: int | None = None, *, beyond_app_limit: bool = False
) -> bytes:
    """The body, at most ``max_bytes`` and never more than the app-wide ``max_body_bytes`` (413 beyond, before
    reading when the length says so); 415 when ``content_type`` is given and the request has another.

    Only a route that must take more than the app-wide limit (job configs and reports, OTA metadata) says
    ``beyond_app_limit=True``: its body is read in chunks up to its own cap. Any other body is read through
    aiohttp, which keeps it, so a handler may read it again."""
    if content_type is not None and request.content_type != content_type:
        raise RejectedError(415, f"content type must be {content_type}")
    app_limit = request.app[CONFIG_KEY].max_body_bytes
    limit = app_limit if max_bytes is None else max_bytes if beyond_app_limit else min(max_bytes, app_limit)
    if request.content_length is not None and request.content_length > limit:
        raise RejectedError(413, f"request body too large (over {limit} bytes)")
    if not beyond_app_limit:
        body = await request.read()  # beyond the app-wide limit: 413 from aiohttp, reported by the error middleware
        if len(body) > limit:
            raise RejectedError(413, f"request body too large (over {limit} bytes)")
        return body
    chunks = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK):
        chunks += chunk
        if len(chunks) > limit:
            raise RejectedError(413, f"request body too large (over {limit} bytes)")
    return bytes(chunks)


def parse_json(model: type[M], raw: bytes | str, what: str = "") -> M:
    """``raw`` JSON as ``model``; a 400 naming the first bad field (see the module docstring)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RejectedError(400, validation_message(exc, what)) from None
    except RecursionError:
        raise RejectedError(400, "body is not valid JSON") from None


async def read_json(request: web.Request, model: type[M], *, max_bytes: int | None = None) -> M:
    """An ``application/json`` body as ``model``: 415, 413 or 400 as :func:`read_body` and :func:`parse_json`."""
    return parse_json(model, await read_body(request, "application/json", max_bytes))
