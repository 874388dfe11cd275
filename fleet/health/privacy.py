"""Devices' privacy modes as their heartbeats report them, and the fleet's filter on them (pure).

- ``sensor-only``: the Raspberry Pi AI Camera runs the network inside the sensor; no image reaches the host, the
  agent reads only metadata.
- ``blackout-at-capture``: frames reach the agent process; privacy regions are zeroed in the frame buffer before
  any other code sees it.
- ``unknown`` (a filter value, never stored): a device not heard from yet, or an older agent that does not say.
"""

from __future__ import annotations

from typing import get_args

from wardsight import wire

PRIVACY_MODES: tuple[str, ...] = get_args(wire.PrivacyMode)
UNKNOWN = "unknown"
PRIVACY_FILTERS: tuple[str, ...] = (*PRIVACY_MODES, UNKNOWN)  # what ``?privacy_mode=`` accepts


def privacy_matches(mode: str | None, wanted: str | None) -> bool:
    """Whether a device whose latest reported mode is ``mode`` (None: not reported) passes the filter ``wanted``
    (None: no filter; ``unknown``: devices that did not report one)."""
    if wanted is None:
        return True
    if wanted == UNKNOWN:
        return mode not in PRIVACY_MODES
    return mode == wanted
