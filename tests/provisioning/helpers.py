"""Disk images made in the test (sparse files; sfdisk for the table, mkfs.fat or mformat for the FAT, no root),
a skip that names the missing Debian tool, and reading files back out of an image with mtools."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGES = {"sfdisk": "fdisk", "mkfs.fat": "dosfstools", "bmaptool": "bmap-tools"}
MIB = 1024 * 1024
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


SEARCH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"  # sfdisk, mkfs.fat: off a plain user's PATH


def tool(name: str) -> str:
    found = shutil.which(name, path=SEARCH)
    assert found is not None, f"call need({name!r}) first"
    return found


def need(*tools: str) -> None:
    """Skip the test, in one line naming the tool and its Debian package, when a tool is missing."""
    missing = [name for name in tools if shutil.which(name, path=SEARCH) is None]
    if missing:
        packages = sorted({PACKAGES.get(name, "mtools") for name in missing})
        pytest.skip(f"needs {', '.join(missing)} (apt-get install {' '.join(packages)})")


def make_image(path: Path, scheme: str = "mbr", *, fat: str = "mkfs", fat_first: bool = True) -> int:
    """A 64 MiB image: a 32 MiB FAT partition at 1 MiB and a Linux one (FAT second if not ``fat_first``).
    Returns the FAT partition's byte offset."""
    need("sfdisk", "mkfs.fat" if fat == "mkfs" else "mformat")
    with open(path, "wb") as fh:
        fh.truncate(64 * MIB)
    fat_type, linux_type = ("c", "83") if scheme == "mbr" else (ESP, LINUX)
    slots = [(2048, 65536), (67584, 61440)]
    fat_slot, linux_slot = slots if fat_first else slots[::-1]
    lines = [f"label: {'dos' if scheme == 'mbr' else 'gpt'}"]
    for start, size, kind in sorted([(*fat_slot, fat_type), (*linux_slot, linux_type)]):
        lines.append(f"start={start}, size={size}, type={kind}")
    subprocess.run([tool("sfdisk"), "-q", str(path)], input="\n".join(lines) + "\n", text=True, check=True)
    offset = fat_slot[0] * 512
    if fat == "mkfs":
        blocks = str(fat_slot[1] // 2)
        subprocess.run(
            [tool("mkfs.fat"), "--offset", str(fat_slot[0]), str(path), blocks], capture_output=True, check=True
        )
    else:
        sectors = str(fat_slot[1])
        args = ["mformat", "-i", f"{path}@@{offset}", "-T", sectors, "-h", "2", "-s", "32", "-H", "0", "::"]
        subprocess.run(args, capture_output=True, check=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    return offset


def read_from_image(image: Path, offset: int, path: str) -> bytes:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    result = subprocess.run(["mtype", "-i", f"{image}@@{offset}", f"::{path}"], capture_output=True, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def root_disk() -> str:
    """The whole disk behind this machine's ``/`` as lsblk names it; skips when ``/`` is not on a block device."""
    from provisioning import disks

    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    root = next(line.split() for line in mountinfo if line.split()[4] == "/")
    source = root[root.index("-") + 2]
    if not source.startswith("/dev/") or not Path(source).is_block_device():
        pytest.skip(f"the root file system here is not on a block device ({source})")
    tops = disks.lsblk()["blockdevices"]
    disk = next((t["path"] for t in tops if any(n.get("path") == source for n in disks._walk(t))), None)
    if disk is None:
        pytest.skip(f"lsblk does not list {source}")
    return str(disk)
