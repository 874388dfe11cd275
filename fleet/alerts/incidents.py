"""Incidents, as pure decisions: which events are grouped into one alert, which event ends an incident, and which
open alert a new critical event joins.

- **Grouped**: every ``critical`` event from a device's app (not the server's own ``system`` notes). A room's
  repeated critical alerts of one app become one alert with a count and the latest event, instead of a row each
  (a looping fall clip raised 36 in ten minutes for one room).
- **Which alert it joins** (:func:`group_for`, the room's unresolved alerts of that app, newest first): the alert
  of the same person (same device and track, whose incident has not ended), whatever its state (``still_on_floor``
  after the fall was acknowledged is the same incident); otherwise the newest alert still **open** (nobody has
  acknowledged it yet: it is already in front of everyone); otherwise none, and a new alert opens (a second fall
  after someone acknowledged the first must be seen again).
- **Ended** (:data:`ENDING`): the fall app's ``resolved`` (the person got up, or someone was beside them) ends the
  incident of that device's ``fall`` and ``still_on_floor`` events in that room for that track. An alert is
  resolved by the system once every event in it has ended (another person may still be down).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wardsight import wire

SYSTEM_ACTOR = "system"

# (app, type) of an event that ends an incident -> the types of that app's events whose incident it ends.
ENDING: dict[tuple[str, str], frozenset[str]] = {("fall", "resolved"): frozenset({"fall", "still_on_floor"})}


def is_grouped(event: wire.Event) -> bool:
    """Whether ``event`` belongs to a grouped alert (a device app's critical event)."""
    return event.severity == "critical" and event.app != "system"


def ended_types(event: wire.Event) -> frozenset[str] | None:
    """The types of ``event.app``'s events whose incident ``event`` ends (None: it ends nothing)."""
    return ENDING.get((event.app, event.type))


def end_reason(event: wire.Event) -> str:
    """Why the incident ended, in the words the console and the audit log show."""
    got_up = event.data.get("got_up")
    if got_up is True:
        return "got up"
    if got_up is False:
        return "attended"
    return "ended"


@dataclass(frozen=True)
class OpenGroup:
    """A room's unresolved grouped alert: its first event, whether someone acknowledged it, and the (device, track)
    of its events whose incident has not ended."""

    head_id: str
    acknowledged: bool
    people: frozenset[tuple[str, int]]


def group_for(event: wire.Event, groups: Sequence[OpenGroup]) -> str | None:
    """The alert (``head_id``) that ``event`` joins, of its room's unresolved alerts of its app (newest first);
    None: it opens a new one."""
    if event.track_id is not None:
        person = (event.device_id, event.track_id)
        for group in groups:
            if person in group.people:
                return group.head_id
    for group in groups:
        if not group.acknowledged:
            return group.head_id
    return None
