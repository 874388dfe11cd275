"""A model package an operator uploads: checked thoroughly, then stored as the TUF target
``models/<name>/<version>.wsm`` in the repository (staged until signed targets metadata lists it)."""

from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.ota.repository.metadata import Repository
from wardsight import modelpkg
from wardsight.wire import target_path


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


def _check_members(tar: tarfile.TarFile, manifest: modelpkg.Manifest) -> None:
    """Exactly the manifest and the builds it names, each of its size and sha256."""
    builds = {build.file: build for build in manifest.builds}
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


def inspect_package(path: Path) -> PackageInfo:
    """Check a package thoroughly (modelpkg.PackageError if anything is wrong) and describe it."""
    manifest = modelpkg.read_manifest(path)
    with tarfile.open(path, "r:") as tar:
        _check_members(tar, manifest)
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
