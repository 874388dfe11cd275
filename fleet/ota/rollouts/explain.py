"""Why a device is where it is in a rollout, in words an operator can act on (pure: state and facts in, text out).

The rollout state says *what* each device reported; an operator also needs to know what happens next: is the
device able to take updates at all, has it been told, when does it check, how far is its health check.
:func:`explain` puts the rollout's view of the device together with :class:`DeviceFacts` (its latest
heartbeat, presence and polls, gathered by ``fleet.ota.rollouts.store.device_facts``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from fleet.ota.rollouts.spec import RolloutSpec
from fleet.ota.rollouts.state import DeviceState, is_open
from wardsight.wire import is_package_version

POLL_SECONDS = 300.0  # the device's fallback update poll (firmware.ota.manager.OtaSettings.poll_seconds)

# The device's reason codes (firmware.ota) as a person reads them.
REASONS = {
    "self_test_failed": "the model failed its self-test",
    "package_invalid": "the package is damaged or malformed",
    "package_mismatch": "the package is not the offered model or version",
    "unsupported_model": "the device does not run this model",
    "agent_too_old": "the package needs a newer agent",
    "crashed": "the agent crashed on the new model",
    "health_check_missed": "too few frames processed on the new model in time",
    "inference_failed": "inference failed on the new model",
    "load_failed": "the new model did not load",
    "builtin_version_unknown": "the model built into this device's agent is another version",
    "target_unknown": "the signed OTA metadata does not list it (an agent too old to go back to its built-in model"
    " also says so)",
    "install_damaged": "the installed model file was damaged",
    "not_booted": "the device did not start the new model",
    "backend_changed": "the device now runs another backend",
    "timeout": "no progress within the in-progress timeout",
    "stopped": "the rollout stopped",
    "aborted": "the rollout was aborted",
    "rolled_back": "the rollout was rolled back",
    "outside_window": "waiting for the maintenance window",
    "deferred": "the device put it off",
    # system updates (firmware.ota.system_update, firmware.ota.system_client)
    "incompatible": "the bundle is for another board",
    "compatible_mismatch": "the bundle is not for the board it was signed for",
    "version_mismatch": "the bundle is not the version it was signed as",
    "not_newer": "the bundle is older than the system the device runs",
    "not_older": "a rollback to a version that is not older",
    "below_signed_floor": "the version is below the hospital's signed floor for this board",
    "floor_unreadable": "the hospital's signed floor for this board cannot be read",
    "not_a_system_bundle": "the signed OTA metadata does not describe it as a system bundle",
    "bundle_signature_invalid": "RAUC refused the bundle's signature",
    "bundle_invalid": "RAUC cannot read the bundle",
    "install_failed": "RAUC could not install it",
    "new_slot_did_not_boot": "the new system did not boot",
    "agent_restarted": "the agent kept restarting on the new system",
    "health_check_failed": "the new system failed its health check",
    "mark_good_failed": "RAUC could not confirm the new system",
    "reboot_not_happening": "the device could not reboot",
    "running_version_unknown": "the device cannot tell which system it runs",
    "already_running": "the device already runs it",
    "system_update_in_progress": "a system update is in progress",
    "model_update_in_progress": "a model update is in progress",
    "in_progress": "the device is still on it",
}


@dataclass(frozen=True)
class DeviceFacts:
    """What the server knows of a device beside the rollout (all optional: a device may never have reported)."""

    updates: str | None = None  # wire.UpdateCapability from its latest heartbeat
    accelerator: str | None = None  # the backend it runs, from its latest heartbeat
    offline_since: float | None = None
    connected: bool = False  # holds its long poll open now: an offer reaches it within seconds
    last_update_poll: float | None = None  # when it last asked for its offer
    system_updates: bool | None = None  # whether that poll took system updates (None: not heard since the start)


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t)) + " UTC"


# Where a system update's reason reads otherwise than a model's.
SYSTEM_REASONS = {
    "self_test_failed": "the new system's agent failed its self-test",
    "health_check_failed": "the new system failed its health check",
    "agent_restarted": "the agent kept restarting on the new system",
}


def reason_text(reason: str | None, facts: DeviceFacts, detail: str | None = None, *, system: bool = False) -> str:
    """The device's reason in words (and its own words on it, ``detail``, when it gave them); ``system``: of a
    system update."""
    if reason == "no_build_for_backend":
        runs = facts.accelerator or "another backend"
        return f"this device runs {runs}; the package has no build for it"
    if reason is None:
        return "no reason given"
    text = (SYSTEM_REASONS if system else {}).get(reason) or REASONS.get(reason, reason.replace("_", " "))
    return f"{text} ({detail})" if detail else text


def built_in_version(spec: RolloutSpec, device_id: str, dev: DeviceState) -> str | None:
    """The built-in model's version when this rollout sends the device back to it (no package), else None."""
    if spec.kind == "system":
        return None
    version = spec.revert_version(device_id) if dev.reverting else spec.version
    return version if version is not None and not is_package_version(version) else None


