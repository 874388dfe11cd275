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


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def _check_members(tar: tarfile.TarFile, listed: dict[str, tarfile.TarInfo], manifest: modelpkg.Manifest) -> None:
    """Exactly the manifest and the builds it names, each of its size and sha256 (``listed``: the package's
    members by name, from :func:`modelpkg.members`, which refused duplicates and too many members)."""
    builds = {build.file: build for build in manifest.builds}
    extra = sorted(set(listed) - set(builds) - {modelpkg.MANIFEST})
    missing = sorted(set(builds) - set(listed))
    if extra:
        raise modelpkg.PackageError(f"package has {len(extra)} member(s) the manifest does not name: {_some(extra)}")
    if missing:
        raise modelpkg.PackageError(f"package lacks {len(missing)} file(s) its manifest names: {_some(missing)}")
    for name, build in builds.items():
        info = listed[name]
        if info.size != build.size:
            raise modelpkg.PackageError(f"{name} is {info.size} bytes, the manifest says {build.size}")
        fh = tar.extractfile(info)
        assert fh is not None
        if _sha256_stream(fh) != build.sha256:
            raise modelpkg.PackageError(f"{name} does not match its sha256 in the manifest")


def inspect_package(path: Path) -> PackageInfo:
    """Check a package thoroughly (modelpkg.PackageError if anything is wrong; its message names no path)
    and describe it."""
    manifest = modelpkg.read_manifest(path)
    with modelpkg.open_package(path) as (tar, listed):
        _check_members(tar, listed, manifest)
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
