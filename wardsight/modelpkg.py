"""The model package: one file that carries a model's builds for every backend and a manifest saying how to run them.

A package is an uncompressed POSIX tar (``.wsm``) holding ``manifest.json`` and the model files it names. One
package serves CPU, Hailo and Coral builds of a model: each *build* names its backend, runtime, file, sha256 and
size, and the input and decoder settings the agent needs. The OTA system signs and ships packages whole (TUF
checks the package's length and hashes); the device then extracts only the build for its backend and checks that
file's sha256 against the manifest.

Reading is defensive: member names are plain file names (no directories, links or ``..``), sizes are capped, the
number of members is capped (read header by header and refused at the first past :data:`MAX_MEMBERS`), tar
extension headers are small and carry no GNU sparse maps, and nothing is extracted that the manifest does not name.
Error messages are one line of at most :data:`MAX_ERROR_CHARS` characters and never name a path on disk (the
caller knows which file it passed), so a server can hand them to whoever uploaded the package.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wardsight.errors import WardSightError

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 * 1024
MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_MEMBERS = 16  # the manifest and at most 8 builds (Manifest.builds), with room to spare
MAX_EXTENSION_BYTES = 64 * 1024  # a pax or GNU long-name header (names here are at most 128 characters)
MAX_ERROR_CHARS = 300
FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
VERSION = r"^[0-9]{1,6}(\.[0-9]{1,6}){0,3}$"  # numeric dotted: ordered without ambiguity

Backend = Literal["cpu", "hailo", "coral", "imx500"]
# The Hailo chips a HEF is compiled for (a build's ``hardware``): the Dataflow Compiler targets one architecture.
HAILO_CHIPS = ("hailo8", "hailo8l", "hailo10h")
Runtime = Literal["litert", "onnxruntime", "hailort", "edgetpu", "imx500"]


def short(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` on one line and at most ``limit`` characters (cut with an ellipsis)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class PackageError(WardSightError):
    """Not a usable model package (malformed, unsafe, or a file that does not match its manifest).

    The message is made :func:`short`; it names members and the package, never a path on disk."""

    def __init__(self, message: str) -> None:
        super().__init__(short(message))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Build(_Strict):
    backend: Backend
    runtime: Runtime
    file: Annotated[str, Field(pattern=FILE_NAME)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size: Annotated[int, Field(gt=0, le=MAX_FILE_BYTES)]
    input: Mapping[str, int | float | str] = Field(default_factory=dict)  # e.g. long_side, multiple, dtype
    decoder: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
    hardware: Annotated[str, Field(max_length=64)] | None = None  # e.g. "hailo8l" (a HEF runs on one arch)
    # The runtime the file was compiled for, e.g. "4.23.0" for a HEF (HailoRT); optional (a CPU build has none).
    runtime_version: Annotated[str, Field(pattern=VERSION)] | None = None


class Manifest(_Strict):
    format: Literal[1] = 1
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
    version: Annotated[str, Field(pattern=VERSION)]
    task: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]  # "pose", "face_mask", ...
    license: Annotated[str, Field(min_length=1, max_length=64)]
    min_agent_version: Annotated[str, Field(pattern=VERSION)] = "0.1"
    builds: Annotated[list[Build], Field(min_length=1, max_length=8)]

    @model_validator(mode="after")
    def _unique(self) -> Manifest:
        files = [b.file for b in self.builds]
        if len(set(files)) != len(files) or MANIFEST in files:
            raise ValueError("each build needs its own file, not named manifest.json")
        keys = [(b.backend, b.hardware, b.runtime_version) for b in self.builds]
        if len(set(keys)) != len(keys):
            raise ValueError("two builds for the same backend, hardware and runtime version")
        return self

    def build_for(self, backend: str, hardware: str | None = None) -> Build:
        """The build for ``backend`` (and ``hardware``, when the build names one)."""
        for build in self.builds:
            if build.backend == backend and (build.hardware is None or build.hardware == hardware):
                return build
        raise PackageError(
            f"model {self.name} {self.version} has no build for {backend}{'/' + hardware if hardware else ''}"
        )


def version_key(version: str) -> tuple[int, ...]:
    if not re.match(VERSION, version):
        raise PackageError(f"'{version}' is not a dotted numeric version")
    return tuple(int(p) for p in version.split("."))


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's contents."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def describe_file(path: Path) -> tuple[str, int]:
    """(sha256, size) of a model file, for writing a manifest."""
    return file_sha256(path), path.stat().st_size


def write_package(out: Path, manifest: Manifest, files: Mapping[str, Path]) -> None:
    """Write a package: ``files`` maps each build's file name to the file on disk (checked against the manifest)."""
    named = {b.file: b for b in manifest.builds}
    if set(files) != set(named):
        raise PackageError(f"files {sorted(files)} do not match the manifest's builds {sorted(named)}")
    for name, path in files.items():
        digest, size = describe_file(path)
        if (digest, size) != (named[name].sha256, named[name].size):
            raise PackageError(f"the file given for {name} does not match the manifest's sha256/size")
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        # Unset optional fields are left out, so a package without a runtime_version reads on older agents too.
        data = manifest.model_dump_json(indent=2, exclude_none=True).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))
        for name in sorted(files):
            info = tar.gettarinfo(str(files[name]), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime, info.mode = 0, 0o644
            with open(files[name], "rb") as fh:
                tar.addfile(info, fh)
    os.replace(tmp, out)


_EXTENSIONS = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


class _Header(tarfile.TarInfo):
    """tarfile's header reader with limits: tarfile reads an extension header's data whole into memory and
    follows GNU sparse maps of any length, so both are checked before tarfile processes a header."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise PackageError("package holds a sparse file")
        if self.type in _EXTENSIONS:
            if self.size > MAX_EXTENSION_BYTES:
                raise PackageError(f"package has a tar extension header over {MAX_EXTENSION_BYTES} bytes")
            assert tar.fileobj is not None
            start = tar.fileobj.tell()
            records = tar.fileobj.read(self.size)
            tar.fileobj.seek(start)
            if b"GNU.sparse" in records:
                raise PackageError("package holds a sparse file")
        member: tarfile.TarInfo = tarfile.TarInfo._proc_member(self, tar)  # type: ignore[attr-defined]
        return member


@contextlib.contextmanager
def open_package(path: Path) -> Iterator[tuple[tarfile.TarFile, dict[str, tarfile.TarInfo]]]:
    """The open package and its members by name (see :func:`members`)."""
    try:
        # Uncompressed only: no decompression bombs. Closed by the with below.
        tar = tarfile.open(path, "r:", tarinfo=_Header)  # noqa: SIM115
    except OSError as exc:
        raise PackageError(f"the package cannot be read: {exc.strerror or type(exc).__name__}") from None
    except tarfile.TarError as exc:
        raise PackageError(f"the file is not a model package (an uncompressed tar): {exc}") from None
    with tar:
        yield tar, members(tar)


def members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Every member of a package just opened, by name, read header by header: refused at the first member past
    :data:`MAX_MEMBERS` (the rest is never read), at a second member of the same name, and at a member that is
    not a regular file with a plain file name."""
    found: dict[str, tarfile.TarInfo] = {}
    try:
        while (info := tar.next()) is not None:
            if len(found) == MAX_MEMBERS:
                raise PackageError(f"package has more than {MAX_MEMBERS} members")
            if not re.match(FILE_NAME, info.name) or not info.isfile():
                raise PackageError(f"package member '{info.name[:80]}' is not a regular file with a plain file name")
            if info.name in found:
                raise PackageError(f"package has two members named {info.name}")
            found[info.name] = info
    except (tarfile.TarError, ValueError) as exc:
        raise PackageError(f"the package is not a readable tar: {exc}") from None
    return found


def _member(listed: Mapping[str, tarfile.TarInfo], name: str, limit: int) -> tarfile.TarInfo:
    info = listed.get(name)
    if info is None:
        raise PackageError(f"package has no {name}")
    if info.size > limit:
        raise PackageError(f"package member {name} is over {limit} bytes")
    return info


def read_manifest(path: Path) -> Manifest:
    with open_package(path) as (tar, listed):
        fh = tar.extractfile(_member(listed, MANIFEST, MAX_MANIFEST_BYTES))
        assert fh is not None
        try:
            return Manifest.model_validate(json.loads(fh.read()))
        except (ValueError, ValidationError, RecursionError) as exc:
            raise PackageError(f"package manifest is invalid: {exc}") from None


def extract_build(path: Path, build: Build, dest: Path) -> Path:
    """Copy one build's file out of the package to ``dest`` (a file path), checking its size and sha256."""
    with open_package(path) as (tar, listed):
        info = _member(listed, build.file, MAX_FILE_BYTES)
        if info.size != build.size:
            raise PackageError(f"{build.file} is {info.size} bytes, the manifest says {build.size}")
        src = tar.extractfile(info)
        assert src is not None
        digest = hashlib.sha256()
        tmp = dest.with_name(dest.name + ".part")
        with open(tmp, "wb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
    if digest.hexdigest() != build.sha256:
        tmp.unlink(missing_ok=True)
        raise PackageError(f"{build.file} does not match its sha256 in the manifest")
    os.replace(tmp, dest)
    return dest
