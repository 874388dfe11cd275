"""Staged model rollouts as a pure function of state and time (no I/O, no clock reads).

A rollout offers one model version to a fixed, ordered list of device groups, computed once when it is
created (:func:`select_devices`, :func:`split_groups`). The server stores a :class:`RolloutSpec` (never
changes) and a :class:`RolloutState` (changes), and drives the state with an explicit
:func:`tick` over the device reports received since the previous tick and the current time, like
hawkBit's ``rolloutHandler.handleAll()``; operators change it with :func:`pause`, :func:`resume`,
:func:`abort` and :func:`rollback`. Each returns the new state and the :class:`Decision` list that says
what changed (devices newly offered, offers withdrawn, timeouts, status changes).

Semantics (hawkBit groups, AWS abort/timeout):

- Group ``g + 1`` starts (its devices are *offered* the update) once group ``g`` has at least
  ``ceil(success_threshold * size)`` devices that reported the new model ``healthy``. The rollout is
  *completed* when the last group gets there; devices of any group that are still on their way
  (stragglers, offline devices) keep their offer and may finish later.
- A group that can no longer get there (too many of its devices failed) *pauses* the rollout. Failures
  across the whole rollout *past* the error threshold (more than ``count``, or more than
  ``fraction`` of its devices) *stop* it: offers to devices that have not switched yet are withdrawn.
  A failure is a device that reported ``failed``, one that reported ``rejected`` (it refused the package
  before running it: the self-test failed, no build for its backend, ...; it still runs its model), one that
  reported ``rolled_back`` (it switched, failed its health check and went back on its own), or one that
  timed out.
- Timeout (fixes hawkBit#693, a device stuck "proceeding" for ever): the clock starts when the device
  first reports progress, never at offer time, and restarts at each step it reports
  (downloading -> downloaded -> installed -> activated -> healthy); a device that stays in one step longer
  than ``in_progress_timeout_s`` counts as failed (reason ``timeout``). With a maintenance window, a
  downloaded device is waiting for the window, so that step's clock starts when the window opens.
- Offline devices: a device that is offered but silent stays ``offered`` with no clock running, so a
  device that comes back a week later is still offered the update (if the rollout has not been stopped,
  aborted or rolled back meanwhile) and catches up. A device that timed out keeps its offer too, and a
  later progress report from it revives it (its failure stops counting; a pause or stop it caused stays).
- Pause stops new groups from starting; devices already offered carry on (as in hawkBit). Resume
  continues; when the current group can no longer reach the threshold, resuming accepts it and starts the
  next group. Abort withdraws every offer not yet switched to. Rollback offers each device that switched
  to the new model (``activated`` or ``healthy``) the version it ran before (``from_versions``, else
  ``previous_version``), without a maintenance window; it is *rolled back* when all of them have reported
  ``healthy`` on that version (or failed).
- Maintenance window (hawkBit#245): offers carry ``window_start``/``window_end`` (server time) of the
  current or next daily window; the device downloads at once and switches only inside the window.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal, cast, get_args

from wardsight import wire

DeviceStatus = Literal[
    "pending",  # in a group that has not started
    "offered",  # offered; nothing heard since (no clock runs)
    "downloading",
    "downloaded",
    "installed",
    "activated",  # switched to the new model, self-test running
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
IN_PROGRESS: tuple[DeviceStatus, ...] = ("downloading", "downloaded", "installed", "activated")
_STEP: dict[str, int] = {"offered": 0, "downloading": 1, "downloaded": 2, "installed": 3, "activated": 4, "healthy": 5}
_SWITCHED = frozenset({"activated", "healthy"})
_FINAL_FAILURES = frozenset({"failed", "rejected", "rolled_back"})
_FORWARD_LIVE = frozenset({"running", "paused", "completed"})
DAY_S = 86400


class RolloutError(ValueError):
    """A rollout that cannot be made: bad thresholds, groups that do not cover the selection, ...."""


class CommandError(Exception):
    """An operator command that does not apply to the rollout's current status (the API answers 409)."""


