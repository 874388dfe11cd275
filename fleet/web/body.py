"""Request bodies, one way for every route: the content type (415), a size cap (413), then the model (400).

The 400 names the first bad field the same way everywhere: ``unknown field 'x'``, ``missing field 'x'``,
``invalid value for 'x': <why>``, ``body: <why>`` (a rule over several fields), ``body is not valid JSON``,
``body must be a JSON object``.
"""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from fleet.web.appkeys import CONFIG_KEY
from fleet.web.errors import RejectedError

M = TypeVar("M", bound=BaseModel)
CHUNK = 64 * 1024


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
        message = f"invalid value for '{where}': {err['msg']}"
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
