"""Opening the model a start runs: the slot :meth:`SlotStore.boot` chooses, falling back to the factory model.

A slot holds one build for one backend. On each start the slot is judged against what the device runs
(:class:`~firmware.ota.builds.DeviceTarget`): a trial for another backend is ended (``backend_changed``); a trial
or an active slot whose HEF this Hailo can no longer load (another chip plugged in, another HailoRT installed) is
abandoned with the refusal's reason; an active slot for another backend is kept for when that backend runs again,
and the configured (factory) model runs meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from accelerators.base import Backend
from firmware.ota import selftest
from firmware.ota.builds import DeviceTarget, Refused, choose, target_of
from firmware.ota.slots import SlotStore
from firmware.ota.slotstate import Choice
from wardsight.errors import WardSightError

log = logging.getLogger("wardsight.device.ota")

B = TypeVar("B")


def open_model(
    slots: SlotStore,
    open_slot: Callable[[Choice], B],
    open_factory: Callable[[], B],
    target: DeviceTarget | None = None,
) -> tuple[B, Choice]:
    """The model this start runs (:meth:`SlotStore.boot`), opened; a slot that fails to load, or that
    ``target`` cannot run, is abandoned (a trial is reported as rolled back) and the next one tried, down to the
    factory model."""
    choice = slots.boot()
    while choice.slot is not None:
        why = _unfit(choice, target or DeviceTarget())
        if why is None:
            try:
                return open_slot(choice), choice
            except WardSightError as exc:  # ModelLoadError, HailoError, CoralError and the like
                log.error("model in slot %s failed to load: %s", choice.slot, exc)
                why = "load_failed"
        elif why == "other_backend":
            log.info("model slot %s holds a build for another backend than this start's; it is kept", choice.slot)
            return open_factory(), Choice(None)
        choice = slots.abandon(choice, why)
    return open_factory(), choice


def _unfit(choice: Choice, target: DeviceTarget) -> str | None:
    """Why ``target`` cannot run the slot's build (a report reason), "other_backend" for an active slot built
    for another backend, or None."""
    assert choice.record is not None
    build = choice.record.build
    if build.backend != target.backend:
        if choice.trial:
            log.error("model slot %s on trial is for %s, but this device now runs %s", choice.slot, build.backend,
                      target.backend)  # fmt: skip
            return "backend_changed"
        return "other_backend"
    try:
        choose([build], target)
    except Refused as exc:
        log.error("model slot %s cannot run here: %s", choice.slot, exc.detail)
        return exc.code
    return None


def slot_backend(
    choice: Choice,
    *,
    threads: int = 2,
    min_score: float = 0.15,
    accelerator: dict[str, Any] | None = None,
    make_cpu: Callable[[], Backend] | None = None,
) -> Backend:
    """The backend for a slot's build (``open_slot`` for :func:`open_model`): the CPU's for a CPU build; for a
    Hailo or Coral build the registry's backend on the slot's file (``accelerator``: that backend's other
    settings), behind a :class:`~accelerators.fallback.FallbackBackend` to ``make_cpu`` when given."""
    if choice.record is None or choice.path is None:
        raise WardSightError("the factory model has no slot")
    record = choice.record
    build = record.build
    if build.backend == "cpu":
        from accelerators.cpu import CpuPoseBackend

        manifest = selftest.pose_manifest(build, record.name, record.version)
        return CpuPoseBackend(choice.path, manifest=manifest, num_threads=threads, min_score=min_score)
    from accelerators import registry
    from accelerators.fallback import FallbackBackend

    entry = registry.entries().get(build.backend)
    if entry is None or build.backend not in ("hailo", "coral"):
        raise WardSightError(f"no backend opens a {build.backend} build from a slot")
    settings = dict(accelerator or {})
    settings["hef_path" if build.backend == "hailo" else "model_path"] = choice.path
    primary = entry.create(**settings)
    return primary if make_cpu is None else FallbackBackend(primary, make_cpu)


def open_on_accelerator(
    slots: SlotStore,
    running: Backend,
    open_slot: Callable[[Choice], Backend],
    reopen: Callable[[], Backend],
) -> tuple[Backend, Choice]:
    """The model a start on an accelerator runs. ``running`` is the accelerator already opened with its configured
    model (which says what the device is: its chip and runtime); when a slot fits it, ``running`` is closed (the
    device is the slot's now) and the slot opened; when that fails, ``reopen`` opens the configured model again
    (or the CPU, if the accelerator will not start)."""
    target = target_of(running)
    closed = False

    def open_one(choice: Choice) -> Backend:
        nonlocal closed
        if not closed:
            running.close()
            closed = True
        return open_slot(choice)

    def factory() -> Backend:
        return reopen() if closed else running

    return open_model(slots, open_one, factory, target)
