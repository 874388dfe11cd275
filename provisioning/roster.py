"""A ward's device list (CSV) for ``wardsight provision bundles``: read and check every row before anything is made.

Columns (a header row, any order, case-insensitive): ``site``, ``ward``, ``room`` (required), ``name`` and
``tags`` (optional; tags separated by spaces or semicolons). Values are identifiers (1-64 letters, digits or
``_ . : -``). Each device is known by its label, its name or else its room; labels must differ (ignoring case,
as on a FAT card or a Windows laptop), and a room may appear on several rows only when each of them has a name.
Any problem is reported with its line and column, and nothing is made.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from provisioning.errors import ProvisionError
from wardsight import wire

REQUIRED = ("site", "ward", "room")
OPTIONAL = ("name", "tags")
MAX_ROWS = 1000
MAX_TAGS = 16
MAX_BYTES = 1_000_000
SHOWN_ERRORS = 5


@dataclass(frozen=True)
class Device:
    line: int
    site: str
    ward: str
    room: str
    name: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """What the device is called on its label and in its bundle's file name."""
        return self.name or self.room

    @property
    def file_stem(self) -> str:
        """The label, safe as a file name on FAT and Windows (``:`` is not)."""
        return self.label.replace(":", "_")


class RosterError(ProvisionError):
    """The CSV is not a usable device list; the message names the line and column."""


def read_roster(path: Path) -> list[Device]:
    """Every device of the CSV file, or a :class:`RosterError` listing the first problems."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RosterError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise RosterError(f"{path}: over {MAX_BYTES} bytes; one ward at a time")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RosterError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_roster(text, str(path))


def parse_roster(text: str, source: str = "CSV") -> list[Device]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        raise RosterError(f"{source}: line {reader.line_num}: {exc}") from None
    rows = [(n, row) for n, row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise RosterError(f"{source}: empty; the first line names the columns: site,ward,room,name,tags")
    header_line, header = rows[0]
    columns = _columns(header, header_line, source)
    if len(rows) == 1:
        raise RosterError(f"{source}: no devices after the header line")
    if len(rows) - 1 > MAX_ROWS:
        raise RosterError(f"{source}: {len(rows) - 1} devices; at most {MAX_ROWS} at a time")
    devices: list[Device] = []
    errors: list[str] = []
    for line, row in rows[1:]:
        device = _device(line, row, columns, errors)
        if device is not None:
            devices.append(device)
    errors.extend(duplicates(devices))
    if errors:
        more = f"; and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
        raise RosterError(f"{source}: " + "; ".join(errors[:SHOWN_ERRORS]) + more + " (nothing was created)")
    return devices


def _columns(header: list[str], line: int, source: str) -> dict[str, int]:
    names = [cell.strip().lower() for cell in header]
    columns: dict[str, int] = {}
    for index, name in enumerate(names):
        if name not in REQUIRED + OPTIONAL:
            expected = ", ".join(REQUIRED + OPTIONAL)
            raise RosterError(f"{source}: line {line}, column {index + 1}: unknown column '{name}' (use {expected})")
        if name in columns:
            raise RosterError(f"{source}: line {line}, column {index + 1}: column '{name}' given twice")
        columns[name] = index
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        raise RosterError(f"{source}: line {line}: the header lacks column(s) {', '.join(missing)}")
    return columns


def _device(line: int, row: list[str], columns: dict[str, int], errors: list[str]) -> Device | None:
    if len(row) > len(columns):
        errors.append(f"line {line}: {len(row)} cells but {len(columns)} columns")
        return None
    values: dict[str, str] = {}
    bad = False
    for name, index in columns.items():
        value = row[index].strip() if index < len(row) else ""
        values[name] = value
        if name == "tags" or (not value and name in OPTIONAL):
            continue
        if not value:
            errors.append(f"line {line}, column {name}: empty ({name} is required)")
            bad = True
        elif not wire.is_identifier(value):
            errors.append(f"line {line}, column {name}: '{value}' must be 1-64 letters, digits or _.:- characters")
            bad = True
    tags = tuple(t for t in re.split(r"[\s;,]+", values.get("tags", "")) if t)
    for tag in tags:
        if not wire.is_identifier(tag):
            errors.append(f"line {line}, column tags: '{tag}' must be 1-64 letters, digits or _.:- characters")
            bad = True
    if len(tags) > MAX_TAGS or len(set(tags)) != len(tags):
        errors.append(f"line {line}, column tags: at most {MAX_TAGS} tags, each once")
        bad = True
    if bad:
        return None
    return Device(line, values["site"], values["ward"], values["room"], values.get("name") or None, tags)


def duplicates(devices: list[Device]) -> list[str]:
    """Problems with labels given twice and rooms given twice without names."""
    errors: list[str] = []
    by_label: dict[str, Device] = {}
    by_room: dict[tuple[str, str, str], Device] = {}
    for device in devices:
        column = "name" if device.name else "room"
        first = by_label.setdefault(device.file_stem.casefold(), device)
        if first is not device:
            errors.append(f"line {device.line}, column {column}: '{device.label}' is already on line {first.line}")
            continue
        room = (device.site.casefold(), device.ward.casefold(), device.room.casefold())
        earlier = by_room.setdefault(room, device)
        if earlier is not device and not (earlier.name and device.name):
            errors.append(
                f"line {device.line}, column room: room '{device.room}' is already on line {earlier.line}"
                " (give each device in a shared room its own name)"
            )
    return errors
