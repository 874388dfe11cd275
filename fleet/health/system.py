"""The system image each device runs, as its heartbeats report it, and the fleet's filter on its version.

A device's system is ``{"slot", "version", "sbom_sha256"}`` (``wardsight.wire.SystemVersion``: the slot it booted,
the image's version and the sha256 of the image's SBOM) or None (an older agent, an image without a release file, a
device never heard from). ``?system_version=`` on the device list and the fleet overview keeps the devices whose
latest heartbeat says exactly that version; it takes what a device may report (``wardsight.wire.Version``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from fleet.web.errors import RejectedError
from wardsight import wire

_VERSION: TypeAdapter[str] = TypeAdapter(wire.Version)


def is_version(text: str) -> bool:
    """Whether ``text`` is a version a device may report (``wardsight.wire.Version``)."""
    try:
        _VERSION.validate_python(text)
    except ValidationError:
        return False
    return True


def system_matches(system: dict[str, Any] | None, wanted: str | None) -> bool:
    """Whether a device whose latest reported system is ``system`` (None: not reported) passes the filter ``wanted``
    (None: no filter; else the exact version)."""
    return wanted is None or (system is not None and system.get("version") == wanted)


def query_system_version(request: web.Request) -> str | None:
    """The ``system_version`` query parameter; None when absent or empty, 400 when it cannot be a version."""
    value = request.query.get("system_version")
    if value is None or value == "":
        return None
    if not is_version(value):
        raise RejectedError(400, "system_version must be a version (letters, digits, _ . + -; at most 32)")
    return value
