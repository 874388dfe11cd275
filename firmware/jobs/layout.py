"""The zone editor's edit applied to the device's own ``device.toml``: its zones and privacy regions change, nothing
else does (a ``push_config`` job with params ``merge = "zones"``; see :class:`wardsight.device_config.LayoutEdit`).

:func:`merge_layout` works on the file's text, not on a re-serialised copy: every line outside the ``[[zones]]``
and ``[[privacy_regions]]`` tables it changes stays byte for byte, comments included, and so does every such table
it does not touch (a removed or changed table loses its own lines, comments inside them too; blank and comment lines
at its end, which usually introduce what follows, stay). Added tables go after the last table of their kind, or at
the end of the file. The result is then checked by parsing both texts: every setting but ``zones`` and
``privacy_regions`` must be equal, and those two must be exactly the intended lists; anything else (say zones
written as an inline array, which this text surgery does not handle) refuses the edit and changes nothing.

A changed zone keeps its other settings (``keypoints``, ``min_keypoints``, ``min_score``) and its place in the list;
a polygon equal, within the precision the device reports (:data:`~wardsight.device_config.REPORTED_DIGITS`), to the
one the device has keeps the device's exact coordinates.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wardsight.device_config import REPORTED_DIGITS, LayoutEdit
from wardsight.errors import WardSightError

SHAPE_KEYS = ("zones", "privacy_regions")
TOLERANCE = 10.0**-REPORTED_DIGITS + 1e-9
_SHAPES = re.compile(r"^\s*\[\[\s*(zones|privacy_regions)\s*\]\]\s*(#.*)?$")
_HEADER = re.compile(r"^\s*\[\[?[^\[\]=]+\]\]?\s*(#.*)?$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class LayoutEditError(WardSightError):
    """The edit cannot be applied (``reason``: ``layout_changed`` or ``layout_not_editable``); nothing changed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass
class _Block:
    kind: str  # "zones" or "privacy_regions"
    lines: list[str]  # the header and the table's own lines
    tail: list[str]  # blank and comment lines after them, up to the next header
    table: dict[str, Any] = field(default_factory=dict)
    action: str = "keep"  # keep, drop or replace
    new: dict[str, Any] | None = None

    @property
    def result(self) -> dict[str, Any]:
        """The table as it will be (a dropped one: as it was)."""
        return self.new if self.new is not None else self.table


# ---- reading the text -------------------------------------------------------------------------------------


def _scan(line: str, state: list[Any]) -> None:
    """Advance ``state`` = [open multi-line string delimiter or None, bracket depth] over one line."""
    i, n = 0, len(line)
    while i < n:
        quote = state[0]
        if quote is not None:
            end = line.find(quote, i)
            if end < 0:
                return
            state[0], i = None, end + 3
            continue
        c = line[i]
        if c == "#":
            return
        if line.startswith(('"""', "'''"), i):
            state[0], i = line[i : i + 3], i + 3
            continue
        if c in "\"'":
            i += 1
            while i < n and line[i] != c:
                i += 2 if c == '"' and line[i] == "\\" else 1
        elif c in "[{":
            state[1] += 1
        elif c in "]}":
            state[1] -= 1
        i += 1


def _split(text: str) -> list[str | _Block]:
    """The text as plain lines and shape blocks, in order (joined back, they are the text)."""
    parts: list[str | _Block] = []
    block: _Block | None = None
    state: list[Any] = [None, 0]
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        is_header = state[0] is None and state[1] == 0 and _HEADER.match(bare) is not None
        if is_header:
            block = None
            shape = _SHAPES.match(bare)
            if shape:
                block = _Block(shape.group(1), [line], [])
                parts.append(block)
                continue
        else:
            _scan(line, state)
        if block is None:
            parts.append(line)
        elif bare.strip() == "" or bare.lstrip().startswith("#"):
            block.tail.append(line)
        else:
            block.lines += [*block.tail, line]
            block.tail = []
    return parts


def _blocks(parts: list[str | _Block], current: dict[str, Any]) -> dict[str, list[_Block]]:
    """The shape blocks by kind, each with its table; refused unless they are exactly the file's shapes."""
    found: dict[str, list[_Block]] = {kind: [] for kind in SHAPE_KEYS}
    for part in parts:
        if isinstance(part, _Block):
            found[part.kind].append(part)
    for kind, blocks in found.items():
        tables = current.get(kind, [])
        ok = isinstance(tables, list) and len(tables) == len(blocks)
        for block, table in zip(blocks, tables if ok else [], strict=False):
            try:
                block.table = tomllib.loads("".join(block.lines))[kind][0]
            except (tomllib.TOMLDecodeError, KeyError, IndexError):
                ok = False
            ok = ok and block.table == table
        if not ok:
            raise LayoutEditError(
                "layout_not_editable",
                f"device.toml does not write its {kind} as [[{kind}]] tables only; it was left as it is",
            )
    return found


# ---- applying the edit ------------------------------------------------------------------------------------


