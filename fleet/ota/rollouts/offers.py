"""What a device is offered now: the oldest rollout with an open offer for it wins."""

from __future__ import annotations

from fleet.ota.rollouts import store
from fleet.ota.rollouts.decide import offer_for
from fleet.store.connection import Database
from wardsight import wire


def offer_for_device(db: Database, device_id: str, now: float) -> wire.UpdateOffer | None:
    """The device's offer from the oldest rollout that has an open one for it."""
    for row in store.open_for_device(db, device_id):
        spec, state = store.decode(row)
        offer = offer_for(spec, state, device_id, now)
        if offer is not None:
            return offer
    return None


def update_hint(db: Database, device_id: str, now: float) -> str | None:
    """The key of the offer waiting for the device (for its jobs long poll), None when there is none."""
    return wire.update_hint(offer_for_device(db, device_id, now))
