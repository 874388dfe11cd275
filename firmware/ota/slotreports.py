"""The part of :class:`firmware.ota.slots.SlotStore` that remembers offers that failed here and queues the update
reports the server has not acknowledged yet (both kept in the slots' ``state.json``), and the switch back to the
factory model (the agent's built-in model: an offer with ``wire.BUILTIN_TARGET``, nothing to install).

Going back to the factory model: :meth:`SlotReports.to_factory` makes the active slot the previous one and no slot
active (one atomic state write, so a kill at any moment leaves either the old model or the factory one), and
records the switch; the next start runs the factory model, :meth:`SlotReports.factory_started` queues
``activated`` on that start, and :meth:`SlotReports.confirm_factory` queues ``healthy`` once the agent runs
(see :mod:`firmware.ota.manager`: the factory model needs no trial, being the fallback every start ends at).
"""

from __future__ import annotations

import threading
import time

from firmware.ota.slotstate import (
    MAX_REJECTED,
    MAX_REPORTS,
    FactorySwitch,
    Failure,
    Rejected,
    SlotError,
    SlotRecord,
    SlotState,
    report_for,
)
from wardsight import wire


class SlotReports:
    """Rejected offers, queued reports and the switch to the factory model (mixed into ``SlotStore``)."""

    _lock: threading.RLock
    _state: SlotState

    @property
    def state(self) -> SlotState:
        raise NotImplementedError

    def _save(self, state: SlotState) -> None:
        raise NotImplementedError

    # ---- back to the factory model -----------------------------------------------------------------------

    def to_factory(self, rollout_id: str, model: str, version: str) -> None:
        """Make the next start run the factory model: the active slot becomes the previous one (kept, so a
        later offer of its version switches to it without a download), no slot is active."""
        with self._lock:
            state = self.state
            if state.trial is not None:
                raise SlotError(f"slot {state.trial.slot} is on trial")
            if state.active is not None:
                state.previous, state.active = state.active, None
            state.factory_switch = FactorySwitch(rollout_id=rollout_id, model=model, version=version)
            self._save(state)

    def factory_started(self, state: SlotState) -> None:
        """A start runs the factory model after :meth:`to_factory`: queue ``activated`` (once) into ``state``."""
        switch = state.factory_switch
        if switch is not None and not switch.started:
            switch.started = True
            self._queue(state, wire.UpdateReport(rollout_id=switch.rollout_id, model=switch.model,
                                                 version=switch.version, state="activated"))  # fmt: skip

    def confirm_factory(self) -> bool:
        """The agent runs the factory model after a switch to it: queue ``healthy``; False when none is pending."""
        with self._lock:
            state = self.state
            switch = state.factory_switch
            if switch is None:
                return False
            state.factory_switch, state.completed = None, switch.rollout_id
            self._queue(state, wire.UpdateReport(rollout_id=switch.rollout_id, model=switch.model,
                                                 version=switch.version, state="healthy"))  # fmt: skip
            self._save(state)
            return True

    # ---- offers that failed here, and reports -------------------------------------------------------------

    def reject(self, offer: wire.UpdateOffer, state_name: wire.UpdateState, reason: str) -> None:
        """Never try ``offer`` again on this device, and queue a report saying why."""
        with self._lock:
            state = self.state
            self._reject(state, offer.rollout_id, offer.version)
            state.last_failure = Failure(
                rollout_id=offer.rollout_id, model=offer.model, version=offer.version, reason=reason, at=time.time()
            )
            self._queue(state, report_for(offer, state_name, reason))
            self._save(state)

    def _reject(self, state: SlotState, rollout_id: str, version: str) -> None:
        entry = Rejected(rollout_id=rollout_id, version=version)
        if entry not in state.rejected:
            state.rejected = [*state.rejected, entry][-MAX_REJECTED:]

    def is_rejected(self, offer: wire.UpdateOffer) -> bool:
        with self._lock:
            return Rejected(rollout_id=offer.rollout_id, version=offer.version) in self._state.rejected

    def mark_completed(self, offer: wire.UpdateOffer) -> None:
        with self._lock:
            state = self.state
            state.completed = offer.rollout_id
            self._queue(state, report_for(offer, "healthy"))
            self._save(state)

    def queue(self, report: wire.UpdateReport) -> None:
        with self._lock:
            state = self.state
            self._queue(state, report)
            self._save(state)

    def _queue(self, state: SlotState, report: wire.UpdateReport) -> None:
        state.reports = [*state.reports, report][-MAX_REPORTS:]

    def pending_reports(self) -> list[wire.UpdateReport]:
        with self._lock:
            return list(self._state.reports)

    def ack(self, report: wire.UpdateReport) -> None:
        """The server has ``report``: drop it from the queue."""
        with self._lock:
            state = self.state
            if report in state.reports:
                state.reports.remove(report)
                self._save(state)

    @staticmethod
    def _report(rollout_id: str, record: SlotRecord, state: wire.UpdateState) -> wire.UpdateReport:
        return wire.UpdateReport(rollout_id=rollout_id, model=record.name, version=record.version, state=state)
