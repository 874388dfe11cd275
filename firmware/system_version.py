"""The system image a device runs, for its heartbeat: the slot it booted and the image's release file.

- ``/etc/wardsight/system-release`` is written into the image when it is built (on the read-only root, so it
  changes only with the slot): ``KEY=VALUE`` lines in the manner of os-release, ``VERSION=`` the image's version
  (the ``[update] version`` of the RAUC bundle that carries it) and ``SBOM_SHA256=`` the sha256 of the image's SBOM
  (``/usr/share/wardsight/sbom.cdx.json``). Blank lines and ``#`` comments are skipped, a value may be quoted,
  other keys are ignored.
- The slot is read from the kernel command line as RAUC reads it to tell which slot booted (each slot's boot
  partition carries its own ``cmdline.txt``): ``rauc.slot=<bootname>`` (the first one, as in RAUC), else the root
  RAUC would match to a slot's device, ``root=PARTLABEL=system_<x>``: image-rota's label of slot ``<X>``'s root
  (``firmware.system.raucconf``: bootnames ``A``/``B``, roots ``system_a``/``system_b``). ``rauc.external`` (booted
  from outside every slot) gives no slot; neither form (image-rota's own ``root=/dev/disk/by-slot/active/system``,
  the same ``cmdline.txt`` in both slots): the boot partition the Raspberry Pi firmware booted (its device-tree node,
  as the tryboot backend reads it) names the slot; off a Pi (the twin's ``root=/dev/vda``) there is no slot.

- The board: ``[system] compatible`` of RAUC's ``/etc/rauc/system.conf`` (``wardsight-rpi4``, ``wardsight-rpi5``), so
  the server offers a system bundle only to the devices it fits.

:func:`system_version` is pure (texts in, a :class:`wardsight.wire.SystemVersion` or None out);
:func:`read_system_version` reads the two files. No release file, or no valid ``VERSION``: None (the heartbeat omits
the field); a malformed ``SBOM_SHA256`` alone leaves out only the digest. Nothing here raises.
"""

from __future__ import annotations

import configparser
import contextlib
import functools
import logging
import re
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from firmware.system.raucconf import IMAGE_ROTA_SLOTS, SlotTable
from firmware.system.tryboot import DEFAULT_DT, TrybootError, read_bootloader
from wardsight import wire

log = logging.getLogger("wardsight.device.system_version")

RELEASE_FILE = Path("/etc/wardsight/system-release")
RAUC_CONF = Path("/etc/rauc/system.conf")  # its [system] compatible names the board (which bundles fit)
CMDLINE_FILE = Path("/proc/cmdline")
MAX_RELEASE_BYTES = 4096  # a few lines; a larger file is not ours
_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SLOT_ROOT = re.compile(r"^root=PARTLABEL=system_([a-z])$")  # image-rota's slot roots: system_a, system_b


def parse_release(text: str) -> dict[str, str]:
    """The ``KEY=VALUE`` pairs of a release file (os-release style: comments, blank lines, quotes); later keys win."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not _KEY.match(key.strip()):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def booted_slot(cmdline: str) -> str | None:
    """The bootname of the slot the kernel command line booted: its first ``rauc.slot=``, else its image-rota root
    (``root=PARTLABEL=system_b``: ``B``); None for neither, ``rauc.external`` or a name that is no identifier."""
    words = cmdline.split()
    if "rauc.external" in words:
        return None
    slot = next((w.removeprefix("rauc.slot=") for w in words if w.startswith("rauc.slot=")), None)
    if slot is None:
        root = next((m for m in map(_SLOT_ROOT.match, words) if m), None)
        slot = root.group(1).upper() if root else None
    return slot if slot and wire.is_identifier(slot) else None


def firmware_slot(dt_dir: Path = DEFAULT_DT, slots: SlotTable = IMAGE_ROTA_SLOTS) -> str | None:
    """The bootname of the slot whose boot partition the Raspberry Pi firmware booted (its device-tree node, as the
    tryboot backend's ``get-current`` reads it): image-rota's command line names no slot (``root=`` is the
    ``by-slot/active`` link and both slots' boot files are the same). None off a Pi or for another partition."""
    try:
        pair = slots.by_boot_partition(read_bootloader(dt_dir).partition)
    except (TrybootError, OSError):
        return None
    return pair.bootname if pair is not None else None


def rauc_compatible(system_conf: str | None) -> str | None:
    """``[system] compatible`` of RAUC's ``system.conf`` text; None when absent or unreadable."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(system_conf or "")
    except configparser.Error:
        return None
    value = parser.get("system", "compatible", fallback=None)
    return value.strip() if value and re.fullmatch(wire.SYSTEM_COMPATIBLE_PATTERN, value.strip()) else None


def system_version(
    release: str | None,
    cmdline: str | None,
    firmware: Callable[[], str | None] = lambda: None,
    system_conf: str | None = None,
) -> wire.SystemVersion | None:
    """What the heartbeat says of the system, from the release file's text and the kernel command line (either None:
    not readable), else the slot the firmware says it booted (``firmware``)."""
    if release is None:
        return None
    fields = parse_release(release)
    sbom = fields.get("SBOM_SHA256", "").lower() or None
    if sbom is not None and not _SHA256.match(sbom):
        log.warning("the system release file's SBOM_SHA256 is not a sha256; left out of the heartbeat")
        sbom = None
    slot = (booted_slot(cmdline) if cmdline is not None else None) or firmware()
    try:
        return wire.SystemVersion(
            slot=slot, version=fields.get("VERSION", ""), sbom_sha256=sbom, compatible=rauc_compatible(system_conf)
        )
    except ValidationError:
        log.warning("the system release file has no valid VERSION; the heartbeat leaves the system out")
        return None


def _read(path: Path) -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        with path.open("rb") as f:
            data = f.read(MAX_RELEASE_BYTES + 1)
        return data.decode() if len(data) <= MAX_RELEASE_BYTES else None
    return None


@functools.lru_cache(maxsize=8)
def read_system_version(
    release: Path = RELEASE_FILE, cmdline: Path = CMDLINE_FILE, dt_dir: Path = DEFAULT_DT, rauc_conf: Path = RAUC_CONF
) -> wire.SystemVersion | None:
    """:func:`system_version` of the files at ``release`` and ``cmdline`` (unreadable: as if absent), read once per
    process and paths: both are fixed for a boot (the release file on the slot's read-only root, the kernel's command
    line), so a heartbeat costs no read and a malformed file is logged once."""
    return system_version(_read(release), _read(cmdline), lambda: firmware_slot(dt_dir), _read(rauc_conf))
