import struct

import pytest

from provisioning.errors import ProvisionError
from provisioning.partitions import first_fat_partition, looks_like_fat, partitions
from tests.provisioning.helpers import ESP, LINUX, MIB, make_image


@pytest.mark.parametrize("scheme", ["mbr", "gpt"])
@pytest.mark.parametrize("fat", ["mkfs", "mformat"])
def test_the_first_fat_partition_is_found_in_mbr_and_gpt_images(tmp_path, scheme, fat):
    image = tmp_path / "disk.img"
    offset = make_image(image, scheme, fat=fat)
    parts = partitions(image)
    assert [(p.number, p.start, p.size, p.scheme) for p in parts] == [
        (1, MIB, 32 * MIB, scheme),
        (2, 67584 * 512, 61440 * 512 if scheme == "mbr" else parts[1].size, scheme),
    ]
    assert parts[0].type == ("0x0c" if scheme == "mbr" else ESP) and parts[1].type in ("0x83", LINUX)
    assert first_fat_partition(image).start == offset == MIB


@pytest.mark.parametrize("scheme", ["mbr", "gpt"])
def test_a_fat_partition_after_a_linux_one_is_found_by_its_content(tmp_path, scheme):
    image = tmp_path / "disk.img"
    offset = make_image(image, scheme, fat_first=False)
    found = first_fat_partition(image)
    assert (found.number, found.start) == (2, offset) and offset > MIB


def test_an_image_without_a_fat_partition_is_refused(tmp_path):
    image = tmp_path / "disk.img"
    make_image(image, "gpt")
    with open(image, "r+b") as fh:  # wipe the FAT boot sector: a partition of unknown content
        fh.seek(MIB)
        fh.write(bytes(512))
    with pytest.raises(ProvisionError, match="has no FAT partition"):
        first_fat_partition(image)


def test_a_corrupt_gpt_is_refused(tmp_path):
    image = tmp_path / "disk.img"
    make_image(image, "gpt")
    with open(image, "r+b") as fh:
        fh.seek(1024 + 32)  # inside the first partition entry (LBA 2): its start
        fh.write(b"\x01")
    with pytest.raises(ProvisionError, match="GPT partition entries are corrupt"):
        partitions(image)
    with open(image, "r+b") as fh:
        fh.seek(512 + 40)  # inside the header: first usable LBA
        fh.write(b"\x07")
    with pytest.raises(ProvisionError, match="GPT header is corrupt"):
        partitions(image)


@pytest.mark.parametrize("scheme", ["mbr", "gpt"])
def test_a_truncated_image_is_refused(tmp_path, scheme):
    image = tmp_path / "disk.img"
    make_image(image, scheme)
    with open(image, "r+b") as fh:
        fh.truncate(20 * MIB)  # the FAT partition (1-33 MiB) no longer fits
    with pytest.raises(ProvisionError, match="past the image's end"):
        first_fat_partition(image)


def test_files_that_are_not_partitioned_images_are_refused(tmp_path):
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(4096))
    with pytest.raises(ProvisionError, match="no partition table"):
        partitions(blank)
    bare = tmp_path / "bare.img"
    image = tmp_path / "disk.img"
    make_image(image, "mbr")
    with open(image, "rb") as fh:
        fh.seek(MIB)
        bare.write_bytes(fh.read(MIB))
    with pytest.raises(ProvisionError, match="bare FAT file system"):
        partitions(bare)
    bad = bytearray(512)
    bad[446] = 0x42  # a status byte that is neither 0x00 nor 0x80
    bad[510:512] = b"\x55\xaa"
    (tmp_path / "bad.img").write_bytes(bytes(bad))
    with pytest.raises(ProvisionError, match="entry 1 is malformed"):
        partitions(tmp_path / "bad.img")


def test_fat_boot_sectors_are_told_from_other_file_systems():
    fat = bytearray(512)
    fat[0] = 0xEB
    struct.pack_into("<HBHB", fat, 11, 512, 4, 4, 2)
    fat[510:512] = b"\x55\xaa"
    assert looks_like_fat(bytes(fat))
    ntfs = bytearray(fat)
    ntfs[3:11] = b"NTFS    "
    struct.pack_into("<HBHB", ntfs, 11, 512, 8, 0, 0)  # NTFS: no reserved sectors, no FATs
    exfat = bytearray(fat)
    exfat[11:64] = bytes(53)  # exFAT zeroes the BIOS parameter block
    unsigned = bytearray(fat)
    unsigned[510] = 0
    assert not any(looks_like_fat(bytes(s)) for s in (ntfs, exfat, unsigned, bytes(512)))
