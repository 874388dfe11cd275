"""The app's own Prometheus registry (never the process-global one) and the counters other modules increment.

The gauges read from the database at scrape time are :mod:`fleet.health.collector`; ``GET /metrics`` is
:mod:`fleet.health.routes`.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest

from fleet.web.middleware import RejectionListener
from wardsight import wire


class Metrics:
    """The app's Prometheus registry and the counters other modules increment."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_ingested = Counter(
            "wardsight_events_ingested", "Device events stored.", ["app", "severity"], registry=r
        )
        self.requests_rejected = Counter(
            "wardsight_requests_rejected", "Requests refused with a 4xx.", ["status"], registry=r
        )
        self.heartbeats = Counter("wardsight_heartbeats", "Device heartbeats stored.", registry=r)
        self.webhook_attempts = Counter(
            "wardsight_webhook_attempts", "Webhook delivery attempts.", ["outcome"], registry=r
        )
        self.presence_transitions = Counter(
            "wardsight_presence_transitions", "Devices announced offline or back online.", ["kind"], registry=r
        )

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (version 0.0.4)."""
        return generate_latest(self.registry)

    def rejection_listener(self) -> RejectionListener:
        """Counts each refusal by its status (for :data:`fleet.web.middleware.REJECTION_LISTENERS_KEY`)."""
        return lambda status: self.requests_rejected.labels(status=str(status)).inc()


METRICS_KEY = web.AppKey("health_metrics", Metrics)


def count_event(app: web.Application, event: wire.Event | None) -> None:
    """An event listener (:func:`fleet.web.events.listen`): count each stored device event."""
    if event is not None:  # a device's event (the server's own notes are announced without one)
        app[METRICS_KEY].events_ingested.labels(app=event.app, severity=event.severity).inc()
