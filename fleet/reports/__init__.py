"""Reports over stored events: hand-hygiene compliance, occupancy, falls; as JSON or CSV.

``GET /api/v1/reports/{kind}?from=&to=&group=room|ward|shift&format=json|csv[&room=&ward=&site=]`` (viewer;
:mod:`fleet.reports.routes`).

- ``from`` / ``to``: Unix seconds or ISO 8601 (``2026-03-01``, ``2026-03-01T07:00``; without an offset it is
  the server's local time). Default: the last 7 days up to now; at most
  :data:`~fleet.reports.routes.MAX_RANGE_DAYS` days. Events count by their ``time`` (when the device saw it;
  ``system`` events: the server's clock), in ``[from, to)``.
- Groups (:mod:`fleet.reports.grouping`): ``room`` (the event's room), ``ward`` (the device's ward; ``(none)``
  if it has none) or ``shift``: ``day`` 07-15, ``evening`` 15-23, ``night`` 23-07 (hours ``[start, end)``) in
  the **server's local time** (its ``TZ``), summed over all the days in the range. A total row ``(all)``
  follows the groups.

Kinds (the aggregation functions are pure; their rows are ``events`` rows with ``data`` decoded and the
device's ``ward``, read by :mod:`fleet.reports.store`):

- ``hygiene`` (:func:`fleet.reports.hygiene.hygiene_report`), from the hand_hygiene app's ``opportunity``
  (compliant), ``missed`` and ``unknown`` (tracking lost) events and their ``entry`` flag. ``compliance`` =
  compliant entries / (compliant + missed entries); ``exit_compliance`` likewise for exits. ``unknown``
  opportunities were not judged by the device, so they are counted but kept out of both rates (as the app's
  own ``rates()`` does).
- ``occupancy`` (:func:`fleet.reports.occupancy.occupancy_report`): each device's room count is a step
  function of its ``count_changed`` events, unknown before its first one and while the device is offline
  (from when it went silent until it is back). ``mean_occupancy`` and ``max_occupancy`` are over the observed
  time (``observed_seconds``; several devices in one group: the mean people per observed room).
  ``patient_alone_seconds``: the alone periods the occupancy app reported (``patient_alone``, which fires
  only after its configured ``patient_alone_seconds``; the whole period, from when it started, counts) until
  ``patient_attended``, a room count other than 1, or the device going offline; the server cannot see the
  person leave the bed zone while still alone in the room. Periods are followed back at most
  :data:`~fleet.reports.store.LOOKBACK_SECONDS` before ``from``. ``over_capacity_seconds``: time with the
  count above the room's ``max_people`` as the device's last ``over_capacity`` event stated it (0 for a room
  that never raised one). Plus counts of ``patient_alone``, ``over_capacity`` and ``after_hours_visitor``
  alerts.
- ``falls`` (:func:`fleet.reports.falls.falls_report`): ``fall`` and ``still_on_floor`` (fall app) and
  ``bed_exit`` counts.

CSV (:mod:`fleet.reports.render`): a header row, then one row per group and the total; cells are numbers
except the group label (empty for no value). Any text cell that starts with ``=``, ``+``, ``-``, ``@``, tab or
carriage return gets a leading ``'`` so a spreadsheet shows it rather than running it.
"""

from __future__ import annotations

from aiohttp import web

from fleet.reports import routes


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/reports/{kind}", routes.handle_report)
