"""In-process notice that events were stored: the delivery worker, the alert streams and the metrics listen.

A feature's ``setup`` adds its listener with :func:`listen`; :mod:`fleet.intake` (and the offline monitor)
call :func:`announce` after storing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from wardsight.wire import Event

log = logging.getLogger("wardsight.fleet.events")

# Called after events were stored: with the event, or None for "something changed" (e.g. several at once).
EventListener = Callable[[web.Application, Event | None], None]
LISTENERS_KEY: web.AppKey[list[EventListener]] = web.AppKey("event_listeners")


def listen(app: web.Application, listener: EventListener) -> None:
    """Add ``listener`` (a feature's ``setup`` calls this)."""
    app.setdefault(LISTENERS_KEY, []).append(listener)


def announce(app: web.Application, event: Event | None) -> None:
    """Tell the listeners; one that fails is logged and the others still hear."""
    for listener in app.get(LISTENERS_KEY, ()):
        try:
            listener(app, event)
        except Exception:
            log.exception("an event listener failed")
