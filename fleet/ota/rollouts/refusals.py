"""Why a rollout cannot be created for a version, in words that say what to do instead (pure: no I/O).

Devices report the versions they run in their heartbeats, and not every one is a model package: the model
built into the agent (e.g. ``lightning-fp16-1``, as devices on it report) has none. A rollout to a package
version (dotted numbers, ``wardsight.modelpkg.VERSION``) needs signed targets metadata to list it (a *staged*
one, uploaded but not signed, needs the offline signature first); a rollout, or a roll back, to any other
version sends devices back to their built-in model (``wardsight.wire.BUILTIN_TARGET``: nothing to fetch).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from wardsight import wire


def is_package_version(version: str) -> bool:
    """Whether ``version`` can name a model package (and so a TUF target a device can fetch); any other version
    is the model built into the agent."""
    return wire.is_package_version(version)


def not_a_version(model: str, version: str, built_in: Collection[str]) -> str | None:
    """Why a rollout cannot send devices to ``version``, or None: a package version, or one of ``built_in`` (the
    versions that are not packages' which devices report running: their built-in model)."""
    if is_package_version(version) or version in built_in:
        return None
    known = f"devices report {', '.join(sorted(built_in))}" if built_in else "no device reports one"
    return (
        f"version '{version}' of {model} is neither a model package version (packages are numbered like 1.0 or"
        f" 2.1) nor the model built into the agent ({known}); choose a version from the model library"
    )


def signing_command(model: str, version: str) -> str:
    """The command that signs and publishes a staged version (``wardsight ota publish``; its real flags)."""
    return (
        f"wardsight ota publish <the {model} {version} .wsm file> --keys <the offline keys directory>"
        " --server <this server's URL> --ca <the fleet CA file>"
    )


def not_published(
    model: str, version: str, target: str, row: Mapping[str, Any] | None, kind: wire.UpdateKind = "model"
) -> str:
    """Why the library cannot offer ``model`` ``version`` to devices: not there, staged or withdrawn (``row``: its
    library entry, ``fleet.ota.library.store.find``, or for a system bundle ``fleet.ota.library.bundles.find_bundle``;
    ``model`` is then the RAUC compatible)."""
    what = f"system {version} for {model}" if kind == "system" else f"{model} {version}"
    command = signing_command(model, version) if kind == "model" else system_signing_command(model, version)
    if row is None:
        return f"the {'system bundle' if kind == 'system' else 'model'} library has no {what} ({target})"
    if row["published_at"] is not None:
        return (
            f"{what} was withdrawn (signed targets metadata no longer lists it): devices will not"
            f" install it; publish it again with: {command}"
        )
    return (
        f"{what} is staged: uploaded but not signed, and devices install only signed versions."
        f" It needs signing first, on the offline signing machine: {command}"
    )


def system_signing_command(compatible: str, version: str) -> str:
    """The command that signs and publishes a RAUC bundle (``wardsight ota publish-system``; its real flags)."""
    return (
        f"wardsight ota publish-system <the {compatible} {version} .raucb file> --keys <the offline keys directory>"
        " --server <this server's URL> --ca <the fleet CA file>"
    )
