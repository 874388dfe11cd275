"""Sending a device's test alert: one transaction that stores the server-made event through
:func:`fleet.intake.store` (so its webhook deliveries are queued with it) and its audit entry.

The event is ``system`` / ``test_alert``, severity ``info``, data ``{"test": true}``, in the device's room; a
webhook receives it as ``"type": "wardsight.system.test_alert"`` (FHIR: topic ``system.test_alert``, priority
``routine``), so a nurse-call system can tell it from a real alert by the type or by ``data.test`` and drop it.
At ``info`` it is no alert in the console (nobody on the ward is called by it). Endpoints whose filters leave
out ``system`` events or ``info`` do not get it; the check says so.
"""

from __future__ import annotations

from pydantic import ValidationError

from fleet import intake
from fleet.audit import log as audit
from fleet.commissioning import store
from fleet.store.db import FleetDB
from fleet.store.schema import transaction
from wardsight import wire

MIN_INTERVAL_S = 10.0  # between two test alerts of one device: a double click sends one


class NoSuchDeviceError(Exception):
    """No device has that id."""


class NotAllowedError(Exception):
    """The test alert cannot be sent for this device; ``str(exc)`` says why."""


class TooSoonError(NotAllowedError):
    """The device's previous test alert was sent less than :data:`MIN_INTERVAL_S` ago."""


def _test_event(device: dict[str, object], now: float) -> wire.Event:
    try:
        return wire.Event(
            event_id=wire.new_event_id(),
            device_id=str(device["id"]),
            room=str(device["room"]),
            app=store.TEST_APP,
            type=store.TEST_TYPE,
            severity="info",
            time=now,
            data={"test": True},
        )
    except ValidationError:
        raise NotAllowedError(f"the device's room {device['room']!r} cannot be named in an event") from None


def send_test_alert(db: FleetDB, device_id: str, *, actor: str, now: float) -> tuple[wire.Event, int]:
    """Store a test alert for ``device_id`` with its deliveries and audit it; return it and how many webhooks
    it was queued for. Raises :class:`NoSuchDeviceError`, or :class:`NotAllowedError` for a revoked device or
    within :data:`MIN_INTERVAL_S` of the device's previous test alert. The caller announces the event."""
    with transaction(db.db.conn) as conn:
        device = db.get_device(device_id)
        if device is None:
            raise NoSuchDeviceError(device_id)
        if device.get("status") == "revoked":
            raise NotAllowedError("the device is revoked")
        previous = store.latest_test_alert(db.db, device_id)
        if previous is not None and 0 <= now - previous[1] < MIN_INTERVAL_S:
            raise TooSoonError(f"a test alert was sent {now - previous[1]:.0f} s ago; wait {MIN_INTERVAL_S:g} s")
        event = _test_event(device, now)
        intake.store(db, event, now)
        queued = conn.execute("SELECT COUNT(*) FROM webhook_deliveries WHERE event_id = ?", [event.event_id])
        count = int(queued.fetchone()[0])
        audit.record(
            db.db,
            actor=actor,
            action="device.commissioning.test_alert",
            target=device_id,
            details={"event_id": event.event_id, "webhooks": count},
            now=now,
        )
    return event, count
