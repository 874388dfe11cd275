"""Opening the model a start runs: the slot :meth:`SlotStore.boot` chooses, falling back to the factory model."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from accelerators.cpu import CpuPoseBackend
from firmware.ota import selftest
from firmware.ota.slots import SlotStore
from firmware.ota.slotstate import Choice
from wardsight.errors import WardSightError

log = logging.getLogger("wardsight.device.ota")

B = TypeVar("B")


def open_model(slots: SlotStore, open_slot: Callable[[Choice], B], open_factory: Callable[[], B]) -> tuple[B, Choice]:
    """The model this start runs (:meth:`SlotStore.boot`), opened; a slot that fails to load is abandoned
    (a trial is reported as rolled back) and the next one tried, down to the factory model."""
    choice = slots.boot()
    while choice.slot is not None:
        try:
            return open_slot(choice), choice
        except WardSightError as exc:  # ModelLoadError and the like
            log.error("model in slot %s failed to load: %s", choice.slot, exc)
            choice = slots.abandon(choice, "load_failed")
    return open_factory(), choice


def slot_backend(choice: Choice, *, threads: int = 2, min_score: float = 0.15) -> CpuPoseBackend:
    """The CPU backend for a slot's build (``open_slot`` for :func:`open_model` on a CPU device)."""
    if choice.record is None or choice.path is None:
        raise WardSightError("the factory model has no slot")
    record = choice.record
    manifest = selftest.pose_manifest(record.build, record.name, record.version)
    return CpuPoseBackend(choice.path, manifest=manifest, num_threads=threads, min_score=min_score)
