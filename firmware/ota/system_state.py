"""A system update's persisted state (``<device dir>/ota/system/state.json``) and the pure decisions on it.

The phases, in order (:mod:`firmware.ota.system_update` moves between them)::

    idle -> downloaded -> checked -> installing -> installed -> rebooting -> trial -> idle ("healthy")
    downloaded -> idle ("rejected": RAUC's signature, the compatible, the version)
    installing -> idle ("failed": rauc install failed)
    rebooting -> rebooting (back on the old slot: the new one is tried once more) -> idle ("rolled_back")
    trial -> reverting -> idle ("rolled_back", with the trial's failure)
    reverting -> reverting (the revert's reboot came back to the new slot: the old one is activated, tried, committed)

Every change is one atomic replacement of the file (temp file, fsync, rename, fsync of the directory), made
*before* the action it announces, and every action is safe to repeat: a power cut or SIGKILL at any point
leaves a state whose next step finishes the update or ends it cleanly. The decisions (:func:`judge`,
:func:`judge_floor`, :func:`where_now`) are pure: facts and a clock in, a decision out.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from firmware.ota.rauc import BundleInfo, RaucStatus
from firmware.ota.slotstate import STATE_FILE as SLOTS_STATE_FILE
from wardsight import sysfloor
from wardsight.paths import write_file_atomically
from wardsight.sysversion import version_key

log = logging.getLogger("wardsight.device.ota")

STATE_FILE = "state.json"
LOCK_FILE = "update.lock"  # <device dir>/ota/update.lock
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
MAX_REPORTS = 32  # reports kept for the server while it is unreachable (oldest dropped first)

Phase = Literal["idle", "downloaded", "checked", "installing", "installed", "rebooting", "trial", "reverting"]
ReportState = Literal[
    "deferred", "downloaded", "rejected", "installed", "rebooting", "trial", "healthy", "failed", "rolled_back"
]
Holder = Literal["model", "system"]
# tryboot: boot the slot RAUC made primary (the Pi: once, by its one-shot tryboot, while that slot is not the committed
# one; elsewhere a plain reboot); normal: a plain reboot, into the committed slot.
RebootKind = Literal["tryboot", "normal"]
RebootRequester = Callable[[RebootKind], None]


class Outcome(Protocol):
    """The agent's self-test result (e.g. :class:`firmware.jobs.hooks.SelfTestOutcome`)."""

    @property
    def ok(self) -> bool: ...
    @property
    def reason(self) -> str: ...
    @property
    def detail(self) -> str: ...


@dataclass(frozen=True)
class Failed:
    ok: bool
    reason: str
    detail: str


@dataclass(frozen=True)
class SystemReport:
    """What the caller tells the fleet about a system update: its state, why, which version and RAUC slot."""

    rollout_id: str
    state: ReportState
    version: str
    slot: str | None = None  # the RAUC slot concerned (e.g. "rootfs.1")
    reason: str | None = None


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SystemOffer(_Closed):
    """The update the caller verified through TUF: which rollout, the version and compatible it signed."""

    rollout_id: str
    version: str
    compatible: str
    rollback: bool = False  # an explicit rollback may install an older version


class SlotRef(_Closed):
    name: str  # RAUC's slot name, "rootfs.1"
    bootname: str  # the bootloader's name for it, "B" (or a partition number)


class SystemState(_Closed):
    v: Literal[1] = 1
    phase: Phase = "idle"
    offer: SystemOffer | None = None
    bundle: str | None = None  # the verified bundle on disk, until it is installed
    from_version: str | None = None
    from_slot: SlotRef | None = None
    to_slot: SlotRef | None = None
    boot_id: str | None = None  # the boot in which the last reboot was requested (or the trial runs)
    requested_at: float | None = None  # monotonic clock when that reboot was requested (meaningful in that boot)
    reboot_requests: int = 0  # reboots requested in that boot
    tryboots: int = 0  # boots into the new slot asked for
    reverts: int = 0
    trial_starts: int = 0  # agent starts in the trial boot
    self_test_ok: bool = False
    attempts: int = 0  # retryable RAUC failures in the current phase
    retry_since: float | None = None  # monotonic time of the first of them (with attempts > 0) ...
    retry_boot: str | None = None  # ... in this boot
    reason: str | None = None  # why a trial is being reverted
    reports: list[SystemReport] = Field(default_factory=list)

    @property
    def in_flight(self) -> bool:
        return self.phase != "idle"


