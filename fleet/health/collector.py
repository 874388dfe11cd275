"""The fleet's gauges for ``GET /metrics``, read from the database at scrape time."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from fleet.health import store
from fleet.health.monitor import watching_since
from fleet.health.summary import fleet_summary
from fleet.store.connection import Database, table_columns
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY


class FleetCollector:
    """Gauges read from the database at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterable[Metric]:
        app = self._app
        fleet = app.get(DB_KEY)
        if fleet is None:  # not started (or already closed)
            return []
        db = fleet.db
        summary = fleet_summary(
            db,
            app[CLOCK_KEY](),
            grace_s=app[CONFIG_KEY].offline_grace_seconds,
            watch_start=watching_since(app),
        )
        devices = GaugeMetricFamily("wardsight_devices", "Enrolled devices by status.", labels=["status"])
        for status, count in sorted(summary["by_status"].items()):
            devices.add_metric([status], count)
        out: list[Metric] = [devices]
        for key, text in (
            ("online", "Active devices heard from within the grace period."),
            ("offline", "Active devices silent for longer than the grace period."),
            (
                "degraded",
                f"Online devices whose latest heartbeat shows a problem: apps below {store.MIN_APP_FPS:g} fps,"
                f" warnings, an accelerator fallback or a temperature of {store.HOT_C:g} C or more.",
            ),
        ):
            out.append(GaugeMetricFamily(f"wardsight_devices_{key}", text, value=summary[key]))
        queue = _webhook_queue(db)
        if queue is not None:
            out.append(queue)
        return out


def _webhook_queue(db: Database) -> GaugeMetricFamily | None:
    """Webhook deliveries by status (None while the webhooks' table is not there)."""
    if "status" not in table_columns(db.conn, "webhook_deliveries"):
        return None
    queue = GaugeMetricFamily(
        "wardsight_webhook_deliveries",
        "Webhook deliveries waiting (pending) or given up (dead).",
        labels=["status"],
    )
    counts = {"pending": 0, "dead": 0}
    for status, count in db.conn.execute(
        "SELECT status, COUNT(*) FROM webhook_deliveries WHERE status IN ('pending', 'dead') GROUP BY status"
    ):
        counts[str(status)] = count
    for status, count in sorted(counts.items()):
        queue.add_metric([status], count)
    return queue