# ---- spec -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A daily maintenance window, ``[start, end)`` in minutes of the day at a fixed UTC offset (no DST);
    ``end < start`` spans midnight."""

    start_minute: int
    end_minute: int
    utc_offset_minutes: int = 0

    def __post_init__(self) -> None:
        for name in ("start_minute", "end_minute"):
            if not 0 <= getattr(self, name) < 1440:
                raise RolloutError(f"window {name} must be within 0..1439")
        if self.start_minute == self.end_minute:
            raise RolloutError("a window must not start and end at the same minute")
        if not -840 <= self.utc_offset_minutes <= 840:
            raise RolloutError("window utc_offset_minutes must be within -840..840")

    def current_or_next(self, now: float) -> tuple[float, float]:
        """(start, end) in server time of the window that contains ``now``, else of the next one."""
        offset = self.utc_offset_minutes * 60
        local = now + offset
        day = math.floor(local / DAY_S) * DAY_S
        length = ((self.end_minute - self.start_minute) % 1440) * 60
        for days in (-1, 0, 1):
            start = day + days * DAY_S + self.start_minute * 60
            if local < start + length:
                return float(start - offset), float(start + length - offset)
        raise AssertionError("unreachable: tomorrow's window always ends after now")

    def opens_at_or_after(self, t: float) -> float:
        """``t`` if a window is open at ``t``, else when the next one opens."""
        return max(t, self.current_or_next(t)[0])


@dataclass(frozen=True)
class ErrorThreshold:
    """Stop the rollout when its failed devices are *more than* ``count``, or more than ``fraction`` of it."""

    count: int | None = None
    fraction: float | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.fraction is None):
            raise RolloutError("the error threshold is either a count or a fraction")
        if self.count is not None and self.count < 0:
            raise RolloutError("the error threshold count must not be negative")
        if self.fraction is not None and not 0 <= self.fraction < 1:
            raise RolloutError("the error threshold fraction must be within [0, 1)")

    def exceeded(self, failures: int, total: int) -> bool:
        if self.count is not None:
            return failures > self.count
        assert self.fraction is not None
        return failures > self.fraction * total + 1e-9

    def describe(self) -> str:
        return f"{self.count} failed" if self.count is not None else f"{self.fraction:.0%} failed"


@dataclass(frozen=True)
class RolloutSpec:
    """What a rollout is; fixed when it is created."""

    rollout_id: str
    model: str
    version: str
    groups: tuple[tuple[str, ...], ...]
    success_threshold: float
    error_threshold: ErrorThreshold
    in_progress_timeout_s: float
    previous_version: str | None = None  # rollback target for devices without a known from_version
    from_versions: Mapping[str, str] = field(default_factory=dict)  # what each device ran at creation
    window: Window | None = None

    def __post_init__(self) -> None:
        if not self.groups or any(not group for group in self.groups):
            raise RolloutError("a rollout needs at least one group, and no group may be empty")
        seen = [d for group in self.groups for d in group]
        if len(set(seen)) != len(seen):
            raise RolloutError("a device may be in only one group")
        if not 0 < self.success_threshold <= 1:
            raise RolloutError("the success threshold must be within (0, 1]")
        if not self.in_progress_timeout_s > 0:
            raise RolloutError("the in-progress timeout must be positive")
        if self.previous_version == self.version:
            raise RolloutError("the previous version must differ from the version rolled out")
        if set(self.from_versions) - set(seen):
            raise RolloutError("from_versions names devices outside the rollout")

    @cached_property
    def group_of(self) -> dict[str, int]:
        return {device: g for g, group in enumerate(self.groups) for device in group}

    @property
    def total(self) -> int:
        return len(self.group_of)

    @property
    def target(self) -> str:
        return wire.target_path(self.model, self.version)

    def needed(self, group: int) -> int:
        """Healthy devices group ``group`` needs to succeed."""
        return max(1, math.ceil(self.success_threshold * len(self.groups[group]) - 1e-9))

    def revert_version(self, device_id: str) -> str | None:
        known = self.from_versions.get(device_id)
        return known if known is not None and known != self.version else self.previous_version


# ---- state ----------------------------------------------------------------------------------------------


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


def _is_failure(dev: DeviceState) -> bool:
    return not dev.reverting and dev.status in _FINAL_FAILURES


def _timed_out(dev: DeviceState) -> bool:
    return dev.status == "failed" and dev.reason == TIMEOUT


def _open(dev: DeviceState) -> bool:
    """Offered and not finished (a timed-out device may still finish)."""
    return dev.status == "offered" or dev.status in IN_PROGRESS or _timed_out(dev)


def _live(state: RolloutState, dev: DeviceState) -> bool:
    """Whether the device's offer stands: it may fetch it, report on it, and its clock runs."""
    if dev.reverting:
        return state.status == "rolling_back"
    # After a stop or abort, a device that switched to the new model keeps it and still reports how it does.
    return state.status in _FORWARD_LIVE or (dev.reached in _SWITCHED and state.status in ("stopped", "aborted"))


