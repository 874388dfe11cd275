"""(Being written for issue #6.)"""

from __future__ import annotations

import sqlite_utils
from aiohttp import web


def migrate(db: sqlite_utils.Database) -> None:
    """Create this module's tables if missing (idempotent)."""


def setup(app: web.Application) -> None:
    """Add this module's routes and background tasks to ``app``."""
