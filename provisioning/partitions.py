"""A disk image's partition table (MBR or GPT, read in Python) and its first FAT partition, the one the Pi
firmware and Raspberry Pi Imager use (``bootconfig`` in rpi-image-gen's ``image-rota`` layout).

MBR: the four primary entries (logical partitions inside an extended one are not searched; Pi images have
none). GPT (behind a protective MBR): the header and entry array are checked against their CRC32s, 512- and
4096-byte sectors. A partition counts as FAT when its first sector is a FAT boot sector, whatever its type says.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from provisioning.errors import ProvisionError

EXTENDED = {0x05, 0x0F, 0x85}
GPT_PROTECTIVE = 0xEE
MAX_GPT_ENTRIES = 1024


@dataclass(frozen=True)
class Partition:
    number: int  # 1-based, as the table numbers it
    start: int  # bytes from the start of the image
    size: int  # bytes
    type: str  # "0x0c" (MBR) or a GUID (GPT)
    scheme: str  # "mbr" or "gpt"


def _read(fh: BinaryIO, offset: int, length: int) -> bytes:
    fh.seek(offset)
    return fh.read(length)


def looks_like_fat(sector: bytes) -> bool:
    """A FAT12/16/32 boot sector: jump instruction, sane BIOS parameter block, 0x55AA."""
    if len(sector) < 512 or sector[510:512] != b"\x55\xaa" or sector[0] not in (0xEB, 0xE9):
        return False
    bytes_per_sector, per_cluster, reserved, fats = struct.unpack_from("<HBHB", sector, 11)
    return (
        bytes_per_sector in (512, 1024, 2048, 4096)
        and per_cluster in (1, 2, 4, 8, 16, 32, 64, 128)
        and reserved >= 1
        and fats in (1, 2)
    )


def _mbr(sector0: bytes) -> list[Partition]:
    parts = []
    for i in range(4):
        status, kind, start, count = struct.unpack_from("<B3xB3xII", sector0, 446 + 16 * i)
        if status not in (0x00, 0x80):
            raise ProvisionError(f"the MBR's entry {i + 1} is malformed (status byte {status:#04x})")
        if kind == 0 or kind in EXTENDED or count == 0 or start == 0:
            continue
        parts.append(Partition(i + 1, start * 512, count * 512, f"{kind:#04x}", "mbr"))
    return parts


def _within(parts: list[Partition], image_size: int) -> list[Partition]:
    for part in parts:
        if part.start + part.size > image_size:
            raise ProvisionError(
                f"partition {part.number} ends at byte {part.start + part.size}, past the image's end"
                f" ({image_size} bytes): is the image truncated or still compressed?"
            )
    return parts


def _gpt(fh: BinaryIO, image_size: int) -> list[Partition]:
    for sector in (512, 4096):
        header = _read(fh, sector, 92)
        if header[:8] == b"EFI PART":
            break
    else:
        raise ProvisionError("the MBR says GPT but there is no GPT header at LBA 1")
    (size,) = struct.unpack_from("<I", header, 12)
    full = _read(fh, sector, size) if 92 <= size <= sector else b""
    if not full or zlib.crc32(full[:16] + b"\0\0\0\0" + full[20:]) != struct.unpack_from("<I", full, 16)[0]:
        raise ProvisionError("the GPT header is corrupt (its CRC32 does not match)")
    entries_lba, count, entry_size, entries_crc = struct.unpack_from("<QIII", full, 72)
    if not 0 < count <= MAX_GPT_ENTRIES or not 128 <= entry_size <= 4096 or entry_size % 8:
        raise ProvisionError(f"the GPT header is malformed ({count} entries of {entry_size} bytes)")
    table = _read(fh, entries_lba * sector, count * entry_size)
    if len(table) != count * entry_size or zlib.crc32(table) != entries_crc:
        raise ProvisionError("the GPT partition entries are corrupt (their CRC32 does not match)")
    parts = []
    for i in range(count):
        entry = table[i * entry_size : (i + 1) * entry_size]
        if entry[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        if last < first:
            raise ProvisionError(f"GPT partition {i + 1} ends before it starts")
        kind = str(uuid.UUID(bytes_le=entry[:16])).upper()
        parts.append(Partition(i + 1, first * sector, (last - first + 1) * sector, kind, "gpt"))
    return _within(parts, image_size)


def partitions(image: Path) -> list[Partition]:
    """The image's partitions in table order; a :class:`ProvisionError` when it has no readable table."""
    with open(image, "rb") as fh:
        image_size = fh.seek(0, 2)
        sector0 = _read(fh, 0, 512)
        if len(sector0) < 512 or sector0[510:512] != b"\x55\xaa":
            raise ProvisionError(f"{image} has no partition table (no MBR signature): is it a disk image?")
        if looks_like_fat(sector0):
            raise ProvisionError(f"{image} is a bare FAT file system, not a disk image with a partition table")
        parts = _mbr(sector0)
        if any(p.type == f"{GPT_PROTECTIVE:#04x}" for p in parts):
            return _gpt(fh, image_size)
        return _within(parts, image_size)


def first_fat_partition(image: Path) -> Partition:
    """The first partition (in table order) holding a FAT file system, or a :class:`ProvisionError`."""
    with open(image, "rb") as fh:
        for part in partitions(image):
            if looks_like_fat(_read(fh, part.start, 512)):
                return part
    raise ProvisionError(f"{image} has no FAT partition to carry the enrollment bundle")