def failures(spec: RolloutSpec, state: RolloutState) -> int:
    return sum(_is_failure(dev) for dev in state.devices.values())


def group_counts(spec: RolloutSpec, state: RolloutState, group: int) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(DEVICE_STATUSES, 0)
    for device in spec.groups[group]:
        counts[state.devices[device].status] += 1
    return counts


def _group_tally(spec: RolloutSpec, state: RolloutState, group: int) -> tuple[int, int]:
    devices = [state.devices[d] for d in spec.groups[group]]
    healthy = sum(1 for d in devices if d.status == "healthy" and not d.reverting)
    failed = sum(1 for d in devices if _is_failure(d))
    return healthy, failed


def group_succeeded(spec: RolloutSpec, state: RolloutState, group: int) -> bool:
    return state.accepted_group == group or _group_tally(spec, state, group)[0] >= spec.needed(group)


def group_cannot_succeed(spec: RolloutSpec, state: RolloutState, group: int) -> bool:
    healthy, failed = _group_tally(spec, state, group)
    return len(spec.groups[group]) - failed < spec.needed(group) and healthy < spec.needed(group)


def deadline(spec: RolloutSpec, dev: DeviceState) -> float | None:
    """When the device's current step times out; None while no clock runs (not started, silent, done)."""
    if dev.status not in IN_PROGRESS or dev.since is None:
        return None
    start = dev.since
    if dev.status == "downloaded" and spec.window is not None and not dev.reverting:
        start = spec.window.opens_at_or_after(dev.since)
    return start + spec.in_progress_timeout_s


def offer_for(spec: RolloutSpec, state: RolloutState, device_id: str, now: float) -> wire.UpdateOffer | None:
    """What this rollout asks the device to run now, or None (nothing to do, or the offer was withdrawn)."""
    dev = state.devices.get(device_id)
    if dev is None or not _open(dev) or not _live(state, dev):
        return None
    if dev.reverting:
        version = spec.revert_version(device_id)
        assert version is not None  # rollback() refuses to revert a device without one
        return wire.UpdateOffer(
            rollout_id=spec.rollout_id, model=spec.model, version=version, target=wire.target_path(spec.model, version)
        )
    start, end = spec.window.current_or_next(now) if spec.window is not None else (None, None)
    return wire.UpdateOffer(
        rollout_id=spec.rollout_id,
        model=spec.model,
        version=spec.version,
        target=spec.target,
        window_start=start,
        window_end=end,
    )


def refuse_report(spec: RolloutSpec, state: RolloutState, device_id: str, model: str, version: str) -> str | None:
    """Why the device may not report on this rollout now (None: it may). Devices report only on what this
    rollout offers them: their open offer, or (after switching) the outcome of the model they switched to."""
    dev = state.devices.get(device_id)
    if dev is None or dev.status == "pending":
        return "this rollout has offered this device nothing"
    expected = spec.revert_version(device_id) if dev.reverting else spec.version
    if model != spec.model or version != expected:
        return f"this rollout offers {spec.model} {expected}, not {model} {version}"
    if _live(state, dev) and _open(dev):
        return None
    if not dev.reverting and dev.status == "healthy" and state.status not in ("rolling_back", "rolled_back"):
        return None  # a healthy device may still report that it failed or went back later
    return f"the offer is no longer open (device {dev.status}, rollout {state.status})"


