"""The Raspberry Pi firmware's ``autoboot.txt``: the A/B state it holds, and writing it safely on its FAT.

The firmware reads ``autoboot.txt`` from the first partition (at most 512 bytes; filters ``[all]``, ``[none]``,
``[tryboot]``). This backend reads and writes exactly one form of it, image-rota's:

    [all]
    tryboot_a_b=1          the [tryboot] switch is by partition: each slot keeps its own config.txt
    boot_partition=2       the committed slot: every normal boot
    [tryboot]
    boot_partition=3       the slot a ``reboot "0 tryboot"`` starts, once

Anything else (another section or setting, a section twice, a partition that is no slot's boot partition) is an
:class:`AutobootError`, never rewritten on a guess. :func:`parse_autoboot` and :func:`render_autoboot` are pure;
:func:`write_autoboot` replaces the file so that a power cut leaves, as far as FAT allows, the old or the new one
(FAT is not journalled: a rename over a file is not atomic on disk; see the function).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from firmware.system.raucconf import SlotTable
from wardsight.errors import WardSightError
from wardsight.paths import fsync_dir

AUTOBOOT = "autoboot.txt"
MAX_AUTOBOOT_BYTES = 512  # the firmware's limit


class AutobootError(WardSightError):
    """``autoboot.txt`` is missing, unreadable, or not in the form this backend reads and writes."""


@dataclass(frozen=True)
class Autoboot:
    committed: int  # [all] boot_partition: every normal boot
    trial: int  # [tryboot] boot_partition: a tryboot; the committed partition again when the other slot is bad


def _boot_partition(value: str | None, section: str, slots: SlotTable) -> int:
    if value is None:
        raise AutobootError(f"autoboot.txt: [{section}] has no boot_partition")
    if not value.isdecimal() or int(value) not in slots.boot_partitions():
        known = ", ".join(f"{p.bootname}={p.boot.number}" for p in slots.pairs)
        raise AutobootError(f"autoboot.txt: [{section}] boot_partition={value} is no slot's boot partition ({known})")
    return int(value)


def _sections(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        where = f"autoboot.txt line {number}"
        if line.startswith("["):
            name = line[1:-1].lower() if line.endswith("]") else ""
            if name not in ("all", "tryboot") or name in sections:
                raise AutobootError(f"{where}: {line!r} is not a first [all] or [tryboot] section")
            current = sections[name] = {}
            continue
        key, sep, value = line.partition("=")
        if current is None or not sep or key not in ("tryboot_a_b", "boot_partition") or key in current:
            raise AutobootError(f"{where}: {line!r} is not a boot_partition or tryboot_a_b setting of a section")
        current[key] = value
    return sections


def parse_autoboot(text: str, slots: SlotTable) -> Autoboot:
    """The state in ``autoboot.txt``: ``[all]`` with ``tryboot_a_b=1`` and a slot's ``boot_partition``, and
    ``[tryboot]`` with one; anything else (other sections or settings, a section twice) is refused, so a file this
    backend did not write in this form is never rewritten on a guess."""
    if len(text.encode()) > MAX_AUTOBOOT_BYTES:
        raise AutobootError(f"autoboot.txt is over the firmware's {MAX_AUTOBOOT_BYTES} bytes")
    sections = _sections(text)
    if "all" not in sections or "tryboot" not in sections:
        raise AutobootError("autoboot.txt needs an [all] and a [tryboot] section")
    if sections["all"].get("tryboot_a_b") != "1" or "tryboot_a_b" in sections["tryboot"]:
        raise AutobootError("autoboot.txt needs tryboot_a_b=1 in [all] (and only there): A/B by partition")
    committed = _boot_partition(sections["all"].get("boot_partition"), "all", slots)
    return Autoboot(committed, _boot_partition(sections["tryboot"].get("boot_partition"), "tryboot", slots))


def render_autoboot(state: Autoboot) -> str:
    return f"[all]\ntryboot_a_b=1\nboot_partition={state.committed}\n[tryboot]\nboot_partition={state.trial}\n"


def read_autoboot(bootfs: Path) -> str:
    path = bootfs / AUTOBOOT
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AutobootError(f"{path} is missing: the firmware has no A/B configuration to switch") from None
    if len(data) > MAX_AUTOBOOT_BYTES:
        raise AutobootError(f"{path} is over the firmware's {MAX_AUTOBOOT_BYTES} bytes")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise AutobootError(f"{path} is not plain ASCII text") from None


def _stale_temporaries(bootfs: Path) -> Iterator[Path]:
    return bootfs.glob(f".{AUTOBOOT}.*.tmp")


def write_autoboot(
    bootfs: Path, text: str, slots: SlotTable, *, rename: Callable[[str, Path], None] = os.replace
) -> None:
    """Replace ``autoboot.txt`` so that a power cut leaves the old file or the new one as far as FAT allows (it has no
    journal: the rename is best effort, the bench check in images/README.md cuts power during it): the text is
    checked (parsed back) first, written to ``.autoboot.txt.*.tmp`` and synced, renamed over the file, then the
    directory and the file are synced (the directory first: on FAT a cut between the two then tends to leave lost
    clusters rather than two names on one cluster chain) and the file is read back. A temporary file an earlier cut left
    behind is removed only if it differs from the current file (the same bytes could share its clusters)."""
    parse_autoboot(text, slots)
    path = bootfs / AUTOBOOT
    current = read_autoboot(bootfs).encode()
    for stale in _stale_temporaries(bootfs):
        with contextlib.suppress(OSError):
            if stale.read_bytes() != current:
                stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f".{AUTOBOOT}.", suffix=".tmp", dir=bootfs)
    with os.fdopen(fd, "wb") as out:
        out.write(text.encode("ascii"))
        out.flush()
        os.fsync(out.fileno())
    rename(tmp, path)
    fsync_dir(bootfs)
    with path.open("rb") as f:
        os.fsync(f.fileno())
        if f.read() != text.encode("ascii"):
            raise AutobootError(f"{path} does not read back as written")
