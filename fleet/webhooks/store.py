"""Webhook endpoints and their delivery queue in the fleet database: endpoint CRUD, queueing an event's deliveries, and
the queue as operators see it (list, redeliver, depth).

When an event is stored, :func:`enqueue_for_event` queues one delivery per enabled endpoint that wants
it, in the same transaction, with its body made once (:mod:`fleet.webhooks.envelope`). Delivery is at least
once: a crash between a receiver's 2xx and recording it resends that delivery after restart, and with several
workers a worker that dies mid-attempt leaves it to another (:mod:`fleet.webhooks.claims`); receivers
deduplicate on ``webhook-id``. The worker's own reads and writes of the queue are in
:mod:`fleet.webhooks.queue`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

from fleet.store.connection import Database, is_postgres
from fleet.store.schema import transaction
from fleet.webhooks.envelope import MAX_BODY_BYTES, Format, envelope, msg_id_for
from fleet.webhooks.ssrf import check_url
from wardsight import webhooks
from wardsight.wire import App, Event, Severity

Status = Literal["pending", "delivered", "dead"]
MAX_DELIVERY_PAGE = 1000  # the most deliveries one listing returns
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a NOWAIT lock another transaction holds

ENDPOINT_COLUMNS = (
    "id, name, url, format, apps, min_severity, enabled, disabled_reason, created_at, created_by, last_attempt_at,"
    " last_success_at, last_status, last_error, consecutive_failures, delivered_count, dead_count,"
    " hmac_secret IS NOT NULL AS has_hmac"
)
DELIVERY_COLUMNS = (
    "id, endpoint_id, event_id, msg_id, attempts, next_attempt_at, status, last_status, last_error, created_at,"
    " delivered_at"
)


class EndpointError(ValueError):
    """An endpoint or delivery change that cannot be made (unknown id, wrong state)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


# ---- queueing ----------------------------------------------------------------------------------------


def _wants(endpoint: Mapping[str, Any], event: Event) -> bool:
    if event.app == "system" and event.type == "test_alert":  # commissioning tests the link, whatever the filters
        return True
    apps = json.loads(endpoint["apps"] or "[]")
    if apps and event.app not in apps:
        return False
    return SEVERITY_RANK[event.severity] >= SEVERITY_RANK[endpoint["min_severity"]]


def enqueue_for_event(db: Database, event: Event, now: float) -> int:
    """Queue one delivery of ``event`` per enabled endpoint that subscribes to it; return how many.

    Runs inside the caller's transaction (``fleet.intake.store``): it must not BEGIN or COMMIT.
    """
    conn = db.conn
    rows = conn.execute("SELECT id, format, apps, min_severity FROM webhook_endpoints WHERE enabled = 1 ORDER BY id")
    endpoints = [dict(zip(("id", "format", "apps", "min_severity"), row, strict=True)) for row in rows]
    bodies: dict[str, str] = {}
    queued = 0
    for endpoint in endpoints:
        if not _wants(endpoint, event):
            continue
        fmt = endpoint["format"]
        if fmt not in bodies:
            bodies[fmt] = envelope(event, fmt)
        body = bodies[fmt]
        status, error = "pending", None
        if len(body.encode("utf-8")) > MAX_BODY_BYTES:  # cannot happen with the closed Event schema; never send it
            status, error = "dead", f"body larger than {MAX_BODY_BYTES} bytes"
        cur = conn.execute(
            "INSERT OR IGNORE INTO webhook_deliveries (endpoint_id, event_id, msg_id, body, next_attempt_at, status,"
            " last_error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [endpoint["id"], event.event_id, msg_id_for(event.event_id), body, now, status, error, now],
        )
        queued += cur.rowcount
    return queued


# ---- endpoints ---------------------------------------------------------------------------------------


def _endpoint_view(row: Mapping[str, Any]) -> dict[str, Any]:
    view = dict(row)
    view.pop("hmac_secret", None)
    view["apps"] = json.loads(view["apps"] or "[]")
    view["enabled"] = bool(view["enabled"])
    view["has_hmac"] = bool(view["has_hmac"])
    return view


