"""The signed system floor (``wardsight ota system-floor``): per RAUC compatible, the lowest system version devices may
install, signed with the offline targets key in the targets metadata's ``custom`` (:mod:`wardsight.sysfloor` says
where and why there).

A rollout's ``rollback`` flag is the fleet server's word; the floor is the hospital's. Devices refuse any system
offer below their board's floor, an operator's rollback included, so a compromised server cannot take them back to
an older published system (one with a known CVE, say) once the hospital has set the floor above it and the device
has fetched that targets version (until then, a server with the online keys can replay the older targets until they
expire: ``--targets-days``). Without a floor an operator's rollback may go to any published older version.

Setting, moving or removing the floor re-signs the served targets metadata (:func:`signing.metadata.resign_targets`:
checked to be signed by these keys and not older than what they signed last, so a server cannot make the hospital sign
away a floor by serving older metadata); publishing and withdrawing bundles re-sign it the same way and keep it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Unpack

from tuf.api.metadata import Targets

from signing.client import Server
from signing.errors import OtaCliError
from signing.metadata import Signing, resign_targets
from wardsight import sysfloor, wire


def current_floor(targets: Targets, compatible: str) -> str | None:
    """The floor ``targets`` sets for ``compatible`` (None: none); an :class:`OtaCliError` when it is malformed."""
    try:
        return sysfloor.floor_for(targets.unrecognized_fields.get(sysfloor.CUSTOM), compatible)
    except ValueError as exc:
        raise OtaCliError(f"the targets metadata's system floors are unreadable: {exc}") from None


def published_versions(targets: Targets, compatible: str) -> list[str]:
    """The system versions ``targets`` publishes for ``compatible``."""
    matches = (wire.SYSTEM_TARGET_PATH.match(path) for path in targets.targets)
    return [m.group(2) for m in matches if m is not None and m.group(1) == compatible]


def below_floor_warning(targets: Targets, compatible: str, version: str) -> str | None:
    """Why publishing ``compatible`` ``version`` is of no use (devices refuse it: below the floor), or None."""
    try:
        floor = current_floor(targets, compatible)
    except OtaCliError as exc:
        return f"{exc}: devices refuse every system update until 'wardsight ota system-floor' signs a readable one"
    if floor is None or not sysfloor.below(version, floor):
        return None
    return (f"{compatible} {version} is below the signed floor {floor}: devices will refuse it (rollbacks too) "
            f"until the floor is lowered ('wardsight ota system-floor')")  # fmt: skip


def set_floor(
    compatible: str, version: str | None, keys: Path, server: Server, **signing: Unpack[Signing]
) -> dict[str, Any]:
    """Sign targets metadata whose floor for ``compatible`` is ``version`` (None: no floor); the other compatibles'
    floors, the targets and anything else the role signs are kept (a malformed floor is replaced). Refused when
    nothing would change."""
    try:
        if version is not None:
            sysfloor.with_floor(None, compatible, version)  # a system version, without '+build'
        wire.system_target_path(compatible, version or "0")  # a RAUC compatible, a version a bundle can carry
    except ValueError as exc:
        raise OtaCliError(str(exc)) from None
    found: dict[str, Any] = {}

    def change(targets: Targets) -> None:
        try:
            previous = current_floor(targets, compatible)
        except OtaCliError as exc:  # devices refuse every update while it is so: signing a readable one repairs it
            previous, found["repaired"] = None, str(exc)
        if previous == version and "repaired" not in found:
            raise OtaCliError(f"{compatible} has no floor" if version is None else
                              f"the floor of {compatible} is already {version}")  # fmt: skip
        custom = sysfloor.with_floor(targets.unrecognized_fields.get(sysfloor.CUSTOM), compatible, version)
        if custom:
            targets.unrecognized_fields[sysfloor.CUSTOM] = custom
        else:
            targets.unrecognized_fields.pop(sysfloor.CUSTOM, None)
        published = published_versions(targets, compatible)
        found["previous_floor"] = previous
        found["refused_from_now"] = sorted(v for v in published if version is not None and sysfloor.below(v, version))

    summary = resign_targets(keys, server, change, **signing)
    return {**summary, "compatible": compatible, "floor": version, **found}
