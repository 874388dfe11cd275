"""WardSight events as FHIR R4 ``Communication`` resources (category ``alert``), for webhook receivers that speak FHIR.

The resource names no patient: it is *about* the room (a ``Location`` by identifier) and *sent by* the
camera device (a ``Device`` by identifier). Both are logical references (``identifier`` only), because
the fleet server is not a FHIR server and has no resource URLs to point at.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from wardsight.wire import Event

CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/communication-category"
EVENT_SYSTEM = "urn:wardsight:event"
EVENT_TYPE_SYSTEM = "urn:wardsight:event-type"
ROOM_SYSTEM = "urn:wardsight:room"
DEVICE_SYSTEM = "urn:wardsight:device"

# FHIR R4 request-priority codes (http://hl7.org/fhir/request-priority): routine | urgent | asap | stat.
PRIORITY = {"critical": "stat", "warning": "urgent", "info": "routine"}

_EVENT_FIELDS = set(Event.model_fields)


def iso_time(t: float) -> str:
    """Unix seconds as an ISO-8601 / FHIR ``dateTime`` in UTC with milliseconds (``2027-01-15T08:00:00.000Z``)."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _as_event(event: Mapping[str, Any] | Event) -> Event:
    """An :class:`Event` from itself, its fields, or an ``events`` row (``data`` as JSON text, extra columns)."""
    if isinstance(event, Event):
        return event
    fields = {k: v for k, v in event.items() if k in _EVENT_FIELDS}
    if isinstance(fields.get("data"), str):
        fields["data"] = json.loads(fields["data"])
    return Event.model_validate(fields)


def _people(data: Mapping[str, Any]) -> str:
    count = data.get("count")
    if not isinstance(count, int) or isinstance(count, bool):
        return "an unknown number of people"
    return "1 person" if count == 1 else f"{count} people"


def sentence(event: Event) -> str:
    """A plain sentence for the people reading the alert, e.g. ``"Fall detected in room 12"``."""
    room = f"room {event.room}"
    data = event.data
    known = {
        ("fall", "fall"): f"Fall detected in {room}",
        ("fall", "still_on_floor"): f"Person still on the floor in {room}",
        ("fall", "resolved"): f"Fall alert resolved in {room}",
        ("bed_exit", "bed_exit"): f"Bed exit in {room}",
        ("hand_hygiene", "missed"): f"Hand hygiene missed in {room}",
        ("hand_hygiene", "opportunity"): f"Hand hygiene performed in {room}",
        ("mask", "no_mask"): f"Person without a mask in {room}",
        ("mask", "mask"): f"Person wearing a mask in {room}",
        ("occupancy", "count_changed"): f"{_people(data).capitalize()} now in {room}",
        ("occupancy", "over_capacity"): f"Over capacity in {room}: {_people(data)}",
        ("occupancy", "patient_alone"): f"Patient alone in {room}",
        ("occupancy", "patient_attended"): f"Patient attended in {room}",
        ("system", "test_alert"): f"WardSight test alert for {room}: no action needed",
    }
    text = known.get((event.app, event.type))
    if text is None:
        text = f"{event.app.replace('_', ' ').capitalize()} event {event.type} in {room}"
    return text


def communication(event: Mapping[str, Any] | Event, *, server_base: str | None) -> dict[str, Any]:
    """The FHIR R4 ``Communication`` announcing ``event``; ``server_base`` (the fleet's URL) goes in ``meta.source``.

    Raises:
        pydantic.ValidationError: ``event`` is a mapping that is not a valid event.
    """
    ev = _as_event(event)
    resource: dict[str, Any] = {"resourceType": "Communication", "id": ev.event_id}
    if server_base:
        resource["meta"] = {"source": server_base}
    resource.update(
        {
            "identifier": [{"system": EVENT_SYSTEM, "value": ev.event_id}],
            "status": "completed",
            "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": "alert", "display": "Alert"}]}],
            "priority": PRIORITY[ev.severity],
            "topic": {
                "coding": [{"system": EVENT_TYPE_SYSTEM, "code": f"{ev.app}.{ev.type}"}],
                "text": f"{ev.app}.{ev.type}",
            },
            "about": [
                {
                    "type": "Location",
                    "identifier": {"system": ROOM_SYSTEM, "value": ev.room},
                    "display": f"Room {ev.room}",
                }
            ],
            "sent": iso_time(ev.time),
            "sender": {
                "type": "Device",
                "identifier": {"system": DEVICE_SYSTEM, "value": ev.device_id},
                "display": f"WardSight camera {ev.device_id}",
            },
            "payload": [{"contentString": sentence(ev)}],
        }
    )
    return resource