def _offered(spec: RolloutSpec, facts: DeviceFacts, now: float) -> str:
    if spec.kind == "system" and facts.system_updates is False:
        return "cannot take system updates (its agent does not ask for them: an image without RAUC, or older)"
    if facts.updates == "no_ota_root":
        return "cannot take updates (enrolled without an OTA root)"
    if facts.updates == "not_supported":
        return "cannot take updates (its model runs in the AI Camera's sensor)"
    if facts.offline_since is not None:
        return f"offline since {_clock(facts.offline_since)}; takes the offer when it returns"
    if facts.connected:
        return "offered; the device is connected and was told (it checks within seconds)"
    if facts.last_update_poll is not None:
        left = max(0, math.ceil(facts.last_update_poll + POLL_SECONDS - now))
        return f"offered; next check within {left} s"
    return f"offered; next check within {POLL_SECONDS:.0f} s (not heard asking yet)"


def explain(spec: RolloutSpec, device_id: str, dev: DeviceState, facts: DeviceFacts, now: float) -> str:
    """One line: where the device is and what happens next (and why it put its next step off, if it did)."""
    line = _where(spec, device_id, dev, facts, now)
    builtin = built_in_version(spec, device_id, dev)
    if builtin is not None and dev.status not in ("healthy", "rolled_back"):
        line = f"back to the built-in model {builtin}: {line}"
    if dev.deferred is not None and is_open(dev) and "maintenance window" not in line:
        return f"{line}; deferred: {reason_text(dev.deferred, facts)}"
    return line


def _where(spec: RolloutSpec, device_id: str, dev: DeviceState, facts: DeviceFacts, now: float) -> str:
    status = dev.status
    if status == "pending":
        return "waiting for its group to start"
    if status == "offered":
        return _offered(spec, facts, now)
    if spec.kind == "system" and (text := _system_step(spec, dev, facts)) is not None:
        return text
    if status == "downloading":
        pct = f" ({dev.progress:.0%})" if dev.progress is not None else ""
        return f"downloading the package{pct}"
    if status == "downloaded":
        return "downloaded and verified; installing and self-testing"
    if status == "installed":
        if spec.window is not None and not dev.reverting:
            start, _ = spec.window.current_or_next(now)
            if now < start:
                return f"installed, waiting for the maintenance window ({_clock(start)})"
        return "installed, waiting for restart"
    if status == "activated":
        if dev.done is not None and dev.total:
            return f"on trial, health check {min(dev.done, dev.total)} of {dev.total} frames"
        return "on trial: restarted into the new model, health check running"
    if status == "healthy":
        if not is_package_version(spec.version):
            return f"healthy, back to the built-in model {spec.version}"
        return f"healthy on {spec.version}"
    if status == "rejected":
        return f"rejected by the device: {reason_text(dev.reason, facts)}; it still runs its previous model"
    if status == "rolled_back":
        if dev.reverting:
            if (builtin := built_in_version(spec, device_id, dev)) is not None:
                return f"rolled back to the built-in model {builtin}"
            return f"rolled back to {spec.revert_version(device_id) or 'its previous version'}"
        return f"went back to its previous model: {reason_text(dev.reason, facts)}"
    if status == "failed":
        return f"failed: {reason_text(dev.reason, facts)}"
    return f"offer withdrawn ({reason_text(dev.reason, facts)})"


def _system_step(spec: RolloutSpec, dev: DeviceState, facts: DeviceFacts) -> str | None:
    """A system update's steps, where they differ from a model's (None: as for a model)."""
    words = {
        "downloading": f"downloading the system bundle{f' ({dev.progress:.0%})' if dev.progress is not None else ''}",
        "downloaded": "downloaded and verified; installing into the inactive slot",
        "installed": "installed in the inactive slot, rebooting into it",
        "rebooting": "rebooting into the new system (booted once, kept only if healthy)",
        "activated": "on trial: booted the new system, self-test and health check running",
        "healthy": f"healthy on system {spec.version}",
        "rejected": f"rejected by the device: {reason_text(dev.reason, facts, dev.detail, system=True)}; it still"
        " runs its previous system",
    }
    if dev.status == "rolled_back" and not dev.reverting:
        return f"booted back into its previous system: {reason_text(dev.reason, facts, dev.detail, system=True)}"
    if dev.status == "failed":
        return f"failed: {reason_text(dev.reason, facts, dev.detail, system=True)}"
    return words.get(dev.status)
