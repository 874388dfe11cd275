"""Which disk ``wardsight provision flash`` may overwrite: a whole disk (an SD card, a USB or NVMe drive) that is
not the one the machine runs from and has nothing mounted. The decisions are pure functions of ``lsblk -J``'s
output and ``/proc/self/mountinfo``'s text, so they are tested on samples without touching a disk.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from provisioning.errors import ProvisionError

LSBLK_COLUMNS = "NAME,KNAME,PATH,MAJ:MIN,TYPE,RM,RO,SIZE,MODEL,TRAN,MOUNTPOINTS"
SYSTEM_MOUNTS = ("/", "/boot", "/boot/firmware", "/boot/efi", "/usr", "/var", "/home", "[SWAP]")


@dataclass(frozen=True)
class Disk:
    path: str
    size: int
    model: str
    transport: str
    removable: bool

    def describe(self) -> str:
        kind = ", removable" if self.removable else ""
        model = f" '{self.model}'" if self.model else ""
        return f"{self.path}: {self.size / 2**30:.1f} GiB{model} ({self.transport or 'unknown bus'}{kind})"


def lsblk() -> dict[str, Any]:
    """``lsblk -J -b`` with the columns the checks read (``MOUNTPOINT`` where lsblk predates ``MOUNTPOINTS``)."""
    for columns in (LSBLK_COLUMNS, LSBLK_COLUMNS.replace("MOUNTPOINTS", "MOUNTPOINT")):
        try:
            result = subprocess.run(["lsblk", "-J", "-b", "-o", columns], capture_output=True, text=True, timeout=30)
        except FileNotFoundError:
            raise ProvisionError("'lsblk' is not installed: apt-get install util-linux") from None
        except subprocess.SubprocessError as exc:
            raise ProvisionError(f"cannot list block devices with lsblk: {exc}") from None
        if result.returncode == 0:
            try:
                tree: dict[str, Any] = json.loads(result.stdout)
            except ValueError:
                break
            return tree
    raise ProvisionError(f"cannot list block devices with lsblk: {result.stderr.strip() or 'no JSON'}")


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("children") or ():
        yield from _walk(child)


def mountpoints(node: dict[str, Any]) -> list[str]:
    """The node's own mount points (lsblk 2.37+ ``mountpoints`` list, or the older single ``mountpoint``)."""
    points = node.get("mountpoints")
    if points is None:
        points = [node.get("mountpoint")]
    return [p for p in points if p]


def system_devices(mountinfo: str) -> set[str]:
    """``major:minor`` of the devices mounted at the system's mount points (``/``, ``/boot``, ...)."""
    found = set()
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[4] in SYSTEM_MOUNTS:
            found.add(fields[2])
    return found


def find(tree: dict[str, Any], device: str) -> dict[str, Any] | None:
    """The top-level lsblk node (a disk, a loop device...) whose path or name is ``device``."""
    for node in tree.get("blockdevices") or ():
        names = {node.get("path"), node.get("name"), f"/dev/{node.get('kname')}", f"/dev/{node.get('name')}"}
        if device in names:
            return node
    return None


def _is_part_of_disk(tree: dict[str, Any], device: str) -> bool:
    return any(
        device in (n.get("path"), f"/dev/{n.get('kname')}")
        for top in tree.get("blockdevices") or ()
        for n in _walk(top)
        if n is not top
    )


def refusal(tree: dict[str, Any], device: str, system: set[str]) -> str | None:
    """Why ``device`` must not be overwritten, or None. ``system``: :func:`system_devices` of mountinfo."""
    node = find(tree, device)
    if node is None:
        if _is_part_of_disk(tree, device):
            return f"{device} is a partition or volume, not a whole disk; give the disk itself (e.g. /dev/sdb)"
        return f"{device} is not a block device that lsblk lists"
    if node.get("type") != "disk":
        return f"{device} is a {node.get('type')} device, not a disk (an SD card, USB or NVMe drive)"
    nodes = list(_walk(node))
    held = [(n.get("path") or n.get("name"), p) for n in nodes for p in mountpoints(n) if p in SYSTEM_MOUNTS]
    held += [(n.get("path") or n.get("name"), "a system mount") for n in nodes if n.get("maj:min") in system]
    if held:
        shown = ", ".join(dict.fromkeys(f"{p} on {dev}" for dev, p in held))
        return f"{device} holds the running system ({shown}); refusing"
    mounted = [(n.get("path") or n.get("name"), p) for n in nodes for p in mountpoints(n)]
    if mounted:
        shown = ", ".join(f"{p} on {dev}" for dev, p in mounted[:3])
        return f"{device} has mounted file systems ({shown}); unmount them first (udisksctl unmount -b DEVICE)"
    if _flag(node.get("ro")):
        return f"{device} is read-only (an SD card's lock switch?)"
    if not int(node.get("size") or 0):
        return f"{device} has no medium (size 0)"
    return None


def _flag(value: Any) -> bool:
    return value in (True, 1, "1", "true")


def disk_info(tree: dict[str, Any], device: str) -> Disk:
    node = find(tree, device)
    if node is None:
        raise ProvisionError(f"{device} is not a block device that lsblk lists")
    return Disk(
        str(node.get("path") or device),
        int(node.get("size") or 0),
        str(node.get("model") or "").strip(),
        str(node.get("tran") or ""),
        _flag(node.get("rm")),
    )


def check_target(device: str, image_size: int, tree: dict[str, Any], mountinfo: str) -> Disk:
    """The disk ``device`` if it may receive an image of ``image_size`` bytes, else a :class:`ProvisionError`."""
    reason = refusal(tree, device, system_devices(mountinfo))
    if reason is not None:
        raise ProvisionError(reason)
    disk = disk_info(tree, device)
    if image_size > disk.size:
        raise ProvisionError(f"the image ({image_size} bytes) is larger than {device} ({disk.size} bytes)")
    return disk