def get_endpoint(db: Database, endpoint_id: int) -> dict[str, Any] | None:
    """One endpoint without its secret (``has_hmac`` tells whether it has one), with its pending count."""
    rows = list(db.query(f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?", [endpoint_id]))  # noqa: S608
    if not rows:
        return None
    view = _endpoint_view(rows[0])
    view["pending_count"] = db.conn.execute(
        "SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = ? AND status = 'pending'", [endpoint_id]
    ).fetchone()[0]
    return view


def list_endpoints(db: Database) -> list[dict[str, Any]]:
    """All endpoints with their delivery status and pending count; never their secrets."""
    pending = dict(
        db.conn.execute(
            "SELECT endpoint_id, COUNT(*) FROM webhook_deliveries WHERE status = 'pending' GROUP BY endpoint_id"
        ).fetchall()
    )
    views = [_endpoint_view(r) for r in db.query(f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY id")]  # noqa: S608
    for view in views:
        view["pending_count"] = pending.get(view["id"], 0)
    return views


def _validate_filters(fmt: str, apps: Sequence[str], min_severity: str) -> list[str]:
    if fmt not in ("standard", "fhir"):
        raise ValueError("format must be 'standard' or 'fhir'")
    if min_severity not in SEVERITY_RANK:
        raise ValueError("min_severity must be info, warning or critical")
    known = set(get_args(App))
    unknown = [a for a in apps if a not in known]
    if unknown:
        raise ValueError(f"unknown app {unknown[0]!r}")
    return sorted(set(apps))


def create_endpoint(
    db: Database,
    *,
    name: str,
    url: str,
    format: Format,
    apps: Sequence[str],
    min_severity: Severity,
    with_hmac: bool,
    created_by: str,
    now: float,
    allow_insecure: bool,
) -> tuple[dict[str, Any], str | None]:
    """Add an endpoint; return it (without secret) and its ``whsec_`` HMAC secret, shown this once (or None).

    Only the offline URL checks run here; callers on the event loop also await
    :func:`fleet.webhooks.ssrf.check_url_resolves`.

    Raises:
        fleet.webhooks.ssrf.UrlRefusedError: the URL is refused.
        ValueError: a bad format, app or severity.
    """
    check_url(url, allow_insecure=allow_insecure)
    app_list = _validate_filters(format, apps, min_severity)
    secret = webhooks.new_hmac_secret() if with_hmac else None
    cur = db.conn.execute(
        "INSERT INTO webhook_endpoints (name, url, format, hmac_secret, apps, min_severity, enabled, created_at,"
        " created_by) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?) RETURNING id",
        [name, url, format, secret, json.dumps(app_list), min_severity, now, created_by],
    )
    endpoint = get_endpoint(db, int(cur.fetchone()[0]))
    assert endpoint is not None
    return endpoint, secret


def _filter_changes(
    current: Sequence[Any], fmt: Format | None, apps: Sequence[str] | None, min_severity: Severity | None
) -> dict[str, Any]:
    """The filter columns after a change of some of them (``current``: the stored format, apps, min_severity)."""
    app_list = _validate_filters(
        fmt or current[0],
        apps if apps is not None else json.loads(current[1]),
        min_severity or current[2],
    )
    return {"format": fmt or current[0], "apps": json.dumps(app_list), "min_severity": min_severity or current[2]}


def _enabled_changes(enabled: bool | None, disabled_reason: str | None) -> dict[str, Any]:
    """Enabling clears the reason and the failure streak; disabling records why."""
    if enabled is True:
        return {"enabled": 1, "disabled_reason": None, "consecutive_failures": 0}
    if enabled is False:
        return {"enabled": 0, "disabled_reason": disabled_reason or "disabled by an operator"}
    return {}


def update_endpoint(
    db: Database,
    endpoint_id: int,
    *,
    now: float,
    allow_insecure: bool,
    name: str | None = None,
    url: str | None = None,
    format: Format | None = None,
    apps: Sequence[str] | None = None,
    min_severity: Severity | None = None,
    enabled: bool | None = None,
    with_hmac: bool | None = None,
    disabled_reason: str | None = None,
) -> tuple[dict[str, Any], str | None]:
    """Change the fields given (None = leave as is); return the endpoint and a new ``whsec_`` secret if one was made.

    ``with_hmac=True`` makes a new secret (rotation), ``False`` removes it. Enabling clears
    ``disabled_reason`` and resets the failure streak; disabling records ``disabled_reason``. A new
    ``format`` applies to events stored from now on: queued bodies are never rebuilt.

    Raises:
        EndpointError: 404 unknown endpoint.
        UrlRefusedError, ValueError: a refused URL or bad filters.
    """
    current = db.conn.execute(
        "SELECT format, apps, min_severity FROM webhook_endpoints WHERE id = ?", [endpoint_id]
    ).fetchone()
    if current is None:
        raise EndpointError(404, f"no webhook endpoint {endpoint_id}")
    changes: dict[str, Any] = {}
    if url is not None:
        check_url(url, allow_insecure=allow_insecure)
        changes["url"] = url
    if name is not None:
        changes["name"] = name
    if format is not None or apps is not None or min_severity is not None:
        changes.update(_filter_changes(current, format, apps, min_severity))
    changes.update(_enabled_changes(enabled, disabled_reason))
    secret: str | None = None
    if with_hmac is True:
        secret = webhooks.new_hmac_secret()
        changes["hmac_secret"] = secret
    elif with_hmac is False:
        changes["hmac_secret"] = None
    if changes:
        assignments = ", ".join(f"{column} = ?" for column in changes)
        db.conn.execute(
            f"UPDATE webhook_endpoints SET {assignments} WHERE id = ?",  # noqa: S608 - our own column names
            [*changes.values(), endpoint_id],
        )
    endpoint = get_endpoint(db, endpoint_id)
    assert endpoint is not None
    return endpoint, secret


def delete_endpoint(db: Database, endpoint_id: int) -> bool:
    """Remove an endpoint and its deliveries (pending ones are never sent); False if there was none.

    On PostgreSQL a delivery being sent is locked by its worker's claim for the attempt
    (:mod:`fleet.webhooks.claims`). Deleting does not wait for it: waiting would hold the caller's connection, and
    the event loop of its server process, for up to an attempt's timeout, and for ever if the attempt is this
    process's own. It refuses instead (409; deleting again once the attempt is over succeeds).

    Raises:
        EndpointError: 409 one of the endpoint's deliveries is being sent right now (PostgreSQL).
    """
    if not is_postgres(db):
        return _delete_endpoint(db, endpoint_id)
    with transaction(db.conn):
        try:
            db.conn.execute("SELECT id FROM webhook_deliveries WHERE endpoint_id = ? FOR UPDATE NOWAIT", [endpoint_id])
        except sqlite3.DatabaseError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            raise EndpointError(
                409, f"a delivery to webhook endpoint {endpoint_id} is being sent; try again in a few seconds"
            ) from None
        return _delete_endpoint(db, endpoint_id)


def _delete_endpoint(db: Database, endpoint_id: int) -> bool:
    return db.conn.execute("DELETE FROM webhook_endpoints WHERE id = ?", [endpoint_id]).rowcount == 1


def list_deliveries(
    db: Database, endpoint_id: int, status: Status | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """An endpoint's deliveries, newest first (without bodies)."""
    if not 1 <= limit <= MAX_DELIVERY_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_DELIVERY_PAGE}")
    where, params = "endpoint_id = ?", list[Any]([endpoint_id])
    if status is not None:
        where += " AND status = ?"
        params.append(status)
    sql = f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {where} ORDER BY id DESC LIMIT ?"  # noqa: S608
    return list(db.query(sql, [*params, limit]))


def get_delivery(db: Database, delivery_id: int) -> dict[str, Any] | None:
    sql = f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?"  # noqa: S608
    rows = list(db.query(sql, [delivery_id]))
    return rows[0] if rows else None


def redeliver(db: Database, delivery_id: int, now: float) -> dict[str, Any]:
    """Put a dead delivery back in its endpoint's queue (same body and ``webhook-id``, a fresh schedule).

    It keeps its place in event order, so it goes out before the endpoint's later pending deliveries.

    Raises:
        EndpointError: 404 unknown delivery, 409 not dead.
    """
    cur = db.conn.execute(
        "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?, last_error = NULL,"
        " last_status = NULL WHERE id = ? AND status = 'dead'",
        [now, delivery_id],
    )
    if cur.rowcount != 1:
        if get_delivery(db, delivery_id) is None:
            raise EndpointError(404, f"no webhook delivery {delivery_id}")
        raise EndpointError(409, f"delivery {delivery_id} is not dead; only dead deliveries can be redelivered")
    row = get_delivery(db, delivery_id)
    assert row is not None
    return row


def queue_depth(db: Database) -> dict[str, Any]:
    """Deliveries by status, plus the ``created_at`` of the oldest pending one (None if none)."""
    counts = dict(db.conn.execute("SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status").fetchall())
    oldest = db.conn.execute("SELECT MIN(created_at) FROM webhook_deliveries WHERE status = 'pending'").fetchone()[0]
    return {
        "pending": counts.get("pending", 0),
        "delivered": counts.get("delivered", 0),
        "dead": counts.get("dead", 0),
        "oldest_pending_at": oldest,
    }
