"""Where a rollout and each of its devices are (:class:`RolloutState`), what devices report (:class:`Report`),
what a change did (:class:`Decision`), and questions about the state (pure; no I/O, no clock reads)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from fleet.ota.rollouts.spec import RolloutSpec
from wardsight import wire

DeviceStatus = Literal[
    "pending",  # in a group that has not started
    "offered",  # offered; nothing heard since (no clock runs)
    "downloading",
    "downloaded",
    "installed",
    "rebooting",  # a system update: installed in the inactive slot, booting it once
    "activated",  # switched to the new model (or booted the new system), on trial
    "healthy",
    "failed",  # reported failed, or timed out (reason "timeout")
    "rejected",  # refused the package before running it (self-test failed, no build for its backend, ...)
    "rolled_back",  # went back to its previous model (on its own after a failed self-test, or by a rollback)
    "canceled",  # the offer was withdrawn (abort, stop or rollback) before the device switched
]
RolloutStatus = Literal["running", "paused", "stopped", "aborted", "completed", "rolling_back", "rolled_back"]
DecisionKind = Literal[
    "group_started",
    "offer",  # the device is now offered the new version
    "offer_previous",  # the device is now offered the version it ran before (rollback)
    "cancel",  # the device's offer is withdrawn
    "timed_out",
    "paused",
    "resumed",
    "stopped",
    "aborted",
    "completed",
    "rolling_back",
    "rolled_back",
]
DEVICE_STATUSES: tuple[DeviceStatus, ...] = get_args(DeviceStatus)
ROLLOUT_STATUSES: tuple[RolloutStatus, ...] = get_args(RolloutStatus)
TIMEOUT = "timeout"
IN_PROGRESS: tuple[DeviceStatus, ...] = ("downloading", "downloaded", "installed", "rebooting", "activated")
STEP: dict[str, int] = {
    "offered": 0, "downloading": 1, "downloaded": 2, "installed": 3, "rebooting": 4, "activated": 5, "healthy": 6
}  # fmt: skip
# Past these a device runs (or is booting) the new version: an abort leaves it, a rollback offers it the old one.
SWITCHED = frozenset({"rebooting", "activated", "healthy"})
FINAL_FAILURES = frozenset({"failed", "rejected", "rolled_back"})
_FORWARD_LIVE = frozenset({"running", "paused", "completed"})


@dataclass(frozen=True)
class DeviceState:
    status: DeviceStatus = "pending"
    since: float | None = None  # when ``status`` last changed (the step clock)
    reached: DeviceStatus = "pending"  # the furthest step reached on the new version
    reason: str | None = None
    progress: float | None = None
    reverting: bool = False  # offered its previous version by a rollback
    last_report_at: float | None = None
    done: int | None = None  # the counts behind ``progress`` (health-check frames on trial), when reported
    total: int | None = None
    deferred: str | None = None  # why the device put off its next step (its "deferred" report), until it moves on
    detail: str | None = None  # the device's own words on ``reason`` (e.g. RAUC's message), when it gave them


@dataclass(frozen=True)
class RolloutState:
    status: RolloutStatus
    since: float
    groups_started: int
    devices: Mapping[str, DeviceState]
    reason: str | None = None  # why it is paused, stopped, ...
    accepted_group: int | None = None  # a group an operator let through below the success threshold

    @property
    def current_group(self) -> int | None:
        return self.groups_started - 1 if self.groups_started else None


@dataclass(frozen=True)
class Report:
    """One device report (``wire.UpdateReport`` plus who sent it and when it arrived, by the server's clock)."""

    device_id: str
    version: str
    state: wire.UpdateState
    received_at: float
    reason: str | None = None
    progress: float | None = None
    done: int | None = None
    total: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Decision:
    kind: DecisionKind
    device_id: str | None = None
    group: int | None = None
    reason: str | None = None


def new_state(spec: RolloutSpec, now: float) -> RolloutState:
    """A running rollout with no group started yet (the first :func:`tick` starts the first group)."""
    return RolloutState("running", now, 0, {d: DeviceState() for d in spec.group_of})


# ---- reading the state ------------------------------------------------------------------------------------


def is_failure(dev: DeviceState) -> bool:
    return not dev.reverting and dev.status in FINAL_FAILURES


def timed_out(dev: DeviceState) -> bool:
    return dev.status == "failed" and dev.reason == TIMEOUT


def is_open(dev: DeviceState) -> bool:
    """Offered and not finished (a timed-out device may still finish)."""
    return dev.status == "offered" or dev.status in IN_PROGRESS or timed_out(dev)


def is_live(state: RolloutState, dev: DeviceState) -> bool:
    """Whether the device's offer stands: it may fetch it, report on it, and its clock runs."""
    if dev.reverting:
        return state.status == "rolling_back"
    # After a stop or abort, a device that switched to the new model keeps it and still reports how it does.
    return state.status in _FORWARD_LIVE or (dev.reached in SWITCHED and state.status in ("stopped", "aborted"))


def failures(spec: RolloutSpec, state: RolloutState) -> int:
    return sum(is_failure(dev) for dev in state.devices.values())


def group_counts(spec: RolloutSpec, state: RolloutState, group: int) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(DEVICE_STATUSES, 0)
    for device in spec.groups[group]:
        counts[state.devices[device].status] += 1
    return counts


def group_tally(spec: RolloutSpec, state: RolloutState, group: int) -> tuple[int, int]:
    devices = [state.devices[d] for d in spec.groups[group]]
    healthy = sum(1 for d in devices if d.status == "healthy" and not d.reverting)
    failed = sum(1 for d in devices if is_failure(d))
    return healthy, failed


def group_succeeded(spec: RolloutSpec, state: RolloutState, group: int) -> bool:
    return state.accepted_group == group or group_tally(spec, state, group)[0] >= spec.needed(group)


def group_cannot_succeed(spec: RolloutSpec, state: RolloutState, group: int) -> bool:
    healthy, failed = group_tally(spec, state, group)
    return len(spec.groups[group]) - failed < spec.needed(group) and healthy < spec.needed(group)


def deadline(spec: RolloutSpec, dev: DeviceState) -> float | None:
    """When the device's current step times out; None while no clock runs (not started, silent, done)."""
    if dev.status not in IN_PROGRESS or dev.since is None:
        return None
    start = dev.since
    if dev.status == "downloaded" and spec.window is not None and not dev.reverting:
        start = spec.window.opens_at_or_after(dev.since)
    return start + spec.in_progress_timeout_s


def is_settled(spec: RolloutSpec, state: RolloutState) -> bool:
    """Nothing left for a tick to do until an operator acts or a report arrives."""
    if state.status in ("running", "rolling_back"):
        return False
    return not any(is_live(state, dev) and is_open(dev) for dev in state.devices.values())