def is_settled(spec: RolloutSpec, state: RolloutState) -> bool:
    """Nothing left for a tick to do until an operator acts or a report arrives."""
    if state.status in ("running", "rolling_back"):
        return False
    return not any(_live(state, dev) and _open(dev) for dev in state.devices.values())


# ---- tick -----------------------------------------------------------------------------------------------


def _apply_report(spec: RolloutSpec, state: RolloutState, dev: DeviceState, r: Report) -> DeviceState:
    if dev.status in ("pending", "canceled"):
        return dev
    expected = spec.revert_version(r.device_id) if dev.reverting else spec.version
    if r.version != expected:
        return dev
    dev = replace(dev, last_report_at=r.received_at)
    if r.state == "deferred":
        return replace(dev, progress=r.progress if r.progress is not None else dev.progress)
    if r.state in _FINAL_FAILURES:
        if dev.status in _FINAL_FAILURES and not _timed_out(dev):
            return dev  # already final by the device's own word
        if dev.reverting:
            return replace(dev, status="failed", since=r.received_at, reason=r.reason or "rollback_failed")
        return replace(dev, status=r.state, since=r.received_at, reason=r.reason or r.state, progress=None)
    # A step forward: downloading .. healthy.
    step = _STEP[r.state]
    revived = _timed_out(dev)
    if not revived and (dev.status not in _STEP or step < _STEP[dev.status]):
        return dev  # final, or a late report of an earlier step
    if not revived and step == _STEP[dev.status]:
        if r.progress is None:
            return dev
        return replace(dev, progress=r.progress, done=r.done, total=r.total)
    if dev.reverting:
        status: DeviceStatus = "rolled_back" if r.state == "healthy" else r.state
        return replace(dev, status=status, since=r.received_at, reason=None, progress=r.progress)
    reached = r.state if step > _STEP.get(dev.reached, -1) else dev.reached
    return replace(
        dev,
        status=r.state,
        since=r.received_at,
        reason=None,
        progress=r.progress,
        reached=reached,
        done=r.done,
        total=r.total,
    )


def _start_group(spec: RolloutSpec, devices: dict[str, DeviceState], g: int, now: float) -> list[Decision]:
    decisions = [Decision("group_started", group=g)]
    for device in spec.groups[g]:
        if devices[device].status == "pending":
            devices[device] = replace(devices[device], status="offered", since=now)
            decisions.append(Decision("offer", device, g))
    return decisions


def _cancel_open(
    spec: RolloutSpec, devices: dict[str, DeviceState], now: float, why: str, keep: Iterable[str] = ()
) -> list[Decision]:
    """Withdraw every open offer (but those of ``keep``) of a device that has not switched to the new model."""
    decisions = []
    kept = set(keep)
    for device, dev in devices.items():
        if device not in kept and _open(dev) and (dev.reverting or dev.reached not in _SWITCHED):
            devices[device] = replace(dev, status="canceled", since=now, reason=why)
            decisions.append(Decision("cancel", device, spec.group_of[device], why))
    return decisions


