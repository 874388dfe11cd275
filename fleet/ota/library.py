"""The model library: packages operators upload, whether each is signed and published, and where each runs.

``POST /api/v1/models`` (operator) takes a model package (``wardsight.modelpkg``, ``.wsm``) as the raw body
(``application/octet-stream``) or as the ``package`` field of a ``multipart/form-data`` form, at most
:data:`MAX_PACKAGE_BYTES`. The server checks it (manifest, member names, every build's size and sha256, no
members the manifest does not name) and stores it as the TUF target ``models/<name>/<version>.wsm``. It is
then *staged*: uploaded, awaiting signature. Only targets metadata signed with the hospital's offline
targets key publishes it (``wardsight ota publish``; :meth:`fleet.ota.repository.Repository.accept_targets`).
A published version is immutable: a different package for it is refused (use a new version).

``GET /api/v1/models`` (viewer) lists every model: its versions (builds, license, staged / published /
withdrawn, who uploaded it and when) and, from each device's latest heartbeat, how many devices run each
version (revoked devices are not counted).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import tarfile
import tempfile
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils
from aiohttp import BodyPartReader, web
from tuf.api.metadata import TargetFile

from fleet import audit
from fleet.auth.operator import require
from fleet.ota.repository import REPOSITORY_KEY, Repository
from fleet.store.schema import transaction
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.web.errors import RejectedError
from wardsight import modelpkg
from wardsight.wire import target_path

MAX_PACKAGE_BYTES = 2 * 1024**3
MAX_DEVICES_LISTED = 100  # device ids per running version in the listing (the count is always complete)
_CHUNK = 256 * 1024


# ---- packages -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackageInfo:
    manifest: modelpkg.Manifest
    target: str
    length: int
    sha256: str


def _sha256_stream(stream: Any) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def inspect_package(path: Path) -> PackageInfo:
    """Check a package thoroughly (modelpkg.PackageError if anything is wrong) and describe it."""
    manifest = modelpkg.read_manifest(path)
    builds = {build.file: build for build in manifest.builds}
    with tarfile.open(path, "r:") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise modelpkg.PackageError("package has two members with the same name")
        extra = set(names) - set(builds) - {modelpkg.MANIFEST}
        missing = set(builds) - set(names)
        if extra or missing:
            raise modelpkg.PackageError(f"package members {sorted(extra)} extra, {sorted(missing)} missing")
        for info in members:
            build = builds.get(info.name)
            if build is None:
                continue
            if info.size != build.size:
                raise modelpkg.PackageError(f"{info.name} is {info.size} bytes, the manifest says {build.size}")
            fh = tar.extractfile(info)
            assert fh is not None
            if _sha256_stream(fh) != build.sha256:
                raise modelpkg.PackageError(f"{info.name} does not match its sha256 in the manifest")
    with open(path, "rb") as fh:
        digest = _sha256_stream(fh)
    return PackageInfo(manifest, target_path(manifest.name, manifest.version), path.stat().st_size, digest)


def install_package(repo: Repository, tmp: Path, info: PackageInfo) -> bool:
    """Move a checked upload to its target path; False if an identical file was there already. Refuses
    (FileExistsError) a different package for a version the current targets.json publishes."""
    dest = repo.targets_dir / info.target
    with repo.lock():
        listed = repo.published().get(info.target)
        if listed is not None and (listed.length, listed.hashes.get("sha256")) != (info.length, info.sha256):
            raise FileExistsError(info.target)
        if dest.is_file() and dest.stat().st_size == info.length:
            with open(dest, "rb") as fh:
                if _sha256_stream(fh) == info.sha256:
                    return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    return True


async def _receive(request: web.Request, directory: Path) -> Path:
    """Stream the uploaded package to a temporary file in ``directory`` (413 past MAX_PACKAGE_BYTES)."""
    if request.content_length is not None and request.content_length > MAX_PACKAGE_BYTES:
        raise RejectedError(413, f"package larger than {MAX_PACKAGE_BYTES} bytes")
    read: Callable[[int], Awaitable[bytes]]
    if request.content_type == "application/octet-stream":
        read = request.content.read
    elif request.content_type == "multipart/form-data":
        try:
            reader = await request.multipart()
            part = await reader.next()
        except ValueError as exc:  # no or empty boundary, not multipart at all
            raise RejectedError(400, f"not a usable multipart form: {exc}") from None
        if not isinstance(part, BodyPartReader) or part.name != "package":
            raise RejectedError(400, "the form must start with a file field named 'package'")
        read = part.read_chunk
    else:
        raise RejectedError(415, "content type must be application/octet-stream or multipart/form-data")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=directory)
    tmp = Path(name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as fh:
            while chunk := await read(_CHUNK):
                size += len(chunk)
                if size > MAX_PACKAGE_BYTES:
                    raise RejectedError(413, f"package larger than {MAX_PACKAGE_BYTES} bytes")
                fh.write(chunk)
        if size == 0:
            raise RejectedError(400, "empty package")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _row(db: sqlite_utils.Database, name: str, version: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM ota_models WHERE name = ? AND version = ?", [name, version]))
    return rows[0] if rows else None


def record_upload(db: sqlite_utils.Database, info: PackageInfo, actor: str, now: float, *, replaced: bool) -> None:
    """Store (or replace, for a staged version) the library entry and audit it, in one transaction."""
    m = info.manifest
    with transaction(db.conn) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO ota_models (name, version, target, length, sha256, task, license, manifest,"
            " uploaded_by, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [m.name, m.version, info.target, info.length, info.sha256, m.task, m.license, m.model_dump_json(),
             actor, now],
        )  # fmt: skip
        details = {"target": info.target, "length": info.length, "sha256": info.sha256, "replaced": replaced}
        audit.record(db, actor=actor, action="model.upload", target=f"model:{m.name}/{m.version}", details=details,
                     now=now)  # fmt: skip


def mark_published(db: sqlite_utils.Database, published: dict[str, TargetFile], actor: str, now: float) -> None:
    """Note when (and by whom) each library entry first appeared in signed targets metadata."""
    with transaction(db.conn) as conn:
        for path, info in published.items():
            conn.execute(
                "UPDATE ota_models SET published_at = ?, published_by = ?"
                " WHERE target = ? AND sha256 = ? AND length = ? AND published_at IS NULL",
                [now, actor, path, info.hashes.get("sha256"), info.length],
            )


# ---- listing --------------------------------------------------------------------------------------------


def heartbeat_key(name: str) -> str:
    """A model name as the device agent reports it in heartbeats (firmware.heartbeat's data-key form)."""
    key = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    return (key if key[:1].isalpha() else "k_" + key)[:32] or "unknown"


def running_versions(db: sqlite_utils.Database) -> dict[str, dict[str, list[str]]]:
    """heartbeat model key -> version -> device ids, from each non-revoked device's latest heartbeat."""
    running: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    rows = db.conn.execute(
        "SELECT h.device_id, h.models FROM health_latest h JOIN devices d ON d.id = h.device_id"
        " WHERE COALESCE(d.status, 'active') != 'revoked' ORDER BY h.device_id"
    )
    for device_id, models in rows:
        try:
            reported = json.loads(models)
        except ValueError:
            continue
        if isinstance(reported, dict):
            for key, version in reported.items():
                running[str(key)][str(version)].append(device_id)
    return running


def _version_order(version: str) -> tuple[int, ...]:
    try:
        return modelpkg.version_key(version)
    except modelpkg.PackageError:
        return ()


def list_models(db: sqlite_utils.Database, published: dict[str, TargetFile]) -> list[dict[str, Any]]:
    """Every model in the library or seen running, with its versions and where each runs."""
    running = running_versions(db)
    models: dict[str, dict[str, Any]] = {}
    for row in db.query("SELECT * FROM ota_models ORDER BY name"):
        manifest = json.loads(row["manifest"])
        listed = published.get(row["target"])
        if listed is not None and (listed.length, listed.hashes.get("sha256")) == (row["length"], row["sha256"]):
            status = "published"
        elif row["published_at"] is not None:
            status = "withdrawn"
        else:
            status = "staged"  # uploaded, awaiting the offline signature
        key = heartbeat_key(row["name"])
        devices = running.get(key, {}).get(row["version"], [])
        blank = {"name": row["name"], "task": row["task"], "versions": [], "running": {}}
        entry = models.setdefault(row["name"], blank)
        entry["versions"].append(
            {
                "version": row["version"],
                "status": status,
                "target": row["target"],
                "length": row["length"],
                "sha256": row["sha256"],
                "license": row["license"],
                "min_agent_version": manifest.get("min_agent_version"),
                "builds": [
                    {"backend": b["backend"], "runtime": b["runtime"], "hardware": b.get("hardware")}
                    for b in manifest["builds"]
                ],
                "uploaded_by": row["uploaded_by"],
                "uploaded_at": row["uploaded_at"],
                "published_by": row["published_by"],
                "published_at": row["published_at"],
                "devices": len(devices),
            }
        )
    by_key = {heartbeat_key(name): name for name in models}
    for key, versions in running.items():
        name = by_key.get(key, key)
        entry = models.setdefault(name, {"name": name, "task": None, "versions": [], "running": {}})
        entry["running"] = {
            version: {"devices": len(ids), "device_ids": ids[:MAX_DEVICES_LISTED]}
            for version, ids in sorted(versions.items(), key=lambda item: _version_order(item[0]), reverse=True)
        }
    for entry in models.values():
        entry["versions"].sort(key=lambda v: _version_order(v["version"]), reverse=True)
    return [models[name] for name in sorted(models)]


# ---- routes ---------------------------------------------------------------------------------------------


async def get_models(request: web.Request) -> web.Response:
    await require(request, "viewer")
    repo = request.app[REPOSITORY_KEY]
    published = await asyncio.to_thread(repo.published)
    return web.json_response({"models": list_models(request.app[DB_KEY].db, published)})


async def post_model(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    repo = request.app[REPOSITORY_KEY]
    db = request.app[DB_KEY].db
    tmp = await _receive(request, repo.incoming_dir)
    try:
        try:
            info = await asyncio.to_thread(inspect_package, tmp)
        except (modelpkg.PackageError, tarfile.TarError, ValueError) as exc:
            raise RejectedError(400, f"not a usable model package: {exc}") from None
        m = info.manifest
        row = _row(db, m.name, m.version)
        if row is not None and row["published_at"] is not None and row["sha256"] != info.sha256:
            raise RejectedError(409, f"{m.name} {m.version} was published with other contents: use a new version")
        try:
            changed = await asyncio.to_thread(install_package, repo, tmp, info)
        except FileExistsError:
            raise RejectedError(409, f"{m.name} {m.version} is published with other contents: a new version") from None
    finally:
        tmp.unlink(missing_ok=True)
    unchanged = not changed and row is not None and row["sha256"] == info.sha256
    if not unchanged:
        record_upload(db, info, who.actor, request.app[CLOCK_KEY](), replaced=row is not None)
    body = {
        "name": m.name,
        "version": m.version,
        "target": info.target,
        "length": info.length,
        "sha256": info.sha256,
        "status": "published" if info.target in repo.published() else "staged",
    }
    return web.json_response(body, status=200 if unchanged else 201)


def setup(app: web.Application) -> None:
    """Add the library's routes (called by ``fleet.ota.repository.setup``)."""
    app.router.add_get("/api/v1/models", get_models)
    app.router.add_post("/api/v1/models", post_model)
