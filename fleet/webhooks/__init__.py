"""Durable webhook delivery to hospital systems (Standard Webhooks v1.0.0), with a queue in the fleet database.

- :mod:`~fleet.webhooks.ssrf`: which URLs and addresses the server may send to (checked at creation, before
  every send, and at every connection).
- :mod:`~fleet.webhooks.envelope` and :mod:`~fleet.webhooks.fhir`: the body of a delivery (standard or a FHIR
  R4 ``Communication``), made once when queued, and the headers signed for each attempt.
- :mod:`~fleet.webhooks.store`: endpoints, queueing an event's deliveries in the event's own transaction,
  listing and redelivering; :mod:`~fleet.webhooks.queue`: the worker's reads and writes of the queue.
- :mod:`~fleet.webhooks.retry`: per-endpoint FIFO, the retry schedule, dead letters, 410 (pure decisions).
- :mod:`~fleet.webhooks.worker`: the async worker that sends (one per server process);
  :mod:`~fleet.webhooks.claims`: how it holds a delivery for an attempt, so several workers on one PostgreSQL
  database never send the same delivery at once; :mod:`~fleet.webhooks.routes`: the HTTP API.
"""

from __future__ import annotations

from aiohttp import web

from fleet.web import events
from fleet.webhooks import routes
from fleet.webhooks.worker import WORKER_KEY, Worker, wake, worker_context


def setup(app: web.Application) -> None:
    """Add the webhook routes and the delivery worker (started and stopped with the app)."""
    app[WORKER_KEY] = Worker(app)
    events.listen(app, lambda app, event: wake(app))
    app.cleanup_ctx.append(worker_context)
    app.router.add_get("/api/v1/webhooks", routes.handle_list)
    app.router.add_post("/api/v1/webhooks", routes.handle_create)
    app.router.add_get("/api/v1/webhooks/public-key", routes.handle_public_key)
    app.router.add_patch(r"/api/v1/webhooks/{id:\d+}", routes.handle_update)
    app.router.add_delete(r"/api/v1/webhooks/{id:\d+}", routes.handle_delete)
    app.router.add_get(r"/api/v1/webhooks/{id:\d+}/deliveries", routes.handle_deliveries)
    app.router.add_post(r"/api/v1/webhooks/deliveries/{id:\d+}/redeliver", routes.handle_redeliver)
