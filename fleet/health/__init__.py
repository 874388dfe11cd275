"""Device health: heartbeats, offline detection and Prometheus metrics.

- :mod:`~fleet.health.store`: the health tables (latest heartbeat, samples for charts, presence).
- :mod:`~fleet.health.presence`: which devices went offline or came back (pure decisions).
- :mod:`~fleet.health.monitor`: the offline monitor, announcing each transition as a ``system`` event.
- :mod:`~fleet.health.summary`: the fleet at a glance (by status; online, offline, degraded).
- :mod:`~fleet.health.heartbeats`: what the device heartbeat route calls (store and count).
- :mod:`~fleet.health.metrics`, :mod:`~fleet.health.collector`, :mod:`~fleet.health.routes`: the app's own
  Prometheus registry, its gauges read at scrape time, and ``GET /metrics`` (``viewer`` role).
"""

from __future__ import annotations

from aiohttp import web

from fleet.health import monitor, routes
from fleet.health.collector import FleetCollector
from fleet.health.metrics import METRICS_KEY, Metrics, count_event
from fleet.web import events
from fleet.web.middleware import REJECTION_LISTENERS_KEY


def setup(app: web.Application) -> None:
    """Add the metrics registry, ``GET /metrics`` and the offline monitor to ``app``."""
    metrics = Metrics()
    metrics.registry.register(FleetCollector(app))
    app[METRICS_KEY] = metrics
    app[REJECTION_LISTENERS_KEY].append(metrics.rejection_listener())
    events.listen(app, count_event)
    app[monitor.MONITOR_KEY] = monitor.MonitorState()
    app.cleanup_ctx.append(monitor.note_watch_start)
    app.cleanup_ctx.append(monitor.run_monitor)
    app.router.add_get("/metrics", routes.metrics_endpoint)
