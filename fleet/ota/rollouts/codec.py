"""A rollout's spec and state as JSON-ready dicts (how the server stores them) and back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet.ota.rollouts.spec import ErrorThreshold, RolloutSpec, Window
from fleet.ota.rollouts.state import DeviceState, RolloutState


def spec_to_dict(spec: RolloutSpec) -> dict[str, Any]:
    return {
        "rollout_id": spec.rollout_id,
        "kind": spec.kind,
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
        kind=data.get("kind", "model"),  # rollouts stored before system updates are model rollouts
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


_DEVICE_FIELDS = ("status", "since", "reached", "reason", "progress", "reverting", "last_report_at", "done", "total",
                  "deferred", "detail")  # fmt: skip


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
