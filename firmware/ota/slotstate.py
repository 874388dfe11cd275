"""What the model slots' ``state.json`` holds (see :mod:`firmware.ota.slots`), the start's :class:`Choice`, and
the update reports the state queues for the server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from wardsight import modelpkg, wire
from wardsight.errors import WardSightError

Slot = Literal["a", "b"]
SLOTS: tuple[Slot, Slot] = ("a", "b")
STATE_FILE = "state.json"
MAX_REPORTS = 32  # reports kept for the server while it is unreachable (oldest dropped first)
MAX_REJECTED = 16


class SlotError(WardSightError):
    """A slot operation that does not fit the current state (e.g. installing into the active slot)."""


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlotRecord(_Closed):
    """The build a slot holds: checked against its file on every start."""

    name: str
    version: str
    task: str
    build: modelpkg.Build
    rollout_id: str | None = None


class Trial(_Closed):
    slot: Slot
    rollout_id: str
    boots: Annotated[int, Field(ge=0)] = 0


class Failure(_Closed):
    rollout_id: str
    model: str
    version: str
    reason: str
    at: float  # device wall clock, informational


class Rejected(_Closed):
    """An offer this device will not try again (it failed here for a reason that would repeat)."""

    rollout_id: str
    version: str


class FactorySwitch(_Closed):
    """An offer to go back to the factory (built-in) model, switched to: reported after the next start."""

    rollout_id: str
    model: str
    version: str
    started: bool = False  # the start into the factory model has queued "activated"


class SlotState(_Closed):
    v: Literal[1] = 1
    active: Slot | None = None  # None: the factory model
    previous: Slot | None = None
    slots: dict[Slot, SlotRecord | None] = Field(default_factory=lambda: dict.fromkeys(SLOTS))
    trial: Trial | None = None
    last_failure: Failure | None = None
    rejected: list[Rejected] = Field(default_factory=list)
    completed: str | None = None  # the rollout whose "healthy" report was queued
    factory_switch: FactorySwitch | None = None  # a switch back to the factory model not yet confirmed
    reports: list[wire.UpdateReport] = Field(default_factory=list)


@dataclass(frozen=True)
class Choice:
    """The model this start runs: a slot (``record`` and ``path`` set) or the factory model (``slot`` None)."""

    slot: Slot | None
    record: SlotRecord | None = None
    path: Path | None = None
    trial: bool = False

    @property
    def version(self) -> str | None:
        return self.record.version if self.record else None


def report_for(
    offer: wire.UpdateOffer, state: wire.UpdateState, reason: str | None = None, progress: float | None = None
) -> wire.UpdateReport:
    return wire.UpdateReport(
        rollout_id=offer.rollout_id,
        model=offer.model,
        version=offer.version,
        state=state,
        reason=reason,
        progress=progress,
    )
