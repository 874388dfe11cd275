"""``wardsight provision image``: a copy of a device image with the enrollment bundle on its first FAT partition,
as ``wardsight/enrollment.json`` (where ``wardsight device firstboot`` looks for it).

No root and no mount: the copy is made sparse (``cp --sparse=always``) and mode 0600 (it holds a token), the
partition is found by :mod:`provisioning.partitions`, and mtools writes into it at its byte offset
(``mcopy -i IMAGE@@OFFSET``). The file is read back with ``mtype`` and compared before the copy is kept.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from provisioning.errors import ProvisionError
from provisioning.partitions import Partition, first_fat_partition
from wardsight.bundle import MAX_SSH_KEYS, Bundle, check_ssh_key
from wardsight.errors import WardSightError

BUNDLE_DIR = "wardsight"
BUNDLE_NAME = "enrollment.json"
COMPRESSED = {
    b"\xfd7zXZ\x00": "xz (unxz -k)",
    b"\x1f\x8b": "gzip (gunzip -k)",
    b"\x28\xb5\x2f\xfd": "zstd (unzstd)",
    b"PK\x03\x04": "zip (unzip)",
    b"BZh": "bzip2 (bunzip2 -k)",
}


def require_tool(command: str, package: str) -> str:
    found = shutil.which(command)
    if found is None:
        raise ProvisionError(f"'{command}' is not installed: apt-get install {package}")
    return found


def check_image(image: Path) -> None:
    """A raw disk image file: exists, regular, not compressed, a name mtools can take."""
    if not image.is_file():
        raise ProvisionError(f"{image}: no such image file")
    if "@@" in str(image):
        raise ProvisionError(f"{image}: a path with '@@' confuses mtools; rename the file")
    with open(image, "rb") as fh:
        head = fh.read(8)
    for magic, how in COMPRESSED.items():
        if head.startswith(magic):
            raise ProvisionError(f"{image} is compressed with {how.split(' ')[0]}; decompress it first: {how}")


def read_ssh_keys(path: Path) -> tuple[str, ...]:
    """Public keys, one a line (an ``authorized_keys`` or ``.pub`` file); comments and blank lines skipped."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProvisionError(f"cannot read ssh keys from {path}: {exc}") from None
    if "PRIVATE KEY" in text:
        raise ProvisionError(f"{path} is a private key; give the public one (.pub)")
    keys = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    if not keys or len(keys) > MAX_SSH_KEYS:
        raise ProvisionError(f"{path}: give 1 to {MAX_SSH_KEYS} public keys")
    for number, key in enumerate(keys, 1):
        try:
            check_ssh_key(key)
        except WardSightError as exc:
            raise ProvisionError(f"{path}, key {number}: {exc}") from None
    return keys


def with_ssh_keys(bundle: Bundle, keys: tuple[str, ...]) -> Bundle:
    """``bundle`` carrying ``keys`` (replacing any it had) for the image's key-only SSH."""
    return dataclasses.replace(bundle, ssh_authorized_keys=keys).check()


def sparse_copy(source: Path, target: Path) -> None:
    """Copy ``source`` over ``target`` (made beforehand, mode 0600, which cp keeps), keeping holes."""
    result = subprocess.run(
        ["cp", "--sparse=always", "--", str(source), str(target)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ProvisionError(f"cannot copy {source} to {target}: {result.stderr.strip()}")


def _mtools(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    return subprocess.run(args, capture_output=True, env=env, check=False)


def put_bundle(image: Path, part: Partition, bundle: Bundle) -> None:
    """Write ``bundle`` as ``wardsight/enrollment.json`` into the FAT partition ``part`` of ``image`` and verify it."""
    require_tool("mcopy", "mtools")
    drive = f"{image}@@{part.start}"
    with tempfile.TemporaryDirectory(prefix="wardsight-bundle-") as tmp:
        local = Path(tmp) / BUNDLE_NAME
        bundle.write(local)
        wanted = local.read_bytes()
        made = _mtools(["mmd", "-i", drive, f"::/{BUNDLE_DIR}"])
        if made.returncode != 0 and _mtools(["mdir", "-b", "-i", drive, f"::/{BUNDLE_DIR}"]).returncode != 0:
            raise ProvisionError(f"mmd in partition {part.number}: {made.stderr.decode(errors='replace').strip()}")
        target = f"::/{BUNDLE_DIR}/{BUNDLE_NAME}"
        copied = _mtools(["mcopy", "-o", "-i", drive, str(local), target])
        if copied.returncode != 0:
            raise ProvisionError(f"mcopy to partition {part.number}: {copied.stderr.decode(errors='replace').strip()}")
    back = _mtools(["mtype", "-i", drive, target])
    if back.returncode != 0 or back.stdout != wanted:
        raise ProvisionError(f"the bundle read back from partition {part.number} differs from what was written")


def image_with_bundle(image: Path, bundle: Bundle, out: Path) -> Partition:
    """A new file ``out``: ``image`` with ``bundle`` on its first FAT partition. Nothing is left on failure."""
    check_image(image)
    part = first_fat_partition(image)
    require_tool("mcopy", "mtools")
    try:
        os.close(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # private before it holds a token
    except FileExistsError:
        raise ProvisionError(f"{out} exists; remove it or give another --out") from None
    try:
        sparse_copy(image, out)
        put_bundle(out, part, bundle)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return part


def default_out(image: Path, bundle_path: Path) -> Path:
    """``<image stem>-<bundle stem><image suffix>`` next to the image, e.g. ``wardsight-3B-12.img``."""
    return image.with_name(f"{image.stem}-{bundle_path.stem}{image.suffix or '.img'}")
