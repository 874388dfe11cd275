"""The TUF repository on disk: reading the served metadata, and accepting and signing new metadata.

Files live in ``<data dir>/ota/``: ``metadata/`` (``root.json``, ``N.root.json`` for every root version,
``timestamp.json``, ``snapshot.json``, ``targets.json``) and ``targets/models/<name>/<version>.wsm`` (model
packages) and ``targets/system/<compatible>/<version>.raucb`` (RAUC bundles).
Consistent snapshots are off: metadata is served under fixed names and targets under their plain path.
The server signs a new snapshot and timestamp whenever targets change and re-signs them before they expire
(:meth:`Repository.refresh_online`, run by :mod:`fleet.ota.repository.resign`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, T, TargetFile, Targets, Timestamp

from fleet.ota.repository.checks import (
    OtaError,
    check_new_root,
    check_online_roles,
    check_targets,
    check_targets_key_kept,
    parse_metadata,
)
from fleet.ota.repository.keys import OnlineKeys
from wardsight import wire
from wardsight.paths import write_file_atomically

log = logging.getLogger("wardsight.fleet.ota")

SNAPSHOT_LIFETIME = timedelta(days=7)
TIMESTAMP_LIFETIME = timedelta(days=1)


def utc(timestamp: float) -> datetime:
    """A Unix time (the app clock) as an aware UTC datetime."""
    return datetime.fromtimestamp(timestamp, UTC)


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
        if not (wire.TARGET_PATH.match(path) or wire.SYSTEM_TARGET_PATH.match(path)):
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

    def _check_targets(self, md: Metadata[Targets], root: Root, now: datetime) -> None:
        check_targets(md, root, self.read("targets", Targets), self.target_file, now)

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
            check_new_root(new, current, targets_data is not None, now)
            check_online_roles(new.signed, self.keys.public())
            targets = parse_metadata(targets_data, Targets) if targets_data is not None else None
            if targets is not None:
                self._check_targets(targets, new.signed, now)
            else:
                served = self.read("targets", Targets)
                assert served is not None
                check_targets_key_kept(new.signed, served)
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
        """Publish new targets metadata signed by the offline targets key (see
        :func:`fleet.ota.repository.checks.check_targets`), then sign a new snapshot and timestamp. Returns the
        versions and the paths added and removed."""
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