def _same(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> bool:
    return len(a) == len(b) and all(
        abs(p[0] - q[0]) <= TOLERANCE and abs(p[1] - q[1]) <= TOLERANCE for p, q in zip(a, b, strict=True)
    )


def _changed(detail: str) -> LayoutEditError:
    return LayoutEditError("layout_changed", f"{detail} (the device's zones changed since the editor loaded them)")


def _apply(edit: LayoutEdit, found: dict[str, list[_Block]]) -> dict[str, list[dict[str, Any]]]:
    """Mark the blocks to drop or replace; returns the new tables to add, by kind."""
    zones = {b.table.get("name"): b for b in found["zones"]}
    for name in edit.zones.remove:
        if name not in zones:
            raise _changed(f"zone '{name}' is not on this device")
        zones[name].action = "drop"
    for shape in edit.zones.change:
        block = zones.get(shape.name)
        if block is None:
            raise _changed(f"zone '{shape.name}' is not on this device")
        old = block.table
        polygon = old["polygon"] if _same(old["polygon"], shape.polygon) else [list(p) for p in shape.polygon]
        new = {**old, "kind": shape.kind, "polygon": polygon}
        if new != old:
            block.action, block.new = "replace", new
    for shape in edit.zones.add:
        if shape.name in zones:
            raise _changed(f"there is already a zone '{shape.name}' on this device")
    regions = found["privacy_regions"]
    for ref in edit.privacy_regions.remove:
        match = next(
            (b for b in regions if b.action == "keep" and _same(b.table.get("polygon", []), ref.polygon)), None
        )
        if match is None:
            raise _changed(f"a privacy region with {len(ref.polygon)} points at {ref.polygon[0]} is not on this device")
        match.action = "drop"
    return {
        "zones": [{"name": s.name, "kind": s.kind, "polygon": [list(p) for p in s.polygon]} for s in edit.zones.add],
        "privacy_regions": [
            {"name": s.name, "polygon": [list(p) for p in s.polygon]} for s in edit.privacy_regions.add
        ],
    }


# ---- writing the text -------------------------------------------------------------------------------------


def _string(text: str) -> str:
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".eEn") else text + ".0"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise LayoutEditError("layout_not_editable", f"cannot write a {type(value).__name__} into device.toml")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _table(kind: str, table: dict[str, Any]) -> list[str]:
    return [f"[[{kind}]]\n", *(f"{_key(k)} = {_value(v)}\n" for k, v in table.items())]


def _join(parts: list[str | _Block], added: dict[str, list[dict[str, Any]]]) -> str:
    last = {kind: max((i for i, p in enumerate(parts) if isinstance(p, _Block) and p.kind == kind), default=None)
            for kind in SHAPE_KEYS}  # fmt: skip
    out: list[str] = []
    for i, part in enumerate(parts):
        if isinstance(part, str):
            out.append(part)
            continue
        if part.action == "keep":
            out += part.lines
        elif part.action == "replace":
            out += _table(part.kind, part.result)
        if i == last[part.kind]:
            for n, table in enumerate(added[part.kind]):
                out += [*([] if n == 0 and part.action == "drop" else ["\n"]), *_table(part.kind, table)]
        out += part.tail
    text = "".join(out)
    for kind in SHAPE_KEYS:
        if last[kind] is None:
            for table in added[kind]:
                if text and not text.endswith("\n"):
                    text += "\n"
                text += ("\n" if text else "") + "".join(_table(kind, table))
    return text


def merge_layout(text: str, edit: LayoutEdit) -> str:
    """``text`` (the device's ``device.toml``, "" if it has none) with ``edit`` applied (see the module docstring).

    Raises :class:`LayoutEditError`: ``layout_changed`` when the edit does not fit the file's zones and privacy
    regions, ``layout_not_editable`` when the file cannot be changed this way without touching anything else.
    The result is not validated as a configuration here (:func:`firmware.jobs.config.push_config` does that).
    """
    try:
        current = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise LayoutEditError("layout_not_editable", f"device.toml is not valid TOML: {exc}") from None
    parts = _split(text)
    found = _blocks(parts, current)
    added = _apply(edit, found)
    merged_text = _join(parts, added)
    expected = {kind: [b.result for b in found[kind] if b.action != "drop"] + added[kind] for kind in SHAPE_KEYS}
    try:
        merged = tomllib.loads(merged_text)
    except tomllib.TOMLDecodeError as exc:
        raise LayoutEditError("layout_not_editable", f"the edited device.toml would not be valid TOML: {exc}") from None
    rest = {k: v for k, v in merged.items() if k not in SHAPE_KEYS}
    if rest != {k: v for k, v in current.items() if k not in SHAPE_KEYS} or any(
        merged.get(kind, []) != expected[kind] for kind in SHAPE_KEYS
    ):
        raise LayoutEditError("layout_not_editable", "the edit would change more than the zones and privacy regions")
    return merged_text
