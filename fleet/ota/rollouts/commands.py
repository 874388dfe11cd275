"""What operators do to a rollout: pause, resume, abort, roll back (pure; each returns the new state and its
decisions, or raises :class:`CommandError` when the command does not apply)."""

from __future__ import annotations

from dataclasses import replace

from fleet.ota.rollouts.decide import cancel_open
from fleet.ota.rollouts.spec import RolloutSpec
from fleet.ota.rollouts.state import SWITCHED, Decision, RolloutState, group_cannot_succeed, timed_out


class CommandError(Exception):
    """An operator command that does not apply to the rollout's current status (the API answers 409)."""


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
    decisions = cancel_open(spec, devices, now, "aborted")
    state = replace(state, status="aborted", since=now, reason=why, devices=devices)
    return state, [*decisions, Decision("aborted", reason=why)]


def rollback(
    spec: RolloutSpec, state: RolloutState, now: float, reason: str | None = None
) -> tuple[RolloutState, list[Decision]]:
    """Withdraw the new version from devices that have not switched, and offer each device that did
    (``activated`` or ``healthy``, or timed out after that) the version it ran before: a package, or the model
    built into the agent (an offer without a package, ``wardsight.wire.BUILTIN_TARGET``)."""
    if state.status in ("rolling_back", "rolled_back"):
        raise CommandError(f"the rollout is already {state.status.replace('_', ' ')}")
    devices = dict(state.devices)
    switched = [
        d
        for d, dev in devices.items()
        if not dev.reverting and dev.reached in SWITCHED and (dev.status in SWITCHED or timed_out(dev))
    ]
    unknown = [d for d in switched if spec.revert_version(d) is None]
    if unknown:
        raise CommandError(
            f"{len(unknown)} device(s) switched but their previous version is unknown (e.g. {unknown[0]});"
            " create the rollout with previous_version to allow a rollback"
        )
    why = reason or "rolled back by an operator"
    decisions = cancel_open(spec, devices, now, "rolled_back", keep=switched)
    for device in switched:
        devices[device] = replace(
            devices[device], status="offered", since=now, reason=None, progress=None, reverting=True, deferred=None
        )
        decisions.append(Decision("offer_previous", device, spec.group_of[device]))
    if switched:
        state = replace(state, status="rolling_back", since=now, reason=why, devices=devices)
        return state, [*decisions, Decision("rolling_back", reason=why)]
    state = replace(state, status="rolled_back", since=now, reason=why, devices=devices)
    return state, [*decisions, Decision("rolled_back", reason=why)]


COMMANDS = {"pause": pause, "resume": resume, "abort": abort, "rollback": rollback}
