"""``wardsight provision flash``: an image, with a device's bundle written in (:mod:`provisioning.imagefile`),
onto an SD card or NVMe drive with bmaptool.

The bundle changes blocks of the FAT partition, so a ``.bmap`` shipped with the image no longer matches the
copy (its checksums, and the blocks it maps): when the image has one, a fresh bmap of the copy is made
(``bmaptool create``) and used, which keeps the fast sparse write and bmaptool's verification; without one the
copy is written whole (``--nobmap``). The temporary copy holds a token and is removed whatever happens.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provisioning import disks
from provisioning.errors import ProvisionError
from provisioning.imagefile import check_image, image_with_bundle, require_tool
from wardsight.bundle import Bundle


@dataclass(frozen=True)
class Target:
    path: Path
    description: str


def shipped_bmap(image: Path) -> Path | None:
    """``IMAGE.bmap`` or ``IMAGE-without-suffix.bmap``, when present."""
    for candidate in (image.with_name(image.name + ".bmap"), image.with_suffix(".bmap")):
        if candidate.is_file():
            return candidate
    return None


def block_target(device: Path, image_size: int) -> Target:
    """A whole disk that may be overwritten (see :mod:`provisioning.disks`)."""
    try:
        mode = os.stat(device).st_mode
    except OSError as exc:
        raise ProvisionError(f"{device}: {exc.strerror or exc}") from None
    if not stat.S_ISBLK(mode):
        raise ProvisionError(f"{device} is not a block device (an SD card is e.g. /dev/sdb or /dev/mmcblk0)")
    real = os.path.realpath(device)  # /dev/disk/by-id/... names the same disk
    mountinfo = Path("/proc/self/mountinfo").read_text()
    disk = disks.check_target(real, image_size, disks.lsblk(), mountinfo)
    if not os.access(real, os.W_OK):
        raise ProvisionError(f"cannot write {real}: run as root (sudo) or as a member of the 'disk' group")
    return Target(Path(real), disk.describe())


def file_target(path: Path) -> Target:
    """For tests and rehearsals: a regular file stands in for the disk."""
    if path.exists() and not path.is_file():
        raise ProvisionError(f"{path} is not a regular file (--to-file writes only regular files)")
    return Target(path, f"{path}: a regular file (rehearsal; no disk is written)")


def run_bmaptool(copy: Path, target: Path, use_bmap: bool) -> None:
    """``bmaptool copy`` the prepared copy to ``target``, with a bmap made for the copy or ``--nobmap``."""
    bmaptool = require_tool("bmaptool", "bmap-tools")
    args = [bmaptool, "copy", "--nobmap", str(copy), str(target)]
    if use_bmap:
        bmap = copy.with_name(copy.name + ".bmap")
        _run([bmaptool, "create", "-o", str(bmap), str(copy)], "bmaptool create")
        args = [bmaptool, "copy", "--bmap", str(bmap), str(copy), str(target)]
    _run(args, "bmaptool copy")


def _run(args: list[str], what: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise ProvisionError(f"{what} failed: {lines[-1] if lines else f'exit status {result.returncode}'}")


def flash(
    image: Path,
    bundle: Bundle,
    target: Target,
    *,
    confirm: Callable[[str], bool],
    tmp_dir: Path | None = None,
) -> bool:
    """Write ``image`` with ``bundle`` to ``target`` after ``confirm`` says yes; False when it says no."""
    check_image(image)
    require_tool("bmaptool", "bmap-tools")
    question = f"Write {image.name} with the bundle for {bundle.server_url} to {target.description}?"
    if not confirm(question + " Everything on it will be lost."):
        return False
    with tempfile.TemporaryDirectory(prefix="wardsight-flash-", dir=tmp_dir) as tmp:
        copy = Path(tmp) / image.name
        image_with_bundle(image, bundle, copy)
        run_bmaptool(copy, target.path, use_bmap=shipped_bmap(image) is not None)
    return True
