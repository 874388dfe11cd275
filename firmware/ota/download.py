"""Resumable, bounded download of a TUF target, then verification against its signed length and hashes.

Bytes go to ``<device dir>/ota/partial/<sha256>.part``, appended chunk by chunk (fsynced every few MiB), so an
agent killed mid-download, or a dropped connection, resumes from the partial file's size with an HTTP
``Range`` request. Nothing past the signed length is ever read or written (TUF's "endless data"), a server
that ignores ``Range`` (200) restarts the file from zero, and a ``Content-Range`` that does not start where
we asked is refused. Only a file whose length and hashes match the TUF ``TargetFile`` is renamed to
``<device dir>/ota/verified/<sha256>.wsm``; a complete file that does not match is deleted (the next try
starts from zero).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuf.api import exceptions
from tuf.api.metadata import TargetFile

from firmware.ota.tufclient import UrllibFetcher
from wardsight.errors import WardSightError
from wardsight.paths import fsync_dir

log = logging.getLogger("wardsight.device.ota")

CHUNK = 64 * 1024
SYNC_EVERY = 4 * 1024 * 1024
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")

Progress = Callable[[int, int], None]  # (bytes on disk, total)


class DownloadError(WardSightError):
    """The target could not be downloaded or did not verify; ``code`` is the report's reason."""

    def __init__(self, message: str, code: str = "download_failed") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Downloaded:
    path: Path  # the verified file
    resumed_from: int  # bytes already on disk when this attempt started (0: a fresh download)
    fetched: int  # bytes this attempt received


class TargetDownloader:
    """Downloads under ``ota_dir`` (``<device dir>/ota``)."""

    def __init__(
        self, ota_dir: Path, context: ssl.SSLContext | None, *, timeout: float = 30.0, chunk_size: int = CHUNK
    ) -> None:
        self.partial_dir = ota_dir / "partial"
        self.verified_dir = ota_dir / "verified"
        self.fetcher = UrllibFetcher(context, timeout, chunk_size)
        self.chunk_size = chunk_size

    def paths(self, info: TargetFile) -> tuple[Path, Path]:
        digest = info.hashes["sha256"]
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise DownloadError(f"target {info.path} has a malformed sha256", "tuf_error")
        return self.partial_dir / f"{digest}.part", self.verified_dir / f"{digest}.wsm"

    def verified(self, info: TargetFile) -> Path | None:
        """The already verified file for ``info`` (checked again now), if there is one."""
        _, done = self.paths(info)
        try:
            with open(done, "rb") as fh:
                info.verify_length_and_hashes(fh)
        except (OSError, exceptions.LengthOrHashMismatchError):
            return None
        return done

    def fetch(self, info: TargetFile, url: str, progress: Progress | None = None) -> Downloaded:
        """Download (resuming) and verify ``info`` from ``url``; returns the verified file."""
        done = self.verified(info)
        if done is not None:
            return Downloaded(done, info.length, 0)
        part, resumed_from, fetched = self.download(info, url, progress)
        return Downloaded(self.verify(info, part), resumed_from, fetched)

    def download(self, info: TargetFile, url: str, progress: Progress | None = None) -> tuple[Path, int, int]:
        """Bring the partial file to the signed length (resuming); returns (partial file, resumed from, fetched)."""
        part, final = self.paths(info)
        part.parent.mkdir(parents=True, exist_ok=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        have = part.stat().st_size if part.exists() else 0
        if have > info.length:
            log.warning("partial download %s is longer than the target; starting again", part.name)
            part.unlink()
            have = 0
        resumed_from = have
        if resumed_from:
            log.info("resuming the download of %s at %d of %d bytes", info.path, resumed_from, info.length)
        fetched = 0
        if have < info.length:
            fetched = self._transfer(url, part, have, info.length, progress)
        elif progress is not None:
            progress(have, info.length)
        return part, resumed_from, fetched

    def verify(self, info: TargetFile, part: Path) -> Path:
        """Check the complete partial file against the signed length and hashes, then make it the verified file."""
        _, final = self.paths(info)
        try:
            with open(part, "rb") as fh:
                info.verify_length_and_hashes(fh)
        except exceptions.LengthOrHashMismatchError as exc:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{info.path} does not match its signed metadata: {exc}", "hash_mismatch") from None
        os.replace(part, final)
        fsync_dir(final.parent)
        return final

    def discard(self, info: TargetFile | None = None) -> None:
        """Delete ``info``'s partial and verified files, or (None) every file in both directories."""
        if info is not None:
            for path in self.paths(info):
                path.unlink(missing_ok=True)
            return
        self.prune(keep=None)

    def prune(self, keep: TargetFile | None) -> None:
        """Delete the files of every other target (an abandoned offer's download must not fill the card)."""
        wanted = set(self.paths(keep)) if keep is not None else set()
        for directory in (self.partial_dir, self.verified_dir):
            if directory.is_dir():
                for path in directory.iterdir():
                    if path not in wanted:
                        path.unlink(missing_ok=True)

    def _transfer(self, url: str, part: Path, have: int, length: int, progress: Progress | None) -> int:
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            response = self.fetcher.open(url, headers)
        except exceptions.DownloadHTTPError as exc:
            if exc.status_code == 416 and have:  # the partial file is no prefix the server knows: start over
                part.unlink(missing_ok=True)
                raise DownloadError(f"{url}: server refused the range from {have}", "download_failed") from None
            raise DownloadError(f"{url}: HTTP {exc.status_code}", "download_failed") from None
        except exceptions.DownloadError as exc:
            raise DownloadError(str(exc), "download_failed") from None
        fetched = 0
        with contextlib.closing(response):
            status = response.status
            if have and status == 206:
                got = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                if got is None or int(got.group(1)) != have:
                    raise DownloadError(f"{url}: Content-Range does not start at {have}", "download_failed")
            elif status == 200:
                if have:
                    log.info("server ignored the range request; downloading %s from the start", url)
                have = 0
            else:
                raise DownloadError(f"{url}: unexpected HTTP {status}", "download_failed")
            mode = "ab" if have else "wb"
            with open(part, mode) as out:
                if have:
                    out.truncate(have)  # "ab" appends at the end, which is exactly ``have``
                unsynced = 0
                while have < length:
                    try:
                        chunk = response.read(min(self.chunk_size, length - have))  # never past the signed length
                    except OSError as exc:
                        raise DownloadError(f"{url}: connection failed after {have} bytes: {exc}") from None
                    if not chunk:
                        break
                    out.write(chunk)
                    out.flush()
                    have += len(chunk)
                    fetched += len(chunk)
                    unsynced += len(chunk)
                    if unsynced >= SYNC_EVERY:
                        os.fsync(out.fileno())
                        unsynced = 0
                    if progress is not None:
                        progress(have, length)
                os.fsync(out.fileno())
        if have < length:
            raise DownloadError(f"{url}: the connection ended after {have} of {length} bytes", "download_incomplete")
        return fetched
