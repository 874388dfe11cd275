"""The model library's routes: ``POST /api/v1/models`` (operator) uploads a package, ``GET /api/v1/models``
(viewer) lists every model, its versions and where each runs."""

from __future__ import annotations

import asyncio
import os
import re
import tarfile
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from fleet.auth.operator import require
from fleet.ota.library.bundles import list_systems
from fleet.ota.library.package import PackageInfo, inspect_package, install_package
from fleet.ota.library.store import find, list_models, record_upload
from fleet.ota.repository.files import REPOSITORY_KEY
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.web.errors import RejectedError
from wardsight import modelpkg

MAX_PACKAGE_BYTES = 2 * 1024**3
_CHUNK = 256 * 1024
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s/'\"]+/)+[^\s'\"]*")


async def _reader(request: web.Request) -> Callable[[int], Awaitable[bytes]]:
    """How to read the package: the raw body, or the ``package`` field that starts a multipart form."""
    if request.content_type == "application/octet-stream":
        return request.content.read
    if request.content_type == "multipart/form-data":
        try:
            reader = await request.multipart()
            part = await reader.next()
        except ValueError as exc:  # no or empty boundary, not multipart at all
            raise RejectedError(400, f"not a usable multipart form: {exc}") from None
        if not isinstance(part, BodyPartReader) or part.name != "package":
            raise RejectedError(400, "the form must start with a file field named 'package'")
        return part.read_chunk
    raise RejectedError(415, "content type must be application/octet-stream or multipart/form-data")


async def receive_upload(
    request: web.Request, directory: Path, limit: int | None = None, what: str = "package"
) -> Path:
    """Stream the uploaded ``what`` to a temporary file in ``directory`` (413 past ``limit``, default
    MAX_PACKAGE_BYTES); never held in memory whole."""
    limit = MAX_PACKAGE_BYTES if limit is None else limit
    if request.content_length is not None and request.content_length > limit:
        raise RejectedError(413, f"{what} larger than {limit} bytes")
    read = await _reader(request)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=directory)
    tmp = Path(name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as fh:
            while chunk := await read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise RejectedError(413, f"{what} larger than {limit} bytes")
                fh.write(chunk)
        if size == 0:
            raise RejectedError(400, f"empty {what}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def refusal_text(exc: Exception, *paths: Path, what: str = "model package") -> str:
    """Why a package (or ``what``) was refused, short and on one line, naming no path on the server (``paths`` and
    anything else that looks like an absolute path become "the package")."""
    text = str(exc)
    for path in sorted(map(str, paths), key=len, reverse=True):
        text = re.sub(re.escape(path) + r"[^\s'\"]*", "the package", text)
    return modelpkg.short(f"not a usable {what}: {_ABSOLUTE_PATH.sub('the package', text)}")


async def get_models(request: web.Request) -> web.Response:
    """The model library, and the system bundles (``systems``) beside it; every entry says its ``kind``."""
    await require(request, "viewer")
    repo = request.app[REPOSITORY_KEY]
    published = await asyncio.to_thread(repo.published)
    db = request.app[DB_KEY].db
    models = [{"kind": "model", **entry} for entry in list_models(db, published)]
    return web.json_response({"models": models, "systems": list_systems(db, published)})


async def _store(request: web.Request, tmp: Path) -> tuple[PackageInfo, dict[str, Any] | None, bool]:
    """Check the received package and move it to its target path: its description, the library entry it
    had before, and whether the file changed."""
    repo = request.app[REPOSITORY_KEY]
    try:
        info = await asyncio.to_thread(inspect_package, tmp)
    except (modelpkg.PackageError, tarfile.TarError, ValueError) as exc:
        raise RejectedError(400, refusal_text(exc, tmp, repo.directory)) from None
    m = info.manifest
    row = find(request.app[DB_KEY].db, m.name, m.version)
    if row is not None and row["published_at"] is not None and row["sha256"] != info.sha256:
        raise RejectedError(409, f"{m.name} {m.version} was published with other contents: use a new version")
    try:
        changed = await asyncio.to_thread(install_package, repo, tmp, info)
    except FileExistsError:
        raise RejectedError(409, f"{m.name} {m.version} is published with other contents: a new version") from None
    return info, row, changed


async def post_model(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    repo = request.app[REPOSITORY_KEY]
    tmp = await receive_upload(request, repo.incoming_dir)
    try:
        info, row, changed = await _store(request, tmp)
    finally:
        tmp.unlink(missing_ok=True)
    unchanged = not changed and row is not None and row["sha256"] == info.sha256
    if not unchanged:
        record_upload(request.app[DB_KEY].db, info, who.actor, request.app[CLOCK_KEY](), replaced=row is not None)
    m = info.manifest
    body = {
        "name": m.name,
        "version": m.version,
        "target": info.target,
        "length": info.length,
        "sha256": info.sha256,
        "status": "published" if info.target in repo.published() else "staged",
    }
    return web.json_response(body, status=200 if unchanged else 201)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/models", get_models)
    app.router.add_post("/api/v1/models", post_model)