class SystemStateStore:
    """The one state file; every :meth:`save` replaces it atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.state = self.read(root, clean=True)

    @property
    def path(self) -> Path:
        return self.root / STATE_FILE

    @staticmethod
    def read(root: Path, *, clean: bool = False) -> SystemState:
        """The state on disk (idle when there is none); ``clean``: first delete what an interrupted write left
        (only the owner may: another reader could delete a write in progress)."""
        if clean:
            for stale in root.glob(f".{STATE_FILE}.*.tmp"):
                stale.unlink(missing_ok=True)
        try:
            raw = (root / STATE_FILE).read_bytes()
        except FileNotFoundError:
            return SystemState()
        try:
            return SystemState.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            # Not through our own writes (each is atomic); a damaged card can do it. Idle is safe: a slot this
            # state was trying was never marked good, so the next reboot boots the previous one.
            log.error("system update state %s is unreadable (%s); starting idle", root / STATE_FILE, exc)
            return SystemState()

    def save(self, state: SystemState) -> None:
        write_file_atomically(self.path, state.model_dump_json(indent=2).encode())
        self.state = state


def queue(state: SystemState, *reports: SystemReport) -> SystemState:
    """``state`` with ``reports`` appended to the unsent ones (bounded: the oldest go first)."""
    return state.model_copy(update={"reports": [*state.reports, *reports][-MAX_REPORTS:]})


# ---- decisions -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    action: Literal["install", "current", "reject"]
    reason: str | None = None


def judge(offer: SystemOffer, info: BundleInfo, status: RaucStatus, running: str | None) -> Verdict:
    """May this verified bundle be installed on this system? ``running`` is the running system's version."""
    if info.compatible != status.compatible:
        return Verdict("reject", f"incompatible: the bundle is for '{info.compatible}', this system is "
                                 f"'{status.compatible}'")  # fmt: skip
    if info.compatible != offer.compatible:
        return Verdict("reject", f"compatible_mismatch: signed as '{offer.compatible}', the bundle says "
                                 f"'{info.compatible}'")  # fmt: skip
    if info.version != offer.version:
        return Verdict("reject", f"version_mismatch: signed as {offer.version}, the bundle says {info.version}")
    if status.booted_slot() is None:
        return Verdict("reject", f"booted_slot_unknown: RAUC names no slot for '{status.booted}'")
    if status.other() is None:
        return Verdict("reject", "no_inactive_slot: RAUC finds no other bootable slot")
    return judge_version(offer, running)


def judge_version(offer: SystemOffer, running: str | None) -> Verdict:
    if running is None:
        return Verdict("reject", "running_version_unknown: neither RAUC nor the image says what runs")
    try:
        new, now = version_key(offer.version), version_key(running)
    except ValueError as exc:
        return Verdict("reject", f"version_unreadable: {exc}")
    if new == now:
        return Verdict("current", "already_running")
    if new < now and not offer.rollback:
        return Verdict("reject", f"not_newer: {offer.version} is older than the running {running}")
    if new > now and offer.rollback:
        return Verdict("reject", f"not_older: a rollback to {offer.version} but {running} runs")
    return Verdict("install")


