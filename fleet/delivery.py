"""Webhook delivery to hospital systems. (Being written: see issue #5.)"""

from __future__ import annotations

import sqlite_utils
from aiohttp import web

from wardsight.wire import Event


def migrate(db: sqlite_utils.Database) -> None:
    """Create this module's tables if missing (idempotent)."""


def setup(app: web.Application) -> None:
    """Add this module's routes and background tasks to ``app``."""


def enqueue_for_event(db: sqlite_utils.Database, event: Event, now: float) -> int:
    """Queue one delivery of ``event`` per enabled endpoint that subscribes to it; return how many.

    Runs inside the caller's transaction (``FleetDB.store_event``): it must not BEGIN or COMMIT.
    """
    return 0


def wake(app: web.Application) -> None:
    """Tell the delivery worker new deliveries are due (cheap; safe to call from request handlers)."""
