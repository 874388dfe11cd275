"""Which disk flashing may overwrite, decided on lsblk JSON samples (lsblk -J -b -o provisioning.disks.LSBLK_COLUMNS)
and mountinfo text; one test reads this machine's own lsblk and refuses the disk it runs from."""

from pathlib import Path

import pytest

from provisioning import disks
from provisioning.errors import ProvisionError
from tests.provisioning.helpers import root_disk

GIB = 2**30


def node(name, kind="disk", *, size=32 * GIB, mounts=(None,), children=(), rm=False, ro=False, majmin="8:0", **kw):
    out = dict(name=name, kname=name, path=f"/dev/{name}", type=kind, rm=rm, ro=ro, size=size,
               model=kw.get("model"), tran=kw.get("tran"), mountpoints=list(mounts))  # fmt: skip
    out["maj:min"] = majmin
    if children:
        out["children"] = list(children)
    return out


# A laptop: the system on NVMe (LUKS + LVM), a card reader with a Pi card auto-mounted, a blank card, a snap.
LAPTOP = {
    "blockdevices": [
        node("loop0", "loop", size=GIB, mounts=["/snap/core22/1380"], majmin="7:0"),
        node("sda", rm=True, tran="usb", model="STORAGE DEVICE", children=[
            node("sda1", "part", size=512 * 2**20, mounts=["/media/ward/bootfs"], majmin="8:1"),
            node("sda2", "part", mounts=["/media/ward/rootfs"], majmin="8:2"),
        ]),
        node("sdb", rm=True, tran="usb", model="SD Card Reader", majmin="8:16", children=[
            node("sdb1", "part", majmin="8:17"),
        ]),
        node("sdc", rm=True, tran="usb", size=0, majmin="8:32"),
        node("sdd", rm=True, tran="usb", ro=True, majmin="8:48"),
        node("nvme0n1", size=512 * GIB, tran="nvme", model="Samsung SSD 980", majmin="259:0", children=[
            node("nvme0n1p1", "part", size=GIB, mounts=["/boot/efi"], majmin="259:1"),
            node("nvme0n1p2", "part", majmin="259:2", children=[
                node("nvme0n1p2_crypt", "crypt", majmin="254:0", children=[
                    node("vg-root", "lvm", mounts=["/"], majmin="254:1"),
                    node("vg-swap", "lvm", mounts=["[SWAP]"], majmin="254:2"),
                ]),
            ]),
        ]),
        node("sr0", "rom", size=0, rm=True, majmin="11:0"),
    ]
}  # fmt: skip

# A Pi 5 booted from its SD card, an NVMe drive to provision; lsblk before 2.37 ("mountpoint", one value).
PI = {
    "blockdevices": [
        {"name": "mmcblk0", "path": "/dev/mmcblk0", "maj:min": "179:0", "type": "disk", "size": 64 * GIB,
         "rm": False, "ro": False, "mountpoint": None, "children": [
            {"name": "mmcblk0p1", "path": "/dev/mmcblk0p1", "maj:min": "179:1", "type": "part",
             "mountpoint": "/boot/firmware"},
            {"name": "mmcblk0p2", "path": "/dev/mmcblk0p2", "maj:min": "179:2", "type": "part", "mountpoint": "/"},
        ]},
        {"name": "nvme0n1", "path": "/dev/nvme0n1", "maj:min": "259:0", "type": "disk", "size": 256 * GIB,
         "rm": False, "ro": False, "tran": "nvme", "mountpoint": None},
    ]
}  # fmt: skip

MOUNTINFO_SDB = "27 1 8:17 / / rw,relatime - ext4 /dev/sdb1 rw\n28 27 0:21 / /proc rw - proc proc rw\n"


@pytest.mark.parametrize(
    "tree, device, reason",
    [
        (LAPTOP, "/dev/nvme0n1", "(/boot/efi on /dev/nvme0n1p1, / on /dev/vg-root, [SWAP] on /dev/vg-swap)"),
        (LAPTOP, "/dev/sda", "has mounted file systems (/media/ward/bootfs on /dev/sda1, /media/ward/rootfs"),
        (LAPTOP, "/dev/sda1", "is a partition or volume, not a whole disk"),
        (LAPTOP, "/dev/vg-root", "is a partition or volume, not a whole disk"),
        (LAPTOP, "/dev/loop0", "is a loop device, not a disk"),
        (LAPTOP, "/dev/sr0", "is a rom device, not a disk"),
        (LAPTOP, "/dev/sdc", "has no medium"),
        (LAPTOP, "/dev/sdd", "is read-only"),
        (LAPTOP, "/dev/sdz", "is not a block device that lsblk lists"),
        (PI, "/dev/mmcblk0", "holds the running system (/boot/firmware on /dev/mmcblk0p1, / on /dev/mmcblk0p2)"),
        (PI, "/dev/mmcblk0p2", "is a partition or volume"),
    ],
)
def test_disks_that_must_not_be_overwritten_are_refused_with_the_reason(tree, device, reason):
    assert reason in disks.refusal(tree, device, set())
    with pytest.raises(ProvisionError, match="."):
        disks.check_target(device, 1024, tree, "")


def test_a_free_card_or_drive_is_accepted_and_described():
    card = disks.check_target("/dev/sdb", 4 * GIB, LAPTOP, "")
    assert card.describe() == "/dev/sdb: 32.0 GiB 'SD Card Reader' (usb, removable)"
    assert disks.check_target("sdb", GIB, LAPTOP, "").path == "/dev/sdb"
    drive = disks.check_target("/dev/nvme0n1", 4 * GIB, PI, "")
    assert (drive.path, drive.removable, drive.transport) == ("/dev/nvme0n1", False, "nvme")


def test_the_disk_behind_a_system_mount_in_mountinfo_is_refused_even_if_lsblk_shows_no_mount():
    assert disks.system_devices(MOUNTINFO_SDB) == {"8:17"}
    assert "holds the running system" in disks.refusal(LAPTOP, "/dev/sdb", disks.system_devices(MOUNTINFO_SDB))
    with pytest.raises(ProvisionError, match="holds the running system"):
        disks.check_target("/dev/sdb", GIB, LAPTOP, MOUNTINFO_SDB)


def test_an_image_larger_than_the_disk_is_refused():
    with pytest.raises(ProvisionError, match="is larger than /dev/sdb"):
        disks.check_target("/dev/sdb", 33 * GIB, LAPTOP, "")


def test_this_machines_own_system_disk_is_refused():
    disk = root_disk()
    mountinfo = Path("/proc/self/mountinfo").read_text()
    assert "holds the running system" in disks.refusal(disks.lsblk(), disk, disks.system_devices(mountinfo))
