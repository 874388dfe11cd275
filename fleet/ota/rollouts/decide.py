"""Staged model rollouts as a pure function of state and time: the tick and what a device is offered.

A rollout offers one model version to a fixed, ordered list of device groups, computed once when it is
created (:mod:`fleet.ota.rollouts.selection`). The server stores a :class:`RolloutSpec` (never changes,
:mod:`fleet.ota.rollouts.spec`) and a :class:`RolloutState` (changes, :mod:`fleet.ota.rollouts.state`), and
drives the state with an explicit :func:`tick` over the device reports received since the previous tick and
the current time, like hawkBit's ``rolloutHandler.handleAll()``; operators change it with the commands of
:mod:`fleet.ota.rollouts.commands` (pause, resume, abort, rollback). Each returns the new state and the
:class:`Decision` list that says what changed (devices newly offered, offers withdrawn, timeouts, status
changes).

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

from collections.abc import Iterable
from dataclasses import replace

from fleet.ota.rollouts.spec import RolloutSpec
from fleet.ota.rollouts.state import (
    FINAL_FAILURES,
    STEP,
    SWITCHED,
    TIMEOUT,
    Decision,
    DeviceState,
    DeviceStatus,
    Report,
    RolloutState,
    deadline,
    failures,
    group_cannot_succeed,
    group_succeeded,
    group_tally,
    is_live,
    is_open,
    timed_out,
)
from wardsight import wire


def offer_for(spec: RolloutSpec, state: RolloutState, device_id: str, now: float) -> wire.UpdateOffer | None:
    """What this rollout asks the device to run now, or None (nothing to do, or the offer was withdrawn)."""
    dev = state.devices.get(device_id)
    if dev is None or not is_open(dev) or not is_live(state, dev):
        return None
    if dev.reverting:
        version = spec.revert_version(device_id)
        assert version is not None  # rollback() refuses to revert a device without one
        try:
            target = spec.target_of(version)
        except ValueError:  # a version no target can name (a system version with "+build"): no offer, not a 500
            return None
        return wire.UpdateOffer(rollout_id=spec.rollout_id, model=spec.model, version=version,
                                target=target, kind=spec.kind,
                                rollback=spec.kind == "system")  # fmt: skip
    start, end = spec.window.current_or_next(now) if spec.window is not None else (None, None)
    return wire.UpdateOffer(
        rollout_id=spec.rollout_id,
        model=spec.model,
        version=spec.version,
        target=spec.target,
        window_start=start,
        window_end=end,
        kind=spec.kind,
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
    if is_live(state, dev) and is_open(dev):
        return None
    if not dev.reverting and dev.status == "healthy" and state.status not in ("rolling_back", "rolled_back"):
        return None  # a healthy device may still report that it failed or went back later
    return f"the offer is no longer open (device {dev.status}, rollout {state.status})"


def _apply_report(spec: RolloutSpec, state: RolloutState, dev: DeviceState, r: Report) -> DeviceState:
    if dev.status in ("pending", "canceled"):
        return dev
    expected = spec.revert_version(r.device_id) if dev.reverting else spec.version
    if r.version != expected:
        return dev
    dev = replace(dev, last_report_at=r.received_at)
    if r.state == "deferred":
        progress = r.progress if r.progress is not None else dev.progress
        return replace(dev, progress=progress, deferred=r.reason or "deferred") if is_open(dev) else dev
    if r.state in FINAL_FAILURES:
        if dev.status in FINAL_FAILURES and not timed_out(dev):
            return dev  # already final by the device's own word
        if dev.reverting:
            return replace(dev, status="failed", since=r.received_at, reason=r.reason or "rollback_failed",
                           deferred=None, detail=r.detail)  # fmt: skip
        return replace(dev, status=r.state, since=r.received_at, reason=r.reason or r.state, progress=None,
                       deferred=None, detail=r.detail)  # fmt: skip
    # A step forward: downloading .. healthy.
    step = STEP[r.state]
    revived = timed_out(dev)
    if not revived and (dev.status not in STEP or step < STEP[dev.status]):
        return dev  # final, or a late report of an earlier step
    if not revived and step == STEP[dev.status]:
        if r.progress is None:
            return dev
        return replace(dev, progress=r.progress, done=r.done, total=r.total)
    if dev.reverting:
        status: DeviceStatus = "rolled_back" if r.state == "healthy" else r.state
        return replace(dev, status=status, since=r.received_at, reason=None, progress=r.progress, deferred=None,
                       detail=None)  # fmt: skip
    reached = r.state if step > STEP.get(dev.reached, -1) else dev.reached
    return replace(
        dev,
        status=r.state,
        since=r.received_at,
        reason=None,
        progress=r.progress,
        reached=reached,
        done=r.done,
        total=r.total,
        deferred=None,
        detail=None,
    )


def _start_group(spec: RolloutSpec, devices: dict[str, DeviceState], g: int, now: float) -> list[Decision]:
    decisions = [Decision("group_started", group=g)]
    for device in spec.groups[g]:
        if devices[device].status == "pending":
            devices[device] = replace(devices[device], status="offered", since=now)
            decisions.append(Decision("offer", device, g))
    return decisions


def cancel_open(
    spec: RolloutSpec, devices: dict[str, DeviceState], now: float, why: str, keep: Iterable[str] = ()
) -> list[Decision]:
    """Withdraw every open offer (but those of ``keep``) of a device that has not switched to the new model."""
    decisions = []
    kept = set(keep)
    for device, dev in devices.items():
        if device not in kept and is_open(dev) and (dev.reverting or dev.reached not in SWITCHED):
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
        if due is not None and now >= due and is_live(state, dev):
            devices[device] = replace(dev, status="failed", since=due, reason=TIMEOUT)
            decisions.append(Decision("timed_out", device, spec.group_of[device], f"no progress past {dev.status}"))
    state = replace(state, devices=devices)

    if state.status in ("running", "paused"):
        failed = failures(spec, state)
        if spec.error_threshold.exceeded(failed, spec.total):
            limit = spec.error_threshold.describe()
            why = f"{failed} of {spec.total} devices failed, past the error threshold ({limit})"
            decisions += cancel_open(spec, devices, now, "stopped")
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
            healthy, failed = group_tally(spec, state, g)
            why = (
                f"group {g + 1} cannot reach {spec.needed(g)} healthy of {len(spec.groups[g])}"
                f" ({healthy} healthy, {failed} failed)"
            )
            state = replace(state, status="paused", since=now, reason=why)
            decisions.append(Decision("paused", group=g, reason=why))
        break
    if state.status == "rolling_back" and not any(dev.reverting and is_open(dev) for dev in devices.values()):
        state = replace(state, status="rolled_back", since=now, reason=state.reason)
        decisions.append(Decision("rolled_back"))
    return state, decisions
