"""The provisioning tool's error."""

from __future__ import annotations

from wardsight.errors import WardSightError


class ProvisionError(WardSightError):
    """A refused or impossible provisioning step (the message says what to do)."""
