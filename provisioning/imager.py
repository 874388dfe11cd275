"""``wardsight provision imager-manifest``: a Raspberry Pi Imager OS list for built images, so that a site can
open its own images with ``rpi-imager --repo URL/os-list.json``.

Each image is described as Imager's OS list schema (rpi-imager ``doc/json-schema/os-list-schema.json``) wants:
sizes and SHA-256 of the file as downloaded and of the raw image after extraction (``.img``, ``.img.xz``,
``.img.gz`` or a ``.zip`` of one image). ``init_format`` is ``none``: Imager's ``systemd`` format edits
``cmdline.txt``, which in the A/B layout is not on partition 1; the device reads its enrollment bundle from
``wardsight/enrollment.json`` on the first FAT partition instead (``wardsight provision image``).
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from provisioning.errors import ProvisionError

DEFAULT_DEVICES = ("pi5", "pi4")
DEFAULT_DESCRIPTION = (
    "WardSight privacy-first ward camera. Enrolls itself with the bundle on its boot partition "
    "(wardsight provision image); no Imager customisation needed."
)
CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class ImageFacts:
    path: Path
    download_size: int
    download_sha256: str
    extract_size: int
    extract_sha256: str


def _digest(stream: IO[bytes]) -> tuple[int, str]:
    sha, size = hashlib.sha256(), 0
    while chunk := stream.read(CHUNK):
        sha.update(chunk)
        size += len(chunk)
    return size, sha.hexdigest()


@contextmanager
def _extracted(path: Path) -> Iterator[IO[bytes]]:
    """The raw image inside ``path``, as a stream."""
    name = path.name.lower()
    if name.endswith(".xz"):
        with lzma.open(path, "rb") as xz:
            yield xz
    elif name.endswith(".gz"):
        with gzip.open(path, "rb") as gz:
            yield cast(IO[bytes], gz)
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                raise ProvisionError(f"{path}: a zip for Imager holds exactly one image, not {len(members)} files")
            with archive.open(members[0]) as member:
                yield member
    elif name.endswith(".zst") or name.endswith(".zstd"):
        raise ProvisionError(f"{path}: zstd is not read by older Imager versions; publish .img.xz instead")
    else:
        with open(path, "rb") as raw:
            yield raw


def image_facts(path: Path) -> ImageFacts:
    """Sizes and SHA-256 of ``path`` as downloaded and as extracted."""
    if not path.is_file():
        raise ProvisionError(f"{path}: no such image file")
    try:
        with open(path, "rb") as fh:
            download_size, download_sha = _digest(fh)
        if path.suffix.lower() in (".xz", ".gz", ".zip"):
            with _extracted(path) as stream:
                extract_size, extract_sha = _digest(stream)
        else:
            with _extracted(path):
                pass  # refuses formats Imager should not be given
            extract_size, extract_sha = download_size, download_sha
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as exc:
        raise ProvisionError(f"{path}: cannot read the image: {exc}") from None
    return ImageFacts(path, download_size, download_sha, extract_size, extract_sha)


def os_entry(
    facts: ImageFacts,
    *,
    name: str,
    description: str,
    url_base: str,
    icon: str,
    release_date: str,
    devices: tuple[str, ...] = DEFAULT_DEVICES,
) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "icon": icon,
        "url": f"{url_base.rstrip('/')}/{facts.path.name}",
        "extract_size": facts.extract_size,
        "extract_sha256": facts.extract_sha256,
        "image_download_size": facts.download_size,
        "image_download_sha256": facts.download_sha256,
        "release_date": release_date,
        "devices": list(devices),
        "init_format": "none",
    }


def release_date_of(path: Path) -> str:
    """The image file's modification day (UTC), YYYY-MM-DD."""
    return time.strftime("%Y-%m-%d", time.gmtime(path.stat().st_mtime))


def check_date(text: str) -> str:
    try:
        time.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise ProvisionError(f"release date '{text}' is not YYYY-MM-DD") from None
    return text


def os_list(
    images: list[Path],
    *,
    url_base: str,
    name: str,
    description: str = DEFAULT_DESCRIPTION,
    icon: str | None = None,
    release_date: str | None = None,
    devices: tuple[str, ...] = DEFAULT_DEVICES,
) -> dict[str, Any]:
    """The OS list (``{"os_list": [...]}``), one entry per image; names get the file name when there are several."""
    if not url_base.startswith(("https://", "http://")):
        raise ProvisionError(f"--url-base must be an http(s) URL, got '{url_base}'")
    if not images:
        raise ProvisionError("give at least one --image")
    entries = []
    for path in images:
        facts = image_facts(path)
        entries.append(
            os_entry(
                facts,
                name=name if len(images) == 1 else f"{name} ({path.name})",
                description=description,
                url_base=url_base,
                icon=icon or f"{url_base.rstrip('/')}/wardsight.png",
                release_date=check_date(release_date) if release_date else release_date_of(path),
                devices=devices,
            )
        )
    return {"os_list": entries}
