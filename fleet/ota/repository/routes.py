"""The repository's routes: what devices fetch (TUF metadata and targets) and what the hospital uploads.

``GET /tuf/metadata/{N.root.json|root.json|timestamp.json|snapshot.json|targets.json}`` and
``GET /tuf/targets/models/<name>/<version>.wsm`` and ``GET /tuf/targets/system/<compatible>/<version>.raucb``
(public, read-only, streamed from disk with HTTP Range; only published targets),
``GET /api/v1/ota/root`` and ``GET /api/v1/ota/online-keys`` (public), ``GET /api/v1/ota/status`` (viewer),
``POST /api/v1/ota/root`` and ``POST /api/v1/ota/targets`` (admin).
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from fleet.audit import log as audit
from fleet.auth.operator import require
from fleet.ota.repository.checks import OtaError
from fleet.ota.repository.files import ON_PUBLISHED_KEY, REPOSITORY_KEY
from fleet.ota.repository.metadata import Repository, utc
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.web.body import parse_json, read_body
from fleet.web.errors import RejectedError

# The same caps as ngclient's UpdaterConfig defaults: nothing the server accepts is refused by a device.
MAX_ROOT_BYTES = 512_000
MAX_TARGETS_BYTES = 5_000_000
_METADATA_NAME = re.compile(r"^(?:[1-9][0-9]{0,5}\.root|root|timestamp|snapshot|targets)\.json$")


class RootUpload(BaseModel):
    """``POST /api/v1/ota/root``: the new root metadata and, optionally, targets metadata to publish with it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Any
    targets: Any = None


def _now(request: web.Request) -> datetime:
    return utc(request.app[CLOCK_KEY]())


def _refused(exc: OtaError) -> RejectedError:
    return RejectedError(exc.status, str(exc))


def _published(request: web.Request, repo: Repository, actor: str, now: float) -> None:
    """Tell the listeners (the model library notes what is now published)."""
    for listener in request.app[ON_PUBLISHED_KEY]:
        listener(request.app[DB_KEY].db, repo.published(), actor, now)


def _audit(request: web.Request, actor: str, action: str, target: str, details: dict[str, Any]) -> None:
    now = request.app[CLOCK_KEY]()
    audit.record(request.app[DB_KEY].db, actor=actor, action=action, target=target, details=details, now=now)


async def get_metadata(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    file = request.app[REPOSITORY_KEY].metadata_file(name)
    if not _METADATA_NAME.match(name):
        raise RejectedError(404, f"no metadata {name[:64]}")
    if not file.is_file():  # routine: every device update asks for the next root version
        return web.json_response({"error": f"no metadata {name}"}, status=404)
    return web.FileResponse(file, headers={"Content-Type": "application/json"})


async def get_target(request: web.Request) -> web.StreamResponse:
    repo = request.app[REPOSITORY_KEY]
    path = request.match_info["path"]
    file = repo.target_file(path)
    if file is None or path not in repo.published() or not file.is_file():
        raise RejectedError(404, "no such published target")
    return web.FileResponse(file, headers={"Content-Type": "application/octet-stream"})


async def get_root(request: web.Request) -> web.Response:
    data = request.app[REPOSITORY_KEY].root_bytes()
    if data is None:
        raise RejectedError(404, "the OTA repository is not initialized ('wardsight ota init')")
    return web.Response(body=data, content_type="application/json")


async def get_online_keys(request: web.Request) -> web.Response:
    return web.json_response(request.app[REPOSITORY_KEY].keys.public())


async def get_status(request: web.Request) -> web.Response:
    await require(request, "viewer")
    repo = request.app[REPOSITORY_KEY]
    try:
        status = await asyncio.to_thread(repo.status, _now(request))
    except OtaError as exc:
        raise _refused(exc) from None
    return web.json_response(status)


async def post_root(request: web.Request) -> web.Response:
    """Body ``{"root": <root metadata>, "targets": <targets metadata, optional>}``."""
    who = await require(request, "admin")
    body = parse_json(
        RootUpload,
        await read_body(request, "application/json", MAX_ROOT_BYTES + MAX_TARGETS_BYTES, beyond_app_limit=True),
    )
    root_data = json.dumps(body.root).encode()
    targets_data = json.dumps(body.targets).encode() if body.targets is not None else None
    if len(root_data) > MAX_ROOT_BYTES or (targets_data is not None and len(targets_data) > MAX_TARGETS_BYTES):
        raise RejectedError(413, "root or targets metadata larger than a device accepts")
    repo = request.app[REPOSITORY_KEY]
    try:
        summary = await asyncio.to_thread(repo.accept_root, root_data, targets_data, _now(request))
    except OtaError as exc:
        raise _refused(exc) from None
    action = "ota.init" if summary["initialized"] else "ota.root"
    _audit(request, who.actor, action, f"ota:root:v{summary['root_version']}", summary)
    if "targets_version" in summary:
        _published(request, repo, who.actor, request.app[CLOCK_KEY]())
    return web.json_response(summary, status=201 if summary["initialized"] else 200)


async def post_targets(request: web.Request) -> web.Response:
    """Body: targets metadata (JSON) signed with the offline targets key."""
    who = await require(request, "admin")
    data = await read_body(request, "application/json", MAX_TARGETS_BYTES, beyond_app_limit=True)
    repo = request.app[REPOSITORY_KEY]
    try:
        summary = await asyncio.to_thread(repo.accept_targets, data, _now(request))
    except OtaError as exc:
        raise _refused(exc) from None
    now = request.app[CLOCK_KEY]()
    _published(request, repo, who.actor, now)
    _audit(request, who.actor, "ota.targets", f"ota:targets:v{summary['targets_version']}", summary)
    return web.json_response(summary)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/tuf/metadata/{name}", get_metadata)
    app.router.add_get(r"/tuf/targets/{path:(?:models|system)/[^/]{1,64}/[^/]{1,64}}", get_target)
    app.router.add_get("/api/v1/ota/root", get_root)
    app.router.add_get("/api/v1/ota/online-keys", get_online_keys)
    app.router.add_get("/api/v1/ota/status", get_status)
    app.router.add_post("/api/v1/ota/root", post_root)
    app.router.add_post("/api/v1/ota/targets", post_targets)