def judge_floor(offer: SystemOffer, custom: object) -> Verdict | None:
    """The hospital's signed floor (:mod:`wardsight.sysfloor`; ``custom``: the targets role's ``custom`` field as the
    device's TUF client verified it, never the offer's word): an offer below its compatible's floor is refused,
    a rollback too; None when there is no floor or the offer is at or above it (then :func:`judge_version` decides)."""
    try:
        floor = sysfloor.floor_for(custom, offer.compatible)
    except ValueError as exc:
        return Verdict("reject", f"floor_unreadable: {exc}")
    try:
        if floor is None or not sysfloor.below(offer.version, floor):
            return None
    except ValueError as exc:
        return Verdict("reject", f"version_unreadable: {exc}")
    what = "a rollback to " if offer.rollback else ""
    return Verdict("reject", f"below_signed_floor: {what}{offer.version} is below {floor}, the lowest "
                             f"{offer.compatible} version the hospital signed")  # fmt: skip


Move = Literal[
    "wait",  # the reboot asked for in this boot has not come yet
    "reboot_again",  # ... and it is overdue: ask again
    "give_up",  # ... asked too often: it will not come
    "trial",  # running the new slot (the trial boot)
    "tryboot_again",  # back on the old slot before the new one was confirmed: try the new one once more
    "did_not_boot",  # ... and no tries are left
    "reverted",  # back on the old slot after a failed trial
    "commit_old",  # ... but by a one-shot boot: the bootloader's next boot is still the new slot's
    "revert_again",  # a revert's reboot came back to the new slot
    "unknown_slot",  # booted neither
]


@dataclass(frozen=True)
class SystemUpdateSettings:
    reboot_timeout: float = 600.0  # s: a reboot asked for and not come by then is asked for again
    max_reboot_requests: int = 3  # per boot, then the update gives up (before a trial)
    max_tryboots: int = 2  # boots into the new slot tried (a power cut also ends a tryboot)
    max_trial_starts: int = 3  # agent starts in the trial boot (a new system that crashes the agent)
    max_reverts: int = 3
    max_attempts: int = 3  # RAUC busy / not answering, per phase
    retry_seconds: float = 1800.0  # ... and for at least this long: an install an earlier agent start asked for


def retry(state: SystemState, now: float, boot: str, settings: SystemUpdateSettings) -> dict[str, object] | None:
    """The state's changes for one more try of a RAUC call RAUC could not take (busy, not answering), or None to
    give up: tried ``max_attempts`` times over at least ``retry_seconds``. An agent restarted during an install
    finds RAUC busy with it for minutes. ``now`` is boot ``boot``'s monotonic clock: another boot's window starts
    anew (its attempts kept)."""
    same = state.attempts and state.retry_since is not None and state.retry_boot == boot
    since = state.retry_since if same and state.retry_since is not None else now
    attempts = state.attempts + 1
    if attempts >= settings.max_attempts and now - since >= settings.retry_seconds:
        return None
    return {"attempts": attempts, "retry_since": since, "retry_boot": boot}


def where_now(
    state: SystemState,
    booted: str | None,
    boot_id: str,
    now: float,
    settings: SystemUpdateSettings,
    primary: str | None = None,
) -> Move:
    """Where a phase that expects a reboot (rebooting, trial, reverting) stands, from the booted slot's name
    and this boot's id; ``now`` is the monotonic clock (comparable with ``requested_at`` within one boot);
    ``primary``: the slot RAUC says the next boot starts (``boot_primary``; None: not known)."""
    to, back = state.to_slot, state.from_slot
    assert to is not None and back is not None, "a phase past 'checked' knows its slots"
    if boot_id == state.boot_id:  # no reboot since it was asked for (or, in a trial, since it began)
        if state.phase == "trial":
            return "trial"
        due = state.requested_at is None or now - state.requested_at >= settings.reboot_timeout
        if not due:
            return "wait"
        if state.phase == "rebooting" and state.reboot_requests >= settings.max_reboot_requests:
            return "give_up"
        return "reboot_again"
    if booted == to.name:
        return "revert_again" if state.phase == "reverting" else "trial"
    if booted == back.name:
        if state.phase == "reverting":  # kept only if the next boot is the old slot too (else: mark it good)
            return "reverted" if primary == back.name and state.reverts == 0 else "commit_old"
        return "tryboot_again" if state.tryboots < settings.max_tryboots else "did_not_boot"
    return "unknown_slot"


