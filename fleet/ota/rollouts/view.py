"""A stored rollout as the API shows it: per-group counts and, for one rollout, each device and why it is
where it is (:func:`fleet.ota.rollouts.explain.explain`)."""

from __future__ import annotations

import json
from typing import Any

from fleet.ota.rollouts.explain import DeviceFacts, explain, reason_text
from fleet.ota.rollouts.spec import RolloutSpec
from fleet.ota.rollouts.state import (
    DeviceState,
    RolloutState,
    deadline,
    failures,
    group_counts,
    group_succeeded,
    is_open,
)
from fleet.ota.rollouts.store import decode


def _groups(spec: RolloutSpec, state: RolloutState) -> list[dict[str, Any]]:
    groups = []
    for g, members in enumerate(spec.groups):
        counts = group_counts(spec, state, g)
        groups.append(
            {
                "group": g + 1,
                "size": len(members),
                "needed": spec.needed(g),
                "started": g < state.groups_started,
                "succeeded": g < state.groups_started and group_succeeded(spec, state, g),
                "counts": {k: v for k, v in counts.items() if v},
            }
        )
    return groups


def _device(spec: RolloutSpec, device: str, dev: DeviceState, facts: DeviceFacts, at: float) -> dict[str, Any]:
    return {
        "device_id": device,
        "explain": explain(spec, device, dev, facts, at),
        "done": dev.done,
        "total": dev.total,
        "group": spec.group_of[device] + 1,
        "status": dev.status,
        "since": dev.since,
        "reason": dev.reason,
        "reason_text": reason_text(dev.reason, facts) if dev.reason else None,  # the device's reason, in words
        "detail": dev.detail,  # ... and in its own words (e.g. RAUC's message), when it gave them
        "deferred": reason_text(dev.deferred, facts) if dev.deferred and is_open(dev) else None,
        "progress": dev.progress,
        "reverting": dev.reverting,
        "version": spec.revert_version(device) if dev.reverting else spec.version,
        "last_report_at": dev.last_report_at,
        "deadline": deadline(spec, dev),
    }


def _devices(spec: RolloutSpec, state: RolloutState, facts: dict[str, DeviceFacts], at: float) -> list[dict[str, Any]]:
    return [_device(spec, device, dev, facts.get(device, DeviceFacts()), at) for device, dev in state.devices.items()]


def view(
    row: dict[str, Any],
    *,
    devices: bool = True,
    facts: dict[str, DeviceFacts] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The rollout as the API shows it, with each device and why it is where it is when ``devices``."""
    spec, state = decode(row)
    request = json.loads(row["request"])
    out: dict[str, Any] = {
        "id": row["id"],
        "kind": spec.kind,  # "system": a RAUC bundle, ``model`` its compatible
        "model": spec.model,
        "version": spec.version,
        "target": spec.target,
        "target_checked": bool(row["target_checked"]),
        "status": state.status,
        "status_since": state.since,
        "reason": state.reason,
        "current_group": None if state.current_group is None else state.current_group + 1,
        "devices_total": spec.total,
        "failures": failures(spec, state),
        "selector": request["selector"],
        "success_threshold": spec.success_threshold,
        "error_threshold": request["error_threshold"],
        "in_progress_timeout_s": spec.in_progress_timeout_s,
        "window": request["window"],
        "previous_version": spec.previous_version,
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "groups": _groups(spec, state),
    }
    if devices:
        out["devices"] = _devices(spec, state, facts or {}, row["updated_at"] if now is None else now)
    return out
