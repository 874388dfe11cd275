"""Why a rollout cannot be created for a version, or rolled back to one, in words that say what to do instead
(pure: no I/O).

Devices report the versions they run in their heartbeats, and not every one is a model package: the model
built into the agent (``accelerators.catalog``, e.g. ``lightning-fp16-1``) has none. A rollout installs a
package from the library, so its version must be one (dotted numbers, ``wardsight.modelpkg.VERSION``) that
signed targets metadata lists; a *staged* one (uploaded, not yet signed) needs the offline signature first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from wardsight import modelpkg


def is_package_version(version: str) -> bool:
    """Whether ``version`` can name a model package (and so a TUF target a device can fetch)."""
    return re.fullmatch(modelpkg.VERSION, version) is not None


def signing_command(model: str, version: str) -> str:
    """The command that signs and publishes a staged version (``wardsight ota publish``; its real flags)."""
    return (
        f"wardsight ota publish <the {model} {version} .wsm file> --keys <the offline keys directory>"
        " --server <this server's URL> --ca <the fleet CA file>"
    )


def not_a_package(model: str, version: str) -> str:
    return (
        f"version '{version}' of {model} is not a model package version (packages are numbered like 1.0 or 2.1):"
        " it may be the model built into the agent, which a rollout cannot install; choose a version from the"
        " model library"
    )


def not_published(model: str, version: str, target: str, row: Mapping[str, Any] | None) -> str:
    """Why the library cannot offer ``model`` ``version`` to devices: not there, staged or withdrawn (``row``: its
    library entry, ``fleet.ota.library.store.find``)."""
    if row is None:
        return f"the model library has no {model} {version} ({target})"
    if row["published_at"] is not None:
        return (
            f"{model} {version} was withdrawn (signed targets metadata no longer lists it): devices will not"
            f" install it; publish it again with: {signing_command(model, version)}"
        )
    return (
        f"{model} {version} is staged: uploaded but not signed, and devices install only signed versions."
        f" It needs signing first, on the offline signing machine: {signing_command(model, version)}"
    )


def cannot_revert(model: str, devices: list[str], version: str) -> str:
    """Why a rollback cannot send ``devices`` back to ``version`` (not a package: the agent's built-in model)."""
    return (
        f"{len(devices)} device(s) (e.g. {devices[0]}) would go back to {model} {version}, which is not a model"
        " package (the model built into the agent): this agent cannot be sent back to it over the air; publish"
        " the earlier model as a package and roll that out, or abort this rollout"
    )
