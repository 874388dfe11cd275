"""The append-only, hash-chained audit log: who changed what, when.

- :mod:`fleet.audit.log`: ``record`` (inside the caller's transaction), ``query``, ``verify`` and ``cli_actor``;
  every feature that changes something writes its entry through it.
- :mod:`fleet.audit.routes`: ``GET /api/v1/audit`` (operator) and ``GET /api/v1/audit/verify`` (admin).
"""

from __future__ import annotations

from aiohttp import web

from fleet.audit import routes


def setup(app: web.Application) -> None:
    """Add the audit log's routes to ``app``."""
    app.router.add_get("/api/v1/audit", routes.get_audit)
    app.router.add_get("/api/v1/audit/verify", routes.get_audit_verify)
