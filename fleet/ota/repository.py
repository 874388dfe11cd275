"""The OTA repository: The Update Framework (python-tuf) metadata and model files, served to devices.

Roles and keys (each role threshold 1):

- ``root`` and ``targets``: **offline** Ed25519 keys the hospital keeps (``wardsight ota keys``). Root says
  which keys may sign what; targets lists every installable model package with its length and sha256. The
  server never holds these keys: it only checks what the hospital uploads (:meth:`Repository.accept_root`,
  :meth:`Repository.accept_targets`), so a compromised server cannot make devices install anything.
- ``snapshot`` and ``timestamp``: **online** keys in the server's keys directory (``tuf-snapshot.key``,
  ``tuf-timestamp.key``, 0600). The server signs a new snapshot and timestamp whenever targets change and
  re-signs them before they expire (:meth:`Repository.refresh_online`, run by a background task).

Files live in ``<data dir>/ota/``: ``metadata/`` (``root.json``, ``N.root.json`` for every root version,
``timestamp.json``, ``snapshot.json``, ``targets.json``) and ``targets/models/<name>/<version>.wsm``.
Consistent snapshots are off: metadata is served under fixed names and targets under their plain path.

Routes: ``GET /tuf/metadata/{N.root.json|root.json|timestamp.json|snapshot.json|targets.json}`` and
``GET /tuf/targets/models/<name>/<version>.wsm`` (public, read-only, HTTP Range; only published targets),
``GET /api/v1/ota/root`` and ``GET /api/v1/ota/online-keys`` (public), ``GET /api/v1/ota/status`` (viewer),
``POST /api/v1/ota/root`` and ``POST /api/v1/ota/targets`` (admin). The model library (uploads, listing) is
:mod:`fleet.ota.library`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.exceptions import LengthOrHashMismatchError, UnsignedMetadataError
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, T, TargetFile, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from fleet import audit
from fleet.auth.operator import require
from fleet.config import ServerConfig
from fleet.ota import rollouts
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY
from fleet.web.errors import RejectedError
from fleet.web.tasks import running
from wardsight import wire
from wardsight.paths import write_file_atomically

log = logging.getLogger("wardsight.fleet.ota")

OTA_DIR = "ota"
SNAPSHOT_KEY_FILE = "tuf-snapshot.key"
TIMESTAMP_KEY_FILE = "tuf-timestamp.key"
SNAPSHOT_LIFETIME = timedelta(days=7)
TIMESTAMP_LIFETIME = timedelta(days=1)
RESIGN_CHECK_SECONDS = 600.0  # how often the background task looks at the online roles' expiry
# The same caps as ngclient's UpdaterConfig defaults: nothing the server accepts is refused by a device.
MAX_ROOT_BYTES = 512_000
MAX_TARGETS_BYTES = 5_000_000
_METADATA_NAME = re.compile(r"^(?:[1-9][0-9]{0,5}\.root|root|timestamp|snapshot|targets)\.json$")


class OtaError(Exception):
    """A refused repository change; ``status`` is the HTTP status, ``str(exc)`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def utc(timestamp: float) -> datetime:
    """A Unix time (the app clock) as an aware UTC datetime."""
    return datetime.fromtimestamp(timestamp, UTC)


def signer_for(key: Ed25519PrivateKey) -> CryptoSigner:
    """A securesystemslib signer (scheme ed25519, default key id) for a cryptography Ed25519 key."""
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))


def _load_or_create_key(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        return wire.load_private_key(path)
    key = wire.generate_key()
    wire.write_private_key(key, path)
    return key


@dataclass(frozen=True)
class OnlineKeys:
    """The server's snapshot and timestamp signers."""

    snapshot: CryptoSigner
    timestamp: CryptoSigner

    def public(self) -> dict[str, dict[str, Any]]:
        """``{"snapshot": {"keyid": ..., "key": <TUF key dict>}, "timestamp": {...}}``."""
        return {
            role: {"keyid": signer.public_key.keyid, "key": signer.public_key.to_dict()}
            for role, signer in (("snapshot", self.snapshot), ("timestamp", self.timestamp))
        }


def load_online_keys(keys_dir: Path) -> OnlineKeys:
    """Load the online keys from the server's keys directory, making them (0600) on first use."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return OnlineKeys(
        snapshot=signer_for(_load_or_create_key(keys_dir / SNAPSHOT_KEY_FILE)),
        timestamp=signer_for(_load_or_create_key(keys_dir / TIMESTAMP_KEY_FILE)),
    )


def parse_metadata(data: bytes, kind: type[T]) -> Metadata[T]:
    """Deserialize ``data`` as TUF metadata of ``kind`` (OtaError 400 otherwise)."""
    try:
        md = Metadata[T].from_bytes(data)
    except DeserializationError as exc:
        raise OtaError(400, f"not valid TUF metadata: {exc}") from None
    if not isinstance(md.signed, kind):
        raise OtaError(400, f"expected {kind.type} metadata, got {md.signed.type}")
    return md


def _sha256_meta(version: int, data: bytes) -> MetaFile:
    return MetaFile.from_data(version, data, ["sha256"])


class Repository:
    """The TUF repository in one directory. Mutating methods hold an exclusive file lock (``.lock``), so
    the server's handlers, its background task and a test or local tool can all call them; they block on
    disk I/O and hashing, so the server runs them on a worker thread."""

    def __init__(self, directory: Path, keys: OnlineKeys) -> None:
        self.directory = directory
        self.keys = keys
        self.metadata_dir = directory / "metadata"
        self.targets_dir = directory / "targets"
        self.incoming_dir = directory / "incoming"
        self._published_cache: tuple[tuple[int, int, int], dict[str, TargetFile]] | None = None

    # ---- reading ---------------------------------------------------------------------------------------

    def metadata_file(self, name: str) -> Path:
        return self.metadata_dir / name

    @property
    def initialized(self) -> bool:
        return self.metadata_file("root.json").is_file()

    def root_bytes(self) -> bytes | None:
        """The current root.json as served (the bytes enrollment bundles carry), or None before init."""
        try:
            return self.metadata_file("root.json").read_bytes()
        except FileNotFoundError:
            return None

    def read(self, name: str, kind: type[T]) -> Metadata[T] | None:
        """The stored metadata ``<name>.json`` (e.g. ``targets``), None if absent."""
        try:
            data = self.metadata_file(f"{name}.json").read_bytes()
        except FileNotFoundError:
            return None
        return parse_metadata(data, kind)

    def published(self) -> dict[str, TargetFile]:
        """The targets listed by the current targets.json (path -> TargetFile), cached by file identity."""
        path = self.metadata_file("targets.json")
        try:
            st = path.stat()
        except FileNotFoundError:
            return {}
        ident = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._published_cache
        if cached is not None and cached[0] == ident:
            return cached[1]
        try:
            md = parse_metadata(path.read_bytes(), Targets)
        except (OtaError, OSError) as exc:
            log.error("cannot read the served targets.json: %s", exc)
            return {}
        self._published_cache = (ident, dict(md.signed.targets))
        return self._published_cache[1]

    def target_file(self, path: str) -> Path | None:
        """The stored file for target ``path`` if the path is well formed and stays in the targets dir."""
        if not wire.TARGET_PATH.match(path):
            return None
        file = (self.targets_dir / path).resolve()
        if not file.is_relative_to(self.targets_dir.resolve()):
            return None
        return file

    def status(self, now: datetime) -> dict[str, Any]:
        """Versions, expiry and key ids of the four roles, and whether the root trusts this server's keys."""
        root = self.read("root", Root)
        stored: dict[str, Metadata[Any] | None] = {
            "root": root,
            "targets": self.read("targets", Targets),
            "snapshot": self.read("snapshot", Snapshot),
            "timestamp": self.read("timestamp", Timestamp),
        }
        roles: dict[str, Any] = {}
        for name, md in stored.items():
            if md is None or root is None:
                continue
            spec = root.signed.roles[name]
            roles[name] = {
                "version": md.signed.version,
                "expires": md.signed.expires.isoformat(),
                "expired": md.signed.is_expired(now),
                "keyids": list(spec.keyids),
                "threshold": spec.threshold,
            }
        online = self.keys.public()
        trusted = root is not None and all(
            root.signed.roles[role].keyids == [online[role]["keyid"]] for role in ("snapshot", "timestamp")
        )
        return {
            "initialized": root is not None,
            "consistent_snapshot": False,
            "roles": roles,
            "online_keys": {role: entry["keyid"] for role, entry in online.items()},
            "online_keys_trusted": trusted,
            "published": len(self.published()),
        }

    # ---- writing ---------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive across threads and processes (flock on ``.lock``); not re-entrant."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.directory / ".lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _write(self, name: str, data: bytes) -> None:
        write_file_atomically(self.metadata_file(name), data)

    def _check_online_roles(self, root: Root) -> None:
        """The root must give snapshot and timestamp to exactly this server's keys, and never let an
        online key sign root or targets (else a compromised server could publish)."""
        online = self.keys.public()
        for role in ("snapshot", "timestamp"):
            spec = root.roles[role]
            if spec.keyids != [online[role]["keyid"]] or spec.threshold != 1:
                raise OtaError(
                    400,
                    f"the root's {role} role must be this server's {role} key {online[role]['keyid']} "
                    "(threshold 1): fetch GET /api/v1/ota/online-keys",
                )
        online_ids = {entry["keyid"] for entry in online.values()}
        for role in ("root", "targets"):
            spec = root.roles[role]
            if online_ids & set(spec.keyids):
                raise OtaError(400, f"an online key may not sign {role}: {role} keys must be offline keys")
            if spec.threshold < 1 or len(spec.keyids) < spec.threshold:
                raise OtaError(400, f"the root's {role} role has fewer keys than its threshold")

    def _check_targets(self, md: Metadata[Targets], root: Root, now: datetime) -> None:
        """Signed per ``root``, newer than the current targets, unexpired, no delegations, and every target
        a model package the server holds with exactly that length and those hashes."""
        try:
            root.verify_delegate("targets", md.signed_bytes, md.signatures)
        except UnsignedMetadataError:
            raise OtaError(403, "targets metadata is not signed by the root's targets key(s)") from None
        current = self.read("targets", Targets)
        targets = md.signed
        if current is not None and targets.version <= current.signed.version:
            raise OtaError(409, f"targets version {targets.version} is not above the current {current.signed.version}")
        if targets.is_expired(now):
            raise OtaError(400, f"targets metadata expired at {targets.expires.isoformat()}")
        if targets.delegations is not None:
            raise OtaError(400, "delegated targets roles are not supported")
        old = current.signed.targets if current is not None else {}
        for path, info in targets.targets.items():
            file = self.target_file(path)
            if file is None:
                raise OtaError(400, f"target '{path[:100]}' is not models/<name>/<version>.wsm")
            if "sha256" not in info.hashes:
                raise OtaError(400, f"target {path} has no sha256 hash")
            try:
                size = file.stat().st_size
            except FileNotFoundError:
                raise OtaError(400, f"target {path} is not on the server: upload the package first") from None
            if size != info.length:
                raise OtaError(400, f"target {path} is {size} bytes on the server, the metadata says {info.length}")
            if old.get(path) == info:
                continue  # unchanged: checked when it was first listed
            with open(file, "rb") as fh:
                try:
                    info.verify_length_and_hashes(fh)
                except LengthOrHashMismatchError:
                    raise OtaError(400, f"target {path} does not match the package the server holds") from None

    def _sign_online(self, now: datetime) -> tuple[int, int]:
        """A new snapshot for the stored targets.json, then a new timestamp for it; their versions."""
        targets_data = self.metadata_file("targets.json").read_bytes()
        targets = parse_metadata(targets_data, Targets)
        old_snapshot = self.read("snapshot", Snapshot)
        snapshot = Metadata(
            Snapshot(
                version=old_snapshot.signed.version + 1 if old_snapshot else 1,
                expires=now + SNAPSHOT_LIFETIME,
                meta={"targets.json": _sha256_meta(targets.signed.version, targets_data)},
            )
        )
        snapshot.sign(self.keys.snapshot)
        snapshot_data = snapshot.to_bytes()
        self._write("snapshot.json", snapshot_data)
        version = self._sign_timestamp(now, snapshot.signed.version, snapshot_data)
        return snapshot.signed.version, version

    def _sign_timestamp(self, now: datetime, snapshot_version: int, snapshot_data: bytes) -> int:
        old = self.read("timestamp", Timestamp)
        timestamp = Metadata(
            Timestamp(
                version=old.signed.version + 1 if old else 1,
                expires=now + TIMESTAMP_LIFETIME,
                snapshot_meta=_sha256_meta(snapshot_version, snapshot_data),
            )
        )
        timestamp.sign(self.keys.timestamp)
        self._write("timestamp.json", timestamp.to_bytes())
        return timestamp.signed.version

    def accept_root(self, root_data: bytes, targets_data: bytes | None, now: datetime) -> dict[str, Any]:
        """Initialize the repository (root v1, self-signed, with targets) or rotate to root v(N+1), which
        must be signed by the current root's keys and by its own. The current targets must still verify
        under the new root, or ``targets_data`` (signed with the new targets key) replaces them."""
        new = parse_metadata(root_data, Root)
        with self.lock():
            current = self.read("root", Root)
            if current is None:
                if new.signed.version != 1:
                    raise OtaError(409, "the repository is not initialized: its first root must be version 1")
                if targets_data is None:
                    raise OtaError(400, "initializing needs the first targets metadata too")
            else:
                if new.signed.version != current.signed.version + 1:
                    raise OtaError(409, f"root version must be {current.signed.version + 1}, got {new.signed.version}")
                try:
                    current.signed.verify_delegate("root", new.signed_bytes, new.signatures)
                except UnsignedMetadataError:
                    raise OtaError(403, "the new root is not signed by the current root key(s)") from None
            try:
                new.signed.verify_delegate("root", new.signed_bytes, new.signatures)
            except UnsignedMetadataError:
                raise OtaError(403, "the new root is not signed by its own root key(s)") from None
            if new.signed.is_expired(now):
                raise OtaError(400, f"root metadata expired at {new.signed.expires.isoformat()}")
            if new.signed.consistent_snapshot:
                raise OtaError(400, "this server does not use consistent snapshots (consistent_snapshot: false)")
            self._check_online_roles(new.signed)
            targets = parse_metadata(targets_data, Targets) if targets_data is not None else None
            if targets is not None:
                self._check_targets(targets, new.signed, now)
            else:
                served = self.read("targets", Targets)
                assert served is not None
                try:
                    new.signed.verify_delegate("targets", served.signed_bytes, served.signatures)
                except UnsignedMetadataError:
                    raise OtaError(
                        409, "the new root changes the targets key: send targets re-signed with the new key"
                    ) from None
            root_bytes = new.to_bytes()
            self._write(f"{new.signed.version}.root.json", root_bytes)
            self._write("root.json", root_bytes)
            summary: dict[str, Any] = {"root_version": new.signed.version, "initialized": current is None}
            if targets is not None:
                self._write("targets.json", targets.to_bytes())
                summary["targets_version"] = targets.signed.version
                summary["snapshot_version"], summary["timestamp_version"] = self._sign_online(now)
        return summary

    def accept_targets(self, data: bytes, now: datetime) -> dict[str, Any]:
        """Publish new targets metadata signed by the offline targets key (see ``_check_targets``), then
        sign a new snapshot and timestamp. Returns the versions and the paths added and removed."""
        md = parse_metadata(data, Targets)
        with self.lock():
            root = self.read("root", Root)
            if root is None:
                raise OtaError(409, "the OTA repository is not initialized ('wardsight ota init')")
            before = self.published()
            self._check_targets(md, root.signed, now)
            self._write("targets.json", md.to_bytes())
            snapshot_version, timestamp_version = self._sign_online(now)
        after = md.signed.targets
        return {
            "targets_version": md.signed.version,
            "snapshot_version": snapshot_version,
            "timestamp_version": timestamp_version,
            "added": sorted(p for p in after if before.get(p) != after[p]),
            "removed": sorted(p for p in before if p not in after),
        }

    def refresh_online(self, now: datetime, *, force: bool = False) -> list[str]:
        """Re-sign snapshot and/or timestamp when less than half their lifetime is left at ``now`` (or the
        snapshot no longer matches targets.json, or ``force``). Returns the roles re-signed."""
        with self.lock():
            if not self.initialized:
                return []
            snapshot = self.read("snapshot", Snapshot)
            timestamp = self.read("timestamp", Timestamp)
            targets = self.read("targets", Targets)
            assert targets is not None
            stale_snapshot = (
                force
                or snapshot is None
                or snapshot.signed.expires - now < SNAPSHOT_LIFETIME / 2
                or snapshot.signed.meta["targets.json"].version != targets.signed.version
            )
            if stale_snapshot:
                self._sign_online(now)
                return ["snapshot", "timestamp"]
            assert snapshot is not None
            if timestamp is None or timestamp.signed.expires - now < TIMESTAMP_LIFETIME / 2:
                snapshot_data = self.metadata_file("snapshot.json").read_bytes()
                self._sign_timestamp(now, snapshot.signed.version, snapshot_data)
                return ["timestamp"]
        return []


# ---- the application -------------------------------------------------------------------------------------

REPOSITORY_KEY = web.AppKey("ota_repository", Repository)


def ota_dir(config: ServerConfig) -> Path:
    """``<data dir>/ota``, next to the database."""
    if config.database is None:
        raise ValueError("config.database must be set (load_server_config sets it)")
    return config.database.parent / OTA_DIR


def open_repository(config: ServerConfig) -> Repository:
    """The repository of a server config (loads or makes the online keys in its keys directory)."""
    keys_dir = config.keys_dir or ota_dir(config).parent / "fleet-keys"
    return Repository(ota_dir(config), load_online_keys(keys_dir))


def bundle_root(source: web.Application | ServerConfig | Path) -> str | None:
    """The current root.json text for enrollment bundles (``Bundle.tuf_root``), None before ``ota init``.

    ``source`` is the app, its config, or the server's data directory (the one holding ``fleet.db``).
    """
    if isinstance(source, web.Application):
        directory = source[REPOSITORY_KEY].directory
    elif isinstance(source, ServerConfig):
        directory = ota_dir(source)
    else:
        directory = source / OTA_DIR
    try:
        return (directory / "metadata" / "root.json").read_text("utf-8")
    except FileNotFoundError:
        return None


def _now(request: web.Request) -> datetime:
    return utc(request.app[CLOCK_KEY]())


def _refused(exc: OtaError) -> RejectedError:
    return RejectedError(exc.status, str(exc))


async def read_capped(request: web.Request, cap: int) -> bytes:
    """The request body, at most ``cap`` bytes (413 beyond; the app's small client_max_size is for JSON)."""
    if request.content_length is not None and request.content_length > cap:
        raise RejectedError(413, f"body larger than {cap} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > cap:
            raise RejectedError(413, f"body larger than {cap} bytes")
    return bytes(body)


def _require_json(request: web.Request) -> None:
    if request.content_type != "application/json":
        raise RejectedError(415, "content type must be application/json")


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


def _audit(request: web.Request, actor: str, action: str, target: str, details: dict[str, Any]) -> None:
    now = request.app[CLOCK_KEY]()
    audit.record(request.app[DB_KEY].db, actor=actor, action=action, target=target, details=details, now=now)


async def post_root(request: web.Request) -> web.Response:
    """Body ``{"root": <root metadata>, "targets": <targets metadata, optional>}``."""
    who = await require(request, "admin")
    _require_json(request)
    raw = await read_capped(request, MAX_ROOT_BYTES + MAX_TARGETS_BYTES)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise RejectedError(400, "body is not JSON (or nested too deeply)") from None
    if not isinstance(body, dict) or "root" not in body or set(body) - {"root", "targets"}:
        raise RejectedError(400, 'body must be {"root": ..., "targets": ... (optional)}')
    root_data = json.dumps(body["root"]).encode()
    targets_data = json.dumps(body["targets"]).encode() if body.get("targets") is not None else None
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
        from fleet.ota import library  # here: library imports this module

        library.mark_published(request.app[DB_KEY].db, repo.published(), who.actor, request.app[CLOCK_KEY]())
    return web.json_response(summary, status=201 if summary["initialized"] else 200)


async def post_targets(request: web.Request) -> web.Response:
    """Body: targets metadata (JSON) signed with the offline targets key."""
    who = await require(request, "admin")
    _require_json(request)
    data = await read_capped(request, MAX_TARGETS_BYTES)
    repo = request.app[REPOSITORY_KEY]
    try:
        summary = await asyncio.to_thread(repo.accept_targets, data, _now(request))
    except OtaError as exc:
        raise _refused(exc) from None
    from fleet.ota import library  # here: library imports this module

    now = request.app[CLOCK_KEY]()
    library.mark_published(request.app[DB_KEY].db, repo.published(), who.actor, now)
    _audit(request, who.actor, "ota.targets", f"ota:targets:v{summary['targets_version']}", summary)
    return web.json_response(summary)


async def _resign_forever(app: web.Application) -> None:
    repo = app[REPOSITORY_KEY]
    while True:
        try:
            roles = await asyncio.to_thread(repo.refresh_online, utc(app[CLOCK_KEY]()))
            if roles:
                log.info("re-signed %s", " and ".join(roles))
        except Exception:  # a bad file must not end the task: keep trying, loudly
            log.exception("re-signing the OTA snapshot/timestamp failed")
        await asyncio.sleep(RESIGN_CHECK_SECONDS)


async def _resigner_ctx(app: web.Application) -> AsyncIterator[None]:
    async with running(_resign_forever(app), "wardsight-ota-resigner"):
        yield


def setup(app: web.Application) -> None:
    """Add the repository (online keys made on first use), its routes, the library's routes, the
    background re-signing task and the rollouts' target check (published targets only) to ``app``."""
    from fleet.ota import library  # here: library imports this module

    app[REPOSITORY_KEY] = open_repository(app[CONFIG_KEY])
    app.router.add_get("/tuf/metadata/{name}", get_metadata)
    app.router.add_get(r"/tuf/targets/{path:models/[^/]{1,64}/[^/]{1,64}}", get_target)
    app.router.add_get("/api/v1/ota/root", get_root)
    app.router.add_get("/api/v1/ota/online-keys", get_online_keys)
    app.router.add_get("/api/v1/ota/status", get_status)
    app.router.add_post("/api/v1/ota/root", post_root)
    app.router.add_post("/api/v1/ota/targets", post_targets)
    app.cleanup_ctx.append(_resigner_ctx)
    library.setup(app)
    repo = app[REPOSITORY_KEY]

    def published_check(db: sqlite_utils.Database, target: str) -> bool:
        """For rollouts: a version may be rolled out only once signed targets metadata lists it."""
        return target in repo.published()

    app[rollouts.TARGET_CHECK_KEY] = published_check
