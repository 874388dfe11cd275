"""Whether a package can serve an offer on this device: a build for the backend it runs (on a Hailo, for its chip
and HailoRT version: :mod:`firmware.ota.builds`), the offered model and version, a task the slots run, an agent
new enough. Judged from the signed target first (nothing downloaded when it already says no), then from the
package's own manifest."""

from __future__ import annotations

from tuf.api.metadata import TargetFile

from firmware.ota.builds import DeviceTarget, Refused, backend_text, check_signed, choose
from wardsight import modelpkg, wire

__all__ = ["backend_text", "missing_build", "unfit"]


def missing_build(info: TargetFile, target: DeviceTarget) -> tuple[str, str] | None:
    """Why the signed target (its ``custom`` list of builds, when it has one) has nothing for this device
    (reason code, detail), or None (fit, or not described: the manifest decides after the download)."""
    custom = info.unrecognized_fields.get("custom")
    builds = custom.get("builds") if isinstance(custom, dict) else None
    if not isinstance(builds, list):
        return None
    try:
        check_signed(builds, target)
    except Refused as exc:
        return exc.code, exc.detail
    return None


def unfit(
    offer: wire.UpdateOffer, manifest: modelpkg.Manifest, target: DeviceTarget, agent_version: str
) -> tuple[str, str] | None:
    """Why this package cannot serve this offer on this agent (reason code, detail), or None."""
    if manifest.name != offer.model or manifest.version != offer.version:
        return "package_mismatch", f"the package is {manifest.name} {manifest.version}"
    try:
        choose(manifest.builds, target)
    except Refused as exc:
        return exc.code, exc.detail
    if manifest.task != "pose":
        return "unsupported_model", f"task {manifest.task} is not served by the model slots"
    if modelpkg.version_key(manifest.min_agent_version) > modelpkg.version_key(agent_version):
        return "agent_too_old", f"needs agent {manifest.min_agent_version}, this is {agent_version}"
    return None
