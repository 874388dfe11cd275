"""Where every event enters the fleet: a device's signed event or the server's own note about a device.

:func:`store` keeps the event once and queues its webhook deliveries in one transaction (an event is never
stored without its deliveries, nor queued twice), in which the alerts also take it in (a critical event joins its
room's open alert; the end of an incident resolves its alerts: :mod:`fleet.alerts.grouping`); :func:`announce`
then tells whoever listens in this process (the delivery worker, the alert streams, the metrics), each feature
having added its listener in ``setup`` through :mod:`fleet.web.events`. :func:`accept` does both. The device
events route calls :func:`store` inside its request's transaction (:func:`fleet.auth.device_requests.authenticated`:
the proof's id, the sign of life and the event in one commit) and :func:`announce` once that is committed.
"""

from __future__ import annotations

from aiohttp import web

from fleet.alerts import grouping
from fleet.store.db import FleetDB
from fleet.store.schema import transaction
from fleet.web import events
from fleet.webhooks.store import enqueue_for_event
from wardsight.wire import Event


def store(fleet: FleetDB, event: Event, received_at: float) -> bool:
    """Store ``event``, queue its deliveries and update the alerts it groups into or ends, atomically; False
    (nothing queued or changed) if its id was stored before."""
    with transaction(fleet.db.conn):
        stored = fleet.insert_event(event, received_at)
        if stored:
            enqueue_for_event(fleet.db, event, received_at)
            grouping.on_stored(fleet.db, event, received_at)
    return stored


def announce(app: web.Application, event: Event) -> None:
    """Tell the app's listeners about ``event``, once it is stored and committed."""
    events.announce(app, event)


def accept(app: web.Application, fleet: FleetDB, event: Event, received_at: float) -> bool:
    """:func:`store` the event and, if it is new, announce it to the app's listeners."""
    stored = store(fleet, event, received_at)
    if stored:
        announce(app, event)
    return stored
