"""The image's partition table, the slot pairs it holds, and RAUC's ``system.conf`` rendered from it.

The Pi image uses rpi-image-gen's ``image-rota`` layout (its ``genimage.cfg.in.erofs``, GPT; images/README.md):

    1 bootconfig   FAT, mounted rw at /bootfs: autoboot.txt (which boot partition the firmware starts)
    2 boot_a       FAT, slot A's kernel, device trees, config.txt   (autoboot.txt's boot_partition=2)
    3 boot_b       FAT, slot B's                                    (boot_partition=3)
    4 system_a     erofs, slot A's read-only root
    5 system_b     erofs, slot B's
    6 persistent   ext4, /persistent (per-slot /var, the journal, the slot-shared paths)

A slot is a pair: the FAT the firmware boots (its partition number is what ``autoboot.txt`` names) and the root
that pair's ``cmdline.txt`` mounts. RAUC sees each pair as a bootable ``rootfs`` slot with bootname ``A``/``B`` and
its ``boot`` slot as a child (``parent=rootfs.N``), so a bundle always writes both halves of the inactive pair and
never one alone. Devices are named by GPT PARTLABEL (``/dev/disk/by-partlabel/``), which image-rota makes unique
and mandatory; ``/dev/disk/by-slot/active|other`` would not do, as RAUC needs a fixed device per slot.

:func:`render_system_conf` is pure (the table and settings in, the file's text out); the image build writes the
text to ``/etc/rauc/system.conf``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from wardsight.errors import WardSightError

BOOTNAMES = ("A", "B")
AUTOBOOT_PARTITION = 1  # the FAT that holds autoboot.txt: the firmware reads it from the first partition
BACKEND = "/usr/lib/wardsight/rauc-tryboot-backend"  # execs `python -m firmware.system.tryboot "$@"`
KEYRING = "/etc/rauc/keyring.pem"
DATA_DIRECTORY = "/var/lib/rauc"  # shared between the slots (slot-shared.d), so RAUC's slot status survives a switch
MOUNTPREFIX = "/run/rauc"  # the root is read-only: RAUC's default /mnt/rauc cannot be created
DISK_BY_LABEL = "/dev/disk/by-partlabel"
BOARDS = {"pi4": "wardsight-rpi4", "pi5": "wardsight-rpi5"}  # images/config/<board>.yaml -> RAUC compatible

_LABEL = re.compile(r"^[a-z][a-z0-9_]{0,35}$")  # a GPT name as image-rota writes them
_COMPATIBLE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,63}$")


class PartitionTableError(WardSightError):
    """The partition table does not hold the A/B layout RAUC and the firmware need."""


@dataclass(frozen=True)
class Partition:
    number: int  # 1-based, as autoboot.txt's boot_partition and /dev/mmcblk0pN count
    label: str  # GPT PARTLABEL


IMAGE_ROTA: tuple[Partition, ...] = (
    Partition(1, "bootconfig"),
    Partition(2, "boot_a"),
    Partition(3, "boot_b"),
    Partition(4, "system_a"),
    Partition(5, "system_b"),
    Partition(6, "persistent"),
)


@dataclass(frozen=True)
class SlotPair:
    bootname: str  # RAUC's bootname: "A" or "B"
    index: int  # RAUC's slot index: rootfs.<index>, boot.<index>
    boot: Partition  # the FAT the firmware boots (autoboot.txt names its number)
    system: Partition  # the root filesystem


@dataclass(frozen=True)
class SlotTable:
    pairs: tuple[SlotPair, ...]

    def bootnames(self) -> tuple[str, ...]:
        return tuple(p.bootname for p in self.pairs)

    def boot_partitions(self) -> tuple[int, ...]:
        return tuple(p.boot.number for p in self.pairs)

    def by_bootname(self, bootname: str) -> SlotPair | None:
        return next((p for p in self.pairs if p.bootname == bootname), None)

    def by_boot_partition(self, number: int) -> SlotPair | None:
        return next((p for p in self.pairs if p.boot.number == number), None)


def slot_table(partitions: Sequence[Partition]) -> SlotTable:
    """The A/B pairs of a partition table: ``boot_a``+``system_a`` is A, ``boot_b``+``system_b`` is B.

    Refused (:class:`PartitionTableError`): numbers or labels that repeat, a label that is not a plain GPT name, a
    pair's half missing, or a boot partition at number 1 (where autoboot.txt lives: the firmware would read the
    slot's FAT as the selector)."""
    numbers = [p.number for p in partitions]
    labels = [p.label for p in partitions]
    if len(set(numbers)) != len(numbers) or any(n < 1 for n in numbers):
        raise PartitionTableError(f"partition numbers must be distinct and start at 1: {numbers}")
    if len(set(labels)) != len(labels):
        raise PartitionTableError(f"partition labels must be distinct: {labels}")
    bad = [label for label in labels if not _LABEL.match(label)]
    if bad:
        raise PartitionTableError(f"not a plain GPT partition label: {bad}")
    by_label = {p.label: p for p in partitions}
    pairs = []
    for index, bootname in enumerate(BOOTNAMES):
        suffix = bootname.lower()
        boot, system = by_label.get(f"boot_{suffix}"), by_label.get(f"system_{suffix}")
        if boot is None or system is None:
            raise PartitionTableError(f"slot {bootname} needs partitions labelled boot_{suffix} and system_{suffix}")
        if boot.number == AUTOBOOT_PARTITION:
            raise PartitionTableError(f"boot_{suffix} cannot be partition {AUTOBOOT_PARTITION}: autoboot.txt is there")
        pairs.append(SlotPair(bootname, index, boot, system))
    return SlotTable(tuple(pairs))


