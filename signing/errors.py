"""The signing tool's error."""

from __future__ import annotations

from wardsight.errors import WardSightError


class OtaCliError(WardSightError):
    """A refused or impossible OTA signing step (the message says what to do)."""
