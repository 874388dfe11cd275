"""A device's administration, each operation one transaction with its audit entry: status changes (approve,
quarantine, release, revoke) and reissuing a credential. Called by the HTTP routes and ``wardsight fleet device``."""

from __future__ import annotations

from fleet.audit import log as audit
from fleet.auth.operator import Role
from fleet.store.db import FleetDB
from fleet.store.schema import transaction

# action -> (the least role, the new status, the statuses it may come from); revoking also ends the credential
TRANSITIONS: dict[str, tuple[Role, str, tuple[str, ...]]] = {
    "approve": ("operator", "active", ("pending",)),
    "quarantine": ("operator", "quarantined", ("pending", "active")),
    "release": ("operator", "active", ("quarantined",)),
    "revoke": ("admin", "revoked", ("pending", "active", "quarantined")),
}


class NoSuchDeviceError(Exception):
    """No device has that id."""


class NotAllowedError(Exception):
    """The device's status does not allow the operation; ``str(exc)`` says why."""


def change_status(db: FleetDB, device_id: str, action: str, *, actor: str, reason: str | None, now: float) -> str:
    """Apply ``action`` (a key of :data:`TRANSITIONS`) to the device and audit it; return the new status.

    Raises :class:`NoSuchDeviceError`, or :class:`NotAllowedError` when the device is in no status it may come from.
    """
    _, status, allowed = TRANSITIONS[action]
    with transaction(db.db.conn):
        if db.get_device(device_id) is None:
            raise NoSuchDeviceError(device_id)
        if not db.set_status(device_id, status, reason=reason, by=actor, now=now, allowed_from=allowed):
            raise NotAllowedError(f"cannot {action} a device that is not {' or '.join(allowed)}")
        audit.record(
            db.db,
            actor=actor,
            action=f"device.{action}",
            target=device_id,
            details={"reason": reason, "status": status},
            now=now,
        )
    return status


def reissue_credential(db: FleetDB, device_id: str, *, actor: str, now: float) -> None:
    """Drop an active device's credential, so it may obtain a fresh one with its key (after its credential
    expired offline), and audit it. Raises :class:`NoSuchDeviceError` or :class:`NotAllowedError`."""
    with transaction(db.db.conn):
        device = db.get_device(device_id)
        if device is None:
            raise NoSuchDeviceError(device_id)
        if device["status"] != "active":
            raise NotAllowedError("only an active device can be given a new credential")
        db.set_credential(device_id, None, None)
        audit.record(db.db, actor=actor, action="device.reissue", target=device_id, now=now)
