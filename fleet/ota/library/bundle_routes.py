"""``POST /api/v1/system-bundles?compatible=C&version=V`` (operator): a RAUC bundle as the raw body
(``application/octet-stream``, at most :data:`fleet.ota.library.bundles.MAX_BUNDLE_BYTES`), streamed to disk, checked
and stored as the TUF target ``system/C/V.raucb``: *staged* until ``wardsight ota publish-system`` signs it. A
published version is immutable (another bundle for it: 409)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from fleet.auth.operator import require
from fleet.ota.library.bundles import (
    MAX_BUNDLE_BYTES,
    BundleError,
    find_bundle,
    inspect_bundle,
    install_bundle,
    same_version,
)
from fleet.ota.library.bundles import record_bundle as record
from fleet.ota.library.routes import receive_upload, refusal_text
from fleet.ota.repository.files import REPOSITORY_KEY
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.web.errors import RejectedError

PATH = "/api/v1/system-bundles"


async def post_bundle(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    compatible, version = request.query.get("compatible", ""), request.query.get("version", "")
    if request.content_type != "application/octet-stream":
        raise RejectedError(415, "a bundle is sent as application/octet-stream")
    repo, db = request.app[REPOSITORY_KEY], request.app[DB_KEY].db
    tmp = await receive_upload(request, repo.incoming_dir, MAX_BUNDLE_BYTES, "bundle")
    try:
        try:
            info = await asyncio.to_thread(inspect_bundle, tmp, compatible, version)
        except BundleError as exc:
            raise RejectedError(400, refusal_text(exc, tmp, repo.directory, what="RAUC bundle")) from None
        alias = same_version(db, compatible, version)
        if alias is not None:
            raise RejectedError(
                409, f"system {version} for {compatible} is the same version as {alias} in the library: use that name"
            )
        row = find_bundle(db, compatible, version)
        if row is not None and row["published_at"] is not None and row["sha256"] != info.sha256:
            raise RejectedError(409, f"system {version} for {compatible} was published with other contents")
        try:
            changed = await asyncio.to_thread(install_bundle, repo, tmp, info)
        except FileExistsError:
            raise RejectedError(409, f"system {version} for {compatible} is published with other contents") from None
    finally:
        tmp.unlink(missing_ok=True)
    unchanged = not changed and row is not None and row["sha256"] == info.sha256
    if not unchanged:
        record(db, info, who.actor, request.app[CLOCK_KEY](), replaced=row is not None)
    body = {
        "kind": "system",
        "compatible": compatible,
        "version": version,
        "target": info.target,
        "length": info.length,
        "sha256": info.sha256,
        "status": "published" if info.target in repo.published() else "staged",
    }
    return web.json_response(body, status=200 if unchanged else 201)


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, post_bundle)
