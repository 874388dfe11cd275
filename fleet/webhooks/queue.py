"""The delivery queue as the worker reads and writes it: the head of every endpoint, claiming a head (PostgreSQL,
:mod:`fleet.webhooks.claims`), the target of an attempt, and an attempt's result (run inside the caller's
transaction: these never BEGIN or COMMIT)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet.store.connection import Database
from fleet.webhooks.retry import Failure, Outcome


def heads(db: Database) -> list[dict[str, Any]]:
    """The oldest pending delivery of every enabled endpoint."""
    return list(
        db.query(
            "SELECT d.id, d.endpoint_id, d.attempts, d.next_attempt_at FROM webhook_deliveries d"
            " JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE e.enabled = 1 AND d.id IN"
            " (SELECT MIN(id) FROM webhook_deliveries WHERE status = 'pending' GROUP BY endpoint_id)"
        )
    )


def head(db: Database, endpoint_id: int) -> dict[str, Any] | None:
    """The oldest pending delivery of ``endpoint_id`` (all columns, the body too) if the endpoint is enabled."""
    rows = list(
        db.query(
            "SELECT d.* FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id"
            " WHERE d.endpoint_id = ? AND d.status = 'pending' AND e.enabled = 1 ORDER BY d.id LIMIT 1",
            [endpoint_id],
        )
    )
    return rows[0] if rows else None


def head_id(db: Database, endpoint_id: int) -> int | None:
    """The id of ``endpoint_id``'s head (its oldest pending delivery) if the endpoint is enabled; None if none."""
    row = db.execute(
        "SELECT MIN(d.id) FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id"
        " WHERE d.endpoint_id = ? AND d.status = 'pending' AND e.enabled = 1",
        [endpoint_id],
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def lock_pending(db: Database, delivery_id: int) -> dict[str, Any] | None:
    """PostgreSQL, inside a transaction: lock the pending delivery ``delivery_id`` (all columns, the body too) until
    the transaction ends; None if another transaction holds it (``SKIP LOCKED``: never waits) or it is not pending.

    One row by id, never "the first pending one not locked": skipping a locked head to the next delivery would
    send an endpoint's deliveries out of order.
    """
    rows = list(
        db.query(
            "SELECT * FROM webhook_deliveries WHERE id = ? AND status = 'pending' FOR UPDATE SKIP LOCKED",
            [delivery_id],
        )
    )
    return rows[0] if rows else None


def target(db: Database, endpoint_id: int) -> tuple[int, str, str, str | None] | None:
    """``(id, name, url, hmac_secret)`` of an enabled endpoint; None if it is gone or disabled."""
    row = db.execute(
        "SELECT id, name, url, hmac_secret, enabled FROM webhook_endpoints WHERE id = ?", [endpoint_id]
    ).fetchone()
    if row is None or not row[4]:
        return None
    return row[0], row[1], row[2], row[3]


def record_success(
    db: Database, endpoint_id: int, delivery_id: int, attempts: int, outcome: Outcome, now: float
) -> None:
    """Mark a delivery delivered and the endpoint's streak of failures over."""
    db.conn.execute(
        "UPDATE webhook_deliveries SET status = 'delivered', attempts = ?, last_status = ?,"
        " last_error = NULL, delivered_at = ? WHERE id = ?",
        [attempts, outcome.status, now, delivery_id],
    )
    db.conn.execute(
        "UPDATE webhook_endpoints SET last_attempt_at = ?, last_success_at = ?, last_status = ?,"
        " last_error = NULL, consecutive_failures = 0, delivered_count = delivered_count + 1 WHERE id = ?",
        [now, now, outcome.status, endpoint_id],
    )


def record_failure(
    db: Database,
    endpoint_id: int,
    delivery: Mapping[str, Any],
    attempts: int,
    outcome: Outcome,
    failure: Failure,
    now: float,
) -> None:
    """Store a failed attempt as :func:`fleet.webhooks.retry.after_failure` decided (410: disable the endpoint)."""
    conn = db.conn
    conn.execute(
        "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_status = ?,"
        " last_error = ? WHERE id = ?",
        [failure.status, attempts, failure.next_at, outcome.status, failure.error, delivery["id"]],
    )
    conn.execute(
        "UPDATE webhook_endpoints SET last_attempt_at = ?, last_status = ?, last_error = ?,"
        " consecutive_failures = consecutive_failures + 1, dead_count = dead_count + ? WHERE id = ?",
        [now, outcome.status, failure.error, int(failure.dead), endpoint_id],
    )
    if failure.disable:
        conn.execute(
            "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = ? WHERE id = ?",
            ["the receiver answered 410 Gone", endpoint_id],
        )
