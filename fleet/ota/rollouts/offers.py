"""What a device is offered now: one offer at a time, the oldest rollout with an open offer for it first.

A device that takes system updates (its poll says ``wire.SYSTEM_POLL_QUERY``) is offered its system update before
any model update: the system image carries the agent, so a model offered after it is judged (minimum agent
version, builds) by the agent that will run it, and a security update is not held behind a model. Its model
offers wait while a system offer is open for it (offered, or on its way: downloading, waiting for the window,
installing, rebooting, on trial). Any other poll is offered models only, so an agent that does not take system
updates never sees a system offer.
"""

from __future__ import annotations

from fleet.ota.rollouts import store
from fleet.ota.rollouts.decide import offer_for
from fleet.store.connection import Database
from wardsight import wire

ORDER: tuple[wire.UpdateKind, ...] = ("system", "model")  # which kind goes first when both are open


def open_offers(db: Database, device_id: str, now: float) -> dict[wire.UpdateKind, wire.UpdateOffer]:
    """The device's open offer of each kind, from the oldest rollout that has one."""
    found: dict[wire.UpdateKind, wire.UpdateOffer] = {}
    for row in store.open_for_device(db, device_id):
        spec, state = store.decode(row)
        if spec.kind not in found and (offer := offer_for(spec, state, device_id, now)) is not None:
            found[spec.kind] = offer
    return found


def offer_for_device(db: Database, device_id: str, now: float, *, system: bool = False) -> wire.UpdateOffer | None:
    """The device's one offer: its system offer first when it takes system updates (``system``), else a model's."""
    found = open_offers(db, device_id, now)
    return next((found[kind] for kind in ORDER if kind in found and (system or kind == "model")), None)


def update_hint(db: Database, device_id: str, now: float) -> str | None:
    """The key of the offers waiting for the device (for its jobs long poll), None when there is none. It names the
    open offer of each kind (the long poll does not say which kinds the device takes), so it changes when either
    does: a device is told of a new model offer even while a system offer it cannot take stays open."""
    found = open_offers(db, device_id, now)
    return ",".join(key for kind in ORDER if kind in found and (key := wire.update_hint(found[kind]))) or None