def tick(
    spec: RolloutSpec, state: RolloutState, reports: Iterable[Report], now: float
) -> tuple[RolloutState, list[Decision]]:
    """Apply the reports received since the last tick (in order of arrival), time out stuck devices, then
    move the rollout on: start groups, pause, stop, complete, or finish a rollback."""
    devices = dict(state.devices)
    decisions: list[Decision] = []
    for r in sorted(reports, key=lambda r: r.received_at):
        if r.device_id in devices:
            devices[r.device_id] = _apply_report(spec, state, devices[r.device_id], r)
    for device, dev in devices.items():
        due = deadline(spec, dev)
        if due is not None and now >= due and _live(state, dev):
            devices[device] = replace(dev, status="failed", since=due, reason=TIMEOUT)
            decisions.append(Decision("timed_out", device, spec.group_of[device], f"no progress past {dev.status}"))
    state = replace(state, devices=devices)

    if state.status in ("running", "paused"):
        failed = failures(spec, state)
        if spec.error_threshold.exceeded(failed, spec.total):
            limit = spec.error_threshold.describe()
            why = f"{failed} of {spec.total} devices failed, past the error threshold ({limit})"
            decisions += _cancel_open(spec, devices, now, "stopped")
            state = replace(state, status="stopped", since=now, reason=why, devices=devices)
            decisions.append(Decision("stopped", reason=why))
    while state.status == "running":
        g = state.current_group
        if g is None or group_succeeded(spec, state, g):
            nxt = 0 if g is None else g + 1
            if nxt == len(spec.groups):
                state = replace(state, status="completed", since=now, reason=None)
                decisions.append(Decision("completed"))
                break
            decisions += _start_group(spec, devices, nxt, now)
            state = replace(state, groups_started=nxt + 1, devices=devices)
            continue
        if group_cannot_succeed(spec, state, g):
            healthy, failed = _group_tally(spec, state, g)
            why = (
                f"group {g + 1} cannot reach {spec.needed(g)} healthy of {len(spec.groups[g])}"
                f" ({healthy} healthy, {failed} failed)"
            )
            state = replace(state, status="paused", since=now, reason=why)
            decisions.append(Decision("paused", group=g, reason=why))
        break
    if state.status == "rolling_back" and not any(dev.reverting and _open(dev) for dev in devices.values()):
        state = replace(state, status="rolled_back", since=now, reason=state.reason)
        decisions.append(Decision("rolled_back"))
    return state, decisions


# ---- operator commands ----------------------------------------------------------------------------------


def pause(
    spec: RolloutSpec, state: RolloutState, now: float, reason: str | None = None
) -> tuple[RolloutState, list[Decision]]:
    """Start no further group; devices already offered carry on."""
    if state.status != "running":
        raise CommandError(f"only a running rollout can be paused; this one is {state.status}")
    why = reason or "paused by an operator"
    return replace(state, status="paused", since=now, reason=why), [Decision("paused", reason=why)]


def resume(
    spec: RolloutSpec, state: RolloutState, now: float, reason: str | None = None
) -> tuple[RolloutState, list[Decision]]:
    """Continue a paused rollout; a current group that can no longer succeed is accepted as it is."""
    if state.status != "paused":
        raise CommandError(f"only a paused rollout can be resumed; this one is {state.status}")
    g = state.current_group
    accepted = g if g is not None and group_cannot_succeed(spec, state, g) else state.accepted_group
    state = replace(state, status="running", since=now, reason=None, accepted_group=accepted)
    return state, [Decision("resumed", group=accepted if accepted == g else None, reason=reason)]


def abort(
    spec: RolloutSpec, state: RolloutState, now: float, reason: str | None = None
) -> tuple[RolloutState, list[Decision]]:
    """Withdraw every offer a device has not switched to yet; start nothing more. Switched devices keep the
    new model (use :func:`rollback` to take it back)."""
    if state.status in ("aborted", "rolled_back"):
        raise CommandError(f"the rollout is already {state.status}")
    devices = dict(state.devices)
    why = reason or "aborted by an operator"
    decisions = _cancel_open(spec, devices, now, "aborted")
    state = replace(state, status="aborted", since=now, reason=why, devices=devices)
    return state, [*decisions, Decision("aborted", reason=why)]


