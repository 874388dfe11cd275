"""Which devices a rollout takes and in which groups, fixed when it is created (pure)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from fleet.ota.rollouts.spec import RolloutError


@dataclass(frozen=True)
class DeviceInfo:
    id: str
    room: str
    site: str | None = None
    ward: str | None = None
    status: str = "active"
    tags: tuple[str, ...] = ()
    system_version: str | None = None  # the system image's version its latest heartbeat reports (None: not reported)
    system_compatible: str | None = None  # RAUC's compatible (its board) its latest heartbeat reports


@dataclass(frozen=True)
class Selector:
    """Devices that match every given field (all of ``tags``; ``system_version``: devices whose latest heartbeat
    reports exactly that system version), then a stable ``percent`` of those."""

    site: str | None = None
    ward: str | None = None
    room: str | None = None
    tags: tuple[str, ...] = ()
    percent: float | None = None
    system_version: str | None = None

    def matches(self, device: DeviceInfo) -> bool:
        wanted = (
            (self.site, device.site),
            (self.ward, device.ward),
            (self.room, device.room),
            (self.system_version, device.system_version),
        )
        return (
            device.status == "active"
            and all(want is None or have == want for want, have in wanted)
            and set(self.tags) <= set(device.tags)
        )


@dataclass(frozen=True)
class GroupSize:
    """A group of ``count`` devices, or of ``percent`` of the selected devices (rounded up)."""

    count: int | None = None
    percent: float | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.percent is None):
            raise RolloutError("a group has either a count or a percent")
        if self.count is not None and self.count < 1:
            raise RolloutError("a group count must be at least 1")
        if self.percent is not None and not 0 < self.percent <= 100:
            raise RolloutError("a group percent must be within (0, 100]")


def bucket(rollout_id: str, device_id: str) -> float:
    """A number in [0, 1) fixed by the rollout and the device: the same devices fall under a percentage
    every time, and a larger percentage picks a superset."""
    digest = hashlib.sha256(f"{rollout_id}\x00{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def select_devices(devices: Iterable[DeviceInfo], selector: Selector, rollout_id: str) -> list[str]:
    """The active devices the selector picks, in a stable order that mixes sites and rooms (by bucket)."""
    chosen = [d.id for d in devices if selector.matches(d)]
    keyed = sorted((bucket(rollout_id, d), d) for d in chosen)
    if selector.percent is not None:
        keyed = [(b, d) for b, d in keyed if b < selector.percent / 100]
    return [d for _, d in keyed]


def split_groups(selected: Sequence[str], sizes: Sequence[GroupSize]) -> tuple[tuple[str, ...], ...]:
    """Cut the selection into groups in order (empty groups are dropped); every device must be covered."""
    n, at = len(selected), 0
    groups: list[tuple[str, ...]] = []
    for size in sizes:
        k = size.count if size.count is not None else math.ceil(cast(float, size.percent) * n / 100 - 1e-9)
        group = tuple(selected[at : at + k])
        at += len(group)
        if group:
            groups.append(group)
    if at < n:
        raise RolloutError(
            f"the groups cover {at} of the {n} selected devices; end with a group of percent 100 to take the rest"
        )
    return tuple(groups)
