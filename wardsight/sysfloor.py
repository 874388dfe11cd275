"""The signed system floor: per RAUC compatible, the lowest system version a device may install, set by the hospital.

It is part of the fleet's TUF targets metadata, signed by the offline targets key with everything else that role
signs: the top-level ``custom`` object of the targets role (an unrecognized field to TUF, which keeps it in the signed
bytes, so it verifies with the targets signature and no one without that key can change or drop it)::

    "signed": {"_type": "targets", "version": 12, ..., "targets": {...},
               "custom": {"system_floors": {"wardsight-rpi5": "2026.12.1"}}}

A device reads it only from the targets metadata its TUF client verified (never from the server's offer) and refuses
any system update below its board's floor, an operator's rollback included. No entry for a compatible: no floor.

Why here and not a target of its own: a TUF target is a file to download, and the fleet server accepts only targets it
holds byte for byte (a model package or a bundle); the floor is one signed value, in the same metadata version as the
bundles it judges (they change together, atomically), and TUF's version checks (a device never goes back to older
targets metadata) keep a server from serving a version without it to a device that has seen it. A device that has
not (enrolled, reset or offline since the floor was set) can be served the hospital's older, floor-less targets by a
server holding the online keys until those expire: keep ``--targets-days`` short where the floor matters.
Re-signing targets (``signing.metadata.resign_targets``: publish, withdraw) edits the served metadata in place, so an
existing floor is kept.
"""

from __future__ import annotations

from typing import Any

from wardsight.sysversion import refuse_ambiguous, version_key

CUSTOM = "custom"  # the targets role's unrecognized field that holds it
FLOORS = "system_floors"  # {compatible: version} inside it


def _floors(custom: object) -> dict[str, object]:
    if custom is None:
        return {}
    if not isinstance(custom, dict):
        raise ValueError("the targets metadata's custom is not an object")
    found = custom.get(FLOORS)
    if found is None:
        return {}
    if not isinstance(found, dict):
        raise ValueError(f"the targets metadata's {FLOORS} is not an object")
    return found


def floor_for(custom: object, compatible: str) -> str | None:
    """The floor ``custom`` (the targets role's ``custom`` field, None when absent) sets for ``compatible``, None for
    none; ValueError when it is malformed (a device then refuses every system update: it cannot tell the floor)."""
    floor = _floors(custom).get(compatible)
    if floor is None:
        return None
    if not isinstance(floor, str):
        raise ValueError(f"the floor for {compatible} is not a version string")
    version_key(floor)  # ValueError: not a system version
    return floor


def below(version: str, floor: str) -> bool:
    """Whether system ``version`` is below ``floor`` (in :func:`wardsight.sysversion.version_key` order)."""
    return version_key(version) < version_key(floor)


def with_floor(custom: object, compatible: str, version: str | None) -> dict[str, Any]:
    """A copy of ``custom`` with ``compatible``'s floor set to ``version`` (None: removed); its other keys and the
    other compatibles' floors are kept as they are (a malformed ``custom`` or floors object is replaced: that repairs
    it). ValueError for a version that is none or carries ``+build``."""
    if version is not None:
        refuse_ambiguous(version)
        version_key(version)
    kept = dict(custom) if isinstance(custom, dict) else {}
    found = kept.get(FLOORS)
    floors = dict(found) if isinstance(found, dict) else {}
    if version is None:
        floors.pop(compatible, None)
    else:
        floors[compatible] = version
    if floors:
        kept[FLOORS] = floors
    else:
        kept.pop(FLOORS, None)
    return kept
