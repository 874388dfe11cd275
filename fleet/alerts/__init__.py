"""Alerts for the console: list, acknowledge, resolve, and a live Server-Sent Events stream.

An **alert** is a stored event with severity ``warning`` or ``critical`` (the server's own ``system`` /
``device_offline`` announcements are warnings, so they are alerts too). Its state is ``open`` until an
operator acknowledges it (``acknowledged``) or resolves it (``resolved``); ``open -> acknowledged ->
resolved`` and ``open -> resolved`` are the only transitions (anything else is a 409). Each change is
written with its audit entry in one transaction.

**Grouped** (:mod:`fleet.alerts.incidents`, :mod:`fleet.alerts.grouping`): a room's repeated ``critical`` events of
one app are one alert, the first event, with ``count`` and its latest event, instead of a row each. A critical event
joins the alert of the same person (device and track) whose incident goes on, whatever its state; otherwise the
room's newest alert of that app nobody has acknowledged yet; otherwise it opens a new alert (a new fall after an
acknowledgement is seen again). Acknowledging or resolving any event of a group acts on the group. Webhooks are
not grouped: every event is still delivered on its own, as before.

**Ended by the device**: the fall app's ``resolved`` (``data.got_up``: true, got up; false, someone was beside them)
ends the incident of that device's ``fall`` and ``still_on_floor`` events in that room with that ``track_id``; an
alert all of whose events have ended is resolved by ``system`` (note and audit ``reason``: ``got up`` or
``attended``), in the transaction that stores the event.

Routes (``viewer`` reads, ``operator`` changes; :mod:`fleet.alerts.routes`):

- ``GET /api/v1/alerts?room=&ward=&site=&state=open|acknowledged|resolved&since=&before=&limit=``: newest
  first (by arrival; ``since`` is the server's ``received_at``), each with ``state``, who acknowledged or
  resolved it and when, and ``note``, the device's name (``device_name``) and the group: ``count`` (1 when not
  grouped), ``last_seen_at`` (server time), ``last_type`` and ``last_event_id`` of its latest event; ``since``
  and the order are by the alert's first event; ``next_before`` pages back, ``stream_after`` starts a stream that
  misses nothing after this list. ``GET /api/v1/rooms/{room}/alerts`` is the same for one room.
- ``POST /api/v1/alerts/{event_id}/acknowledge`` and ``/resolve``, optional JSON ``{"note": "..."}``
  (at most 500 characters, no control characters): ``{"alert": {...}}``; 404 unknown, 409 wrong state.
- ``GET /api/v1/alerts/stream?room=&ward=&site=&after=``: the stream described below.

Storage (:mod:`fleet.alerts.store`; the tables are created by migration
:mod:`fleet.store.migrations.m0008_alerts`):

- ``alert_states``: one row per alert that has been acknowledged or resolved (no row: open).
- ``alert_groups`` / ``alert_members`` (migration :mod:`fleet.store.migrations.m0014_alert_groups`): each
  grouped alert with its count and latest event; each of its events and when its incident ended.
- ``alert_feed``: the ordered feed the stream replays, ``seq`` (AUTOINCREMENT, never reused) per row.
  A trigger on ``events`` appends a row for every newly stored alert in the same transaction as the
  insert, whoever stores it (device API, offline monitor, CLI, another process); acknowledging and
  resolving append theirs. So the feed is complete even if nobody calls :func:`~fleet.alerts.streams.notify`.

The stream (``GET /api/v1/alerts/stream``; :mod:`fleet.alerts.streams`) sends each feed row as one unnamed
SSE message whose ``id`` is the feed ``seq`` and whose ``data`` is JSON: ``{"kind": "ready", "cursor": N}``
first, then ``{"kind": "alert" | "acknowledged" | "resolved", "seq": N, "alert": {...}}``, and ``{"kind":
"grouped", "seq": N, "alert": {...}, "event_id": ...}`` when an event joined an alert (``alert`` is the group, as it
is when read). A reconnecting
``EventSource`` sends ``Last-Event-ID`` and gets everything after it; a first connection may pass
``?after=N`` (the ``stream_after`` of ``GET /api/v1/alerts``) so nothing between the list and the stream is
lost; without either it starts from now. Comments (``: keepalive``) go out every
:data:`~fleet.alerts.streams.HEARTBEAT_SECONDS`. A stream waits on a wake-up, not on a timer:
:func:`~fleet.alerts.streams.notify` (an event listener, see :mod:`fleet.web.events`) wakes every stream,
which then reads the feed after its last id (so a missed or early notify loses nothing; each heartbeat
reads it too, which bounds the delay for events stored by another process). Each heartbeat also checks that
the caller's session or API token is still valid; if not, it sends ``{"kind": "closed", "reason": ...}`` and ends.

Streams are capped (:meth:`~fleet.alerts.streams.Broker.admit`, the ``alert_streams_*`` settings): a few per session
or API token and per account (429 with ``code`` ``alert_streams_per_token`` / ``alert_streams_per_account``), and a
server-wide number of which a reserve only admins may use (503 ``alert_streams_full``). A stream's slot is freed as
soon as its client's socket closes.
"""

from __future__ import annotations

from aiohttp import web

from fleet.alerts import routes, streams
from fleet.web import events


def setup(app: web.Application) -> None:
    """Add the alert routes and the streams' wake-up (streams end when the app shuts down)."""
    app[streams.BROKER_KEY] = streams.Broker()
    events.listen(app, streams.notify)
    app.on_shutdown.append(streams.close_streams)
    app.router.add_get("/api/v1/alerts", routes.handle_list)
    app.router.add_get("/api/v1/alerts/stream", routes.handle_stream)
    app.router.add_post("/api/v1/alerts/{event_id}/acknowledge", routes.handle_acknowledge)
    app.router.add_post("/api/v1/alerts/{event_id}/resolve", routes.handle_resolve)
    app.router.add_get("/api/v1/rooms/{room}/alerts", routes.handle_room)