def rollback(
    spec: RolloutSpec, state: RolloutState, now: float, reason: str | None = None
) -> tuple[RolloutState, list[Decision]]:
    """Withdraw the new version from devices that have not switched, and offer each device that did
    (``activated`` or ``healthy``, or timed out after that) the version it ran before."""
    if state.status in ("rolling_back", "rolled_back"):
        raise CommandError(f"the rollout is already {state.status.replace('_', ' ')}")
    devices = dict(state.devices)
    switched = [
        d
        for d, dev in devices.items()
        if not dev.reverting and dev.reached in _SWITCHED and (dev.status in _SWITCHED or _timed_out(dev))
    ]
    unknown = [d for d in switched if spec.revert_version(d) is None]
    if unknown:
        raise CommandError(
            f"{len(unknown)} device(s) switched but their previous version is unknown (e.g. {unknown[0]});"
            " create the rollout with previous_version to allow a rollback"
        )
    why = reason or "rolled back by an operator"
    decisions = _cancel_open(spec, devices, now, "rolled_back", keep=switched)
    for device in switched:
        devices[device] = replace(
            devices[device], status="offered", since=now, reason=None, progress=None, reverting=True
        )
        decisions.append(Decision("offer_previous", device, spec.group_of[device]))
    if switched:
        state = replace(state, status="rolling_back", since=now, reason=why, devices=devices)
        return state, [*decisions, Decision("rolling_back", reason=why)]
    state = replace(state, status="rolled_back", since=now, reason=why, devices=devices)
    return state, [*decisions, Decision("rolled_back", reason=why)]


COMMANDS = {"pause": pause, "resume": resume, "abort": abort, "rollback": rollback}


# ---- selecting devices ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    id: str
    room: str
    site: str | None = None
    ward: str | None = None
    status: str = "active"
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Selector:
    """Devices that match every given field (all of ``tags``), then a stable ``percent`` of those."""

    site: str | None = None
    ward: str | None = None
    room: str | None = None
    tags: tuple[str, ...] = ()
    percent: float | None = None

    def matches(self, device: DeviceInfo) -> bool:
        return (
            device.status == "active"
            and all(
                want is None or have == want
                for want, have in ((self.site, device.site), (self.ward, device.ward), (self.room, device.room))
            )
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


# ---- JSON -----------------------------------------------------------------------------------------------


def spec_to_dict(spec: RolloutSpec) -> dict[str, Any]:
    return {
        "rollout_id": spec.rollout_id,
        "model": spec.model,
        "version": spec.version,
        "groups": [list(g) for g in spec.groups],
        "success_threshold": spec.success_threshold,
        "error_threshold": {"count": spec.error_threshold.count, "fraction": spec.error_threshold.fraction},
        "in_progress_timeout_s": spec.in_progress_timeout_s,
        "previous_version": spec.previous_version,
        "from_versions": dict(spec.from_versions),
        "window": None
        if spec.window is None
        else {
            "start_minute": spec.window.start_minute,
            "end_minute": spec.window.end_minute,
            "utc_offset_minutes": spec.window.utc_offset_minutes,
        },
    }


def spec_from_dict(data: Mapping[str, Any]) -> RolloutSpec:
    return RolloutSpec(
        rollout_id=data["rollout_id"],
        model=data["model"],
        version=data["version"],
        groups=tuple(tuple(g) for g in data["groups"]),
        success_threshold=data["success_threshold"],
        error_threshold=ErrorThreshold(**data["error_threshold"]),
        in_progress_timeout_s=data["in_progress_timeout_s"],
        previous_version=data["previous_version"],
        from_versions=dict(data["from_versions"]),
        window=None if data["window"] is None else Window(**data["window"]),
    )


_DEVICE_FIELDS = ("status", "since", "reached", "reason", "progress", "reverting", "last_report_at", "done", "total")


def state_to_dict(state: RolloutState) -> dict[str, Any]:
    return {
        "status": state.status,
        "since": state.since,
        "groups_started": state.groups_started,
        "reason": state.reason,
        "accepted_group": state.accepted_group,
        "devices": {d: {f: getattr(dev, f) for f in _DEVICE_FIELDS} for d, dev in state.devices.items()},
    }


def state_from_dict(data: Mapping[str, Any]) -> RolloutState:
    return RolloutState(
        status=data["status"],
        since=data["since"],
        groups_started=data["groups_started"],
        reason=data["reason"],
        accepted_group=data["accepted_group"],
        devices={d: DeviceState(**fields) for d, fields in data["devices"].items()},
    )