IMAGE_ROTA_SLOTS = slot_table(IMAGE_ROTA)


def compatible_for(board: str) -> str:
    """RAUC's compatible string for an image config (``pi4``, ``pi5``): a bundle for one board never installs on
    the other."""
    try:
        return BOARDS[board]
    except KeyError:
        raise PartitionTableError(f"no RAUC compatible for board {board!r}; known: {sorted(BOARDS)}") from None


@dataclass(frozen=True)
class RaucSettings:
    compatible: str
    keyring: str = KEYRING
    backend: str = BACKEND
    data_directory: str = DATA_DIRECTORY
    mountprefix: str = MOUNTPREFIX
    disk_by_label: str = DISK_BY_LABEL


def _check(settings: RaucSettings) -> None:
    if not _COMPATIBLE.match(settings.compatible):
        raise PartitionTableError(f"not a RAUC compatible string: {settings.compatible!r}")
    paths = (settings.keyring, settings.backend, settings.data_directory, settings.mountprefix, settings.disk_by_label)
    for path in paths:
        if not path.startswith("/") or any(c in path for c in "\n\r\t =;#[]"):
            raise PartitionTableError(f"not an absolute path RAUC can read from its system.conf: {path!r}")


def _slot_sections(pair: SlotPair, disk: str) -> list[str]:
    return [
        f"[slot.rootfs.{pair.index}]",
        f"device={disk}/{pair.system.label}",
        "type=raw",  # the erofs image is written as it is (a bundle names it *.img)
        f"bootname={pair.bootname}",
        "",
        f"[slot.boot.{pair.index}]",
        f"device={disk}/{pair.boot.label}",
        "type=vfat",  # a *.vfat image, written as it is
        f"parent=rootfs.{pair.index}",
        "",
    ]


def render_system_conf(partitions: Sequence[Partition], settings: RaucSettings) -> str:
    """``/etc/rauc/system.conf`` for the image whose partition table is ``partitions``."""
    _check(settings)
    table = slot_table(partitions)
    layout = ", ".join(f"{p.number} {p.label}" for p in sorted(partitions, key=lambda p: p.number))
    lines = [
        f"# RAUC system configuration for {settings.compatible}, rendered by firmware/system/raucconf.py",
        f"# from the image's partition table ({layout}).",
        f"# Slots A and B are the pairs boot_x+system_x; the firmware's autoboot.txt (partition {AUTOBOOT_PARTITION})",
        "# names the pair's boot partition, and the custom backend switches it with the Pi's one-shot tryboot.",
        "[system]",
        f"compatible={settings.compatible}",
        "bootloader=custom",
        "bundle-formats=-plain",  # verity (or crypt) bundles only: every block read during install is checked
        f"mountprefix={settings.mountprefix}",
        f"data-directory={settings.data_directory}",
        "",
        "[keyring]",
        f"path={settings.keyring}",
        "",
        "[handlers]",
        f"bootloader-custom-backend={settings.backend}",
        "",
    ]
    for pair in table.pairs:
        lines += _slot_sections(pair, settings.disk_by_label)
    return "\n".join(lines).rstrip("\n") + "\n"
