"""Commissioning: is a newly installed device ready for the ward? One check per item, each ``ok``, ``failing``
or ``unknown`` with a one-line reason for the hospital's IT staff; green when all hold.

- clock synchronised (the latest heartbeat's clock skew), the camera delivering at the expected frame rate
  (the health samples' frame counters against the configured or default rate), people seen in the last
  minutes (the occupancy counts the device reports, the live view), zones and privacy regions set (as the
  device reports them, or in the configuration it applied), a test alert delivered to a webhook.
- the decisions and their thresholds: :mod:`~fleet.commissioning.checks` (pure); gathering the facts:
  :mod:`~fleet.commissioning.facts` and :mod:`~fleet.commissioning.store` (reads only: no tables of its own);
  the test alert: :mod:`~fleet.commissioning.service`.

Routes (:mod:`~fleet.commissioning.routes`):

- ``GET /api/v1/devices/{id}/commissioning`` (viewer): ``status`` (``ok`` | ``failing`` | ``unknown``),
  ``checks`` [{``id``, ``title``, ``status``, ``reason``}], ``expected_fps`` and where it came from,
  ``test_alert`` (the latest, with its deliveries by webhook name) and the ``thresholds``.
- ``POST /api/v1/devices/{id}/commissioning/test-alert`` (operator; empty body or ``{}``): stores a
  ``system`` / ``test_alert`` event (data ``test: true``) with its webhook deliveries and the audit entry
  ``device.commissioning.test_alert`` in one transaction, then wakes the delivery worker; 201
  ``{"event_id", "webhooks": <deliveries queued>, "commissioning": {...}}``. 404 unknown device, 409 revoked,
  429 within 10 s of the previous one.
"""

from __future__ import annotations

from aiohttp import web

from fleet.commissioning import routes


def setup(app: web.Application) -> None:
    """Add the commissioning routes."""
    app.router.add_get("/api/v1/devices/{id}/commissioning", routes.get_commissioning)
    app.router.add_post("/api/v1/devices/{id}/commissioning/test-alert", routes.post_test_alert)