def deferral(state: SystemState, offer: SystemOffer) -> SystemReport:
    """The report for ``offer`` while an update is in flight: the same one in progress, or another."""
    same = state.offer is not None and (state.offer.rollout_id, state.offer.version) == (
        offer.rollout_id, offer.version)  # fmt: skip
    why = f"in_progress: {state.phase}" if same else "system_update_in_progress"
    return SystemReport(offer.rollout_id, "deferred", offer.version, reason=why)


def ending(move: Move, state: SystemState, booted: str | None) -> tuple[ReportState, str | None]:
    """How an update that ends on ``move`` is reported (the updater marks the new slot bad first, whatever it is)."""
    if move == "give_up":
        return "failed", "reboot_not_happening: the requested reboot never came"
    if move == "did_not_boot":
        return "rolled_back", "new_slot_did_not_boot"
    if move in ("reverted", "commit_old"):
        return "rolled_back", state.reason
    return "failed", f"unexpected_boot_slot: {booted}"


def reboot_kind(state: SystemState) -> RebootKind:
    """The reboot a phase asks for (again): the new slot's one-shot try; a revert's plain reboot into the committed
    slot, except once a revert came back to the new slot: that one is committed (the Pi: a trial marked good; RAUC
    refuses to mark it bad) and only a try of the old slot, made primary again, leaves it."""
    if state.phase == "rebooting" or (state.phase == "reverting" and state.reverts > 0):
        return "tryboot"
    return "normal"


# ---- the one update at a time ---------------------------------------------------------------------------------


def read_boot_id(path: Path = BOOT_ID) -> str:
    """This boot's id (a new one every boot)."""
    return path.read_text().strip()


def system_dir(device_dir: Path) -> Path:
    return device_dir / "ota" / "system"


@dataclass(frozen=True)
class UpdateLock:
    holder: Holder
    path: Path


def pending_reason(device_dir: Path, holder: Holder) -> str | None:
    """Why ``holder`` may not start, from what outlives a process: a system update past idle (for a model
    update), a model on trial (for a system update)."""
    if holder == "model":
        if SystemStateStore.read(system_dir(device_dir)).in_flight:
            return "system_update_in_progress"
        return None
    try:
        slots = json.loads((device_dir / "models" / "slots" / SLOTS_STATE_FILE).read_bytes())
    except (OSError, ValueError):
        return None  # no model slots (or unreadable: the slot store itself falls back to the factory model)
    return "model_update_in_progress" if isinstance(slots, dict) and slots.get("trial") else None


def busy_reason(device_dir: Path, holder: Holder) -> str:
    """Why :func:`update_lock` said no to ``holder`` (for a ``deferred`` report)."""
    pending = pending_reason(device_dir, holder)
    if pending is not None:
        return pending
    try:
        other = (device_dir / "ota" / LOCK_FILE).read_text().split()[0]
    except (OSError, IndexError):
        other = "model" if holder == "system" else "system"
    return f"{other}_update_in_progress" if other in ("model", "system") else "update_in_progress"


@contextlib.contextmanager
def update_lock(device_dir: Path, holder: Holder) -> Iterator[UpdateLock | None]:
    """Hold the device's one update lock as ``holder`` while the block runs, or yield None (at once) when another
    update holds it or is pending (:func:`pending_reason`). The ``flock`` ends with the process, so a killed
    update never leaves the device locked. Where ``firmware.ota.manager`` takes it: around
    :meth:`OtaManager.handle` (fetch, install, begin a trial), deferring the offer when None."""
    path = device_dir / "ota" / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        if pending_reason(device_dir, holder) is not None:
            yield None
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} {os.getpid()}\n".encode(), 0)
        yield UpdateLock(holder, path)
    finally:
        os.close(fd)  # releases the flock
