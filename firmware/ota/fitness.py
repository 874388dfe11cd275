"""Whether a package can serve an offer on this device: a build for its backend, the offered model and version,
a task the slots run, an agent new enough. Judged from the signed target first (nothing downloaded when it
already says no), then from the package's own manifest."""

from __future__ import annotations

from tuf.api.metadata import TargetFile

from wardsight import modelpkg, wire


def missing_build(info: TargetFile, backend: str, hardware: str | None) -> str | None:
    """Why the signed target (its ``custom`` list of builds, when it has one) has nothing for this device."""
    custom = info.unrecognized_fields.get("custom")
    builds = custom.get("builds") if isinstance(custom, dict) else None
    if not isinstance(builds, list):
        return None  # not described: the package's own manifest decides after the download
    for build in builds:
        if isinstance(build, dict) and build.get("backend") == backend and build.get("hardware") in (None, hardware):
            return None
    return backend_text(backend, hardware)


def backend_text(backend: str, hardware: str | None) -> str:
    runs = backend + (f"/{hardware}" if hardware else "")
    return f"this device runs {runs}; the package has no build for it"


def unfit(
    offer: wire.UpdateOffer, manifest: modelpkg.Manifest, backend: str, hardware: str | None, agent_version: str
) -> tuple[str, str] | None:
    """Why this package cannot serve this offer on this agent (reason code, detail), or None."""
    if manifest.name != offer.model or manifest.version != offer.version:
        return "package_mismatch", f"the package is {manifest.name} {manifest.version}"
    try:
        manifest.build_for(backend, hardware)
    except modelpkg.PackageError:
        return "no_build_for_backend", backend_text(backend, hardware)
    if manifest.task != "pose":
        return "unsupported_model", f"task {manifest.task} is not served by the model slots"
    if modelpkg.version_key(manifest.min_agent_version) > modelpkg.version_key(agent_version):
        return "agent_too_old", f"needs agent {manifest.min_agent_version}, this is {agent_version}"
    return None
