"""Durable webhook delivery to hospital systems (Standard Webhooks v1.0.0), with a queue in SQLite.

When an event is stored, :func:`enqueue_for_event` queues one delivery per enabled endpoint that wants
it, in the same transaction. Its body (``{"type", "timestamp", "data"}``, ``data`` the event's fields or a
FHIR R4 ``Communication``) is serialized once, there, and every attempt sends exactly those bytes with the
same ``webhook-id``; only ``webhook-timestamp`` and the signatures are made per attempt (``v1a`` with the
server's Ed25519 key always, ``v1`` too when the endpoint has an HMAC secret).

Ordering: per-endpoint FIFO. Only the oldest pending delivery of an endpoint (its *head*) is ever sent or
retried; later ones wait behind it until it is delivered or dead. So a receiver sees an endpoint's events
in the order the server stored them, and a nurse-call system never gets "resolved" before "fall".

Retries: the first attempt is ``webhook_retry_schedule[0]`` after queueing; after the n-th failure the next
one is ``schedule[n]`` later (each delay ±10 % jitter, or the receiver's ``Retry-After`` on 429/502/503/504 if
longer). After ``len(schedule)`` failed attempts the delivery is dead (kept, visible, re-deliverable). A
delivery that reached the head only after waiting longer than the whole schedule (behind a dead receiver)
gets one attempt, so a long outage's backlog drains instead of restarting the schedule for every event.
Success is 2xx only; redirects are not followed and count as failures; 410 disables the endpoint (its
queue is kept and resumes, in order, when an admin enables it again).

Delivery is at least once: a crash between a receiver's 2xx and recording it resends that delivery after
restart; receivers deduplicate on ``webhook-id``.

SSRF guard: targets must be ``https://`` (``http://`` and loopback only with ``webhook_allow_insecure``),
without credentials in the URL, and never link-local or cloud-metadata addresses. The URL is checked when
an endpoint is created or changed (including a DNS lookup) and before every send, and every address the
client actually connects to is checked again when its socket is made, so a DNS answer that changes later
cannot redirect a delivery. Private (RFC 1918) addresses are allowed: hospital systems live there.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import ipaddress
import json
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

import aiohttp
import sqlite_utils
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from yarl import URL

from fleet import audit, fhir
from fleet.auth.operator import require
from fleet.store.schema import transaction
from fleet.web import events
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY, KEYS_KEY
from fleet.web.body import read_json
from fleet.web.errors import RejectedError
from wardsight import webhooks
from wardsight.wire import App, Event, Severity

log = logging.getLogger("wardsight.fleet.delivery")

Format = Literal["standard", "fhir"]
Status = Literal["pending", "delivered", "dead"]
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
MAX_BODY_BYTES = 20_000  # Standard Webhooks: keep payloads small
MAX_URL_LENGTH = 2048
MAX_RETRY_AFTER = 24 * 3600.0
JITTER = 0.1
MAX_CONCURRENT_ENDPOINTS = 4
POLL_SECONDS = 5.0  # the worker looks at the queue at least this often, whatever it was told
MIN_BACKLOG_WAIT = 60.0  # see _failed(): a head that waited longer than max(schedule span, this) gets one try
USER_AGENT = "WardSight-Webhooks/1"
THROTTLE_STATUSES = frozenset({429, 502, 503, 504})

# Cloud metadata services; the IPv4 ones are link-local or shared space, the AWS IPv6 one is a ULA.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data"})

RNG_KEY = web.AppKey("delivery_rng", random.Random)  # optional: a seeded RNG for the jitter (tests)


ENDPOINT_COLUMNS = (
    "id, name, url, format, apps, min_severity, enabled, disabled_reason, created_at, created_by, last_attempt_at,"
    " last_success_at, last_status, last_error, consecutive_failures, delivered_count, dead_count,"
    " hmac_secret IS NOT NULL AS has_hmac"
)
DELIVERY_COLUMNS = (
    "id, endpoint_id, event_id, msg_id, attempts, next_attempt_at, status, last_status, last_error, created_at,"
    " delivered_at"
)


class UrlRefusedError(ValueError):
    """A webhook URL the server will not send to (scheme, credentials, or a forbidden address)."""


class EndpointError(ValueError):
    """An endpoint or delivery change that cannot be made (unknown id, wrong state)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


# ---- the SSRF guard ----------------------------------------------------------------------------------


def address_refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_insecure: bool) -> str | None:
    """Why the server must not connect to ``address``, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_loopback or address.is_unspecified:
        return None if allow_insecure else "a loopback or unspecified address (only with webhook_allow_insecure)"
    if address.is_multicast or address.is_reserved:
        return "a multicast or reserved address"
    return None


def _parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def check_url(url: str, *, allow_insecure: bool) -> URL:
    """Refuse URLs the server must not send to, without network access; return the parsed URL.

    Raises:
        UrlRefusedError: with the reason.
    """
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefusedError(f"URL longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = URL(url)
        host, port = parsed.host, parsed.port
    except (ValueError, TypeError):
        raise UrlRefusedError("not a valid URL") from None
    if parsed.scheme not in ("https", "http") or not parsed.absolute or not host:
        raise UrlRefusedError("URL must be absolute https://")
    if parsed.scheme == "http" and not allow_insecure:
        raise UrlRefusedError("URL must be https:// (http:// only with webhook_allow_insecure)")
    if parsed.user is not None or parsed.password is not None:
        raise UrlRefusedError("URL must not carry credentials; use the endpoint's HMAC secret or the v1a key")
    if parsed.fragment:
        raise UrlRefusedError("URL must not have a fragment")
    if port is None or not 0 < port < 65536:
        raise UrlRefusedError("URL has no valid port")
    name = host.lower().rstrip(".")
    if name in METADATA_NAMES:
        raise UrlRefusedError(f"host {host} is a cloud metadata service")
    address = _parse_address(name)
    if address is not None:
        why = address_refusal(address, allow_insecure)
        if why is not None:
            raise UrlRefusedError(f"host {host} is {why}")
    return parsed


async def check_url_resolves(url: str, *, allow_insecure: bool) -> None:
    """:func:`check_url`, then look the host up and refuse it if it does not resolve or any address is refused.

    Raises:
        UrlRefusedError: with the reason.
    """
    parsed = check_url(url, allow_insecure=allow_insecure)
    host = parsed.host or ""
    if _parse_address(host) is not None:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parsed.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UrlRefusedError(f"host {host} does not resolve ({exc.strerror or exc})") from None
    for info in infos:
        address = _parse_address(str(info[4][0]))
        why = "an unparseable address" if address is None else address_refusal(address, allow_insecure)
        if why is not None:
            raise UrlRefusedError(f"host {host} resolves to {info[4][0]}, {why}")


def guarded_socket_factory(allow_insecure: bool) -> Callable[[tuple[Any, ...]], socket.socket]:
    """A socket factory for aiohttp's connector that refuses forbidden addresses at connection time."""

    def factory(addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        address = _parse_address(str(sockaddr[0]))
        why = "an unparseable address" if address is None else address_refusal(address, allow_insecure)
        if why is not None:
            raise OSError(errno.EACCES, f"refused to connect to {sockaddr[0]}: {why}")
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


# ---- schema and queueing -----------------------------------------------------------------------------


def msg_id_for(event_id: str) -> str:
    """The Standard Webhooks ``webhook-id`` of an event's deliveries: the same for every attempt."""
    return "msg_" + event_id.replace("-", "")


def envelope(event: Event, fmt: Format, *, server_base: str | None = None) -> str:
    """The delivery body, serialized once: ``{"type": "wardsight.<app>.<type>", "timestamp", "data"}``."""
    if fmt == "fhir":
        data: dict[str, Any] = fhir.communication(event, server_base=server_base)
    else:
        data = event.model_dump(mode="json", exclude={"v"})
    body = {"type": f"wardsight.{event.app}.{event.type}", "timestamp": fhir.iso_time(event.time), "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _wants(endpoint: Mapping[str, Any], event: Event) -> bool:
    apps = json.loads(endpoint["apps"] or "[]")
    if apps and event.app not in apps:
        return False
    return SEVERITY_RANK[event.severity] >= SEVERITY_RANK[endpoint["min_severity"]]


def enqueue_for_event(db: sqlite_utils.Database, event: Event, now: float) -> int:
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


def get_endpoint(db: sqlite_utils.Database, endpoint_id: int) -> dict[str, Any] | None:
    """One endpoint without its secret (``has_hmac`` tells whether it has one), with its pending count."""
    rows = list(db.query(f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?", [endpoint_id]))  # noqa: S608
    if not rows:
        return None
    view = _endpoint_view(rows[0])
    view["pending_count"] = db.conn.execute(
        "SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = ? AND status = 'pending'", [endpoint_id]
    ).fetchone()[0]
    return view


def list_endpoints(db: sqlite_utils.Database) -> list[dict[str, Any]]:
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
    db: sqlite_utils.Database,
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

    Only the offline URL checks run here; callers on the event loop also await :func:`check_url_resolves`.

    Raises:
        UrlRefusedError: the URL is refused.
        ValueError: a bad format, app or severity.
    """
    check_url(url, allow_insecure=allow_insecure)
    app_list = _validate_filters(format, apps, min_severity)
    secret = webhooks.new_hmac_secret() if with_hmac else None
    cur = db.conn.execute(
        "INSERT INTO webhook_endpoints (name, url, format, hmac_secret, apps, min_severity, enabled, created_at,"
        " created_by) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
        [name, url, format, secret, json.dumps(app_list), min_severity, now, created_by],
    )
    endpoint = get_endpoint(db, int(cur.lastrowid or 0))
    assert endpoint is not None
    return endpoint, secret


def update_endpoint(
    db: sqlite_utils.Database,
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
        app_list = _validate_filters(
            format or current[0],
            apps if apps is not None else json.loads(current[1]),
            min_severity or current[2],
        )
        changes.update(
            {"format": format or current[0], "apps": json.dumps(app_list), "min_severity": min_severity or current[2]}
        )
    if enabled is True:
        changes.update({"enabled": 1, "disabled_reason": None, "consecutive_failures": 0})
    elif enabled is False:
        changes.update({"enabled": 0, "disabled_reason": disabled_reason or "disabled by an operator"})
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


def delete_endpoint(db: sqlite_utils.Database, endpoint_id: int) -> bool:
    """Remove an endpoint and its deliveries (pending ones are never sent); False if there was none."""
    return db.conn.execute("DELETE FROM webhook_endpoints WHERE id = ?", [endpoint_id]).rowcount == 1


def list_deliveries(
    db: sqlite_utils.Database, endpoint_id: int, status: Status | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """An endpoint's deliveries, newest first (without bodies)."""
    if not 1 <= limit <= 1000:
        raise ValueError("limit must be between 1 and 1000")
    where, params = "endpoint_id = ?", list[Any]([endpoint_id])
    if status is not None:
        where += " AND status = ?"
        params.append(status)
    sql = f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {where} ORDER BY id DESC LIMIT ?"  # noqa: S608
    return list(db.query(sql, [*params, limit]))


def get_delivery(db: sqlite_utils.Database, delivery_id: int) -> dict[str, Any] | None:
    sql = f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?"  # noqa: S608
    rows = list(db.query(sql, [delivery_id]))
    return rows[0] if rows else None


def redeliver(db: sqlite_utils.Database, delivery_id: int, now: float) -> dict[str, Any]:
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


def queue_depth(db: sqlite_utils.Database) -> dict[str, Any]:
    """Deliveries by status, plus the ``created_at`` of the oldest pending one (None if none)."""
    counts = dict(db.conn.execute("SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status").fetchall())
    oldest = db.conn.execute("SELECT MIN(created_at) FROM webhook_deliveries WHERE status = 'pending'").fetchone()[0]
    return {
        "pending": counts.get("pending", 0),
        "delivered": counts.get("delivered", 0),
        "dead": counts.get("dead", 0),
        "oldest_pending_at": oldest,
    }


# ---- the worker --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: an HTTP status (None if no response) and, on failure, why."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(when.timestamp() - now, 0.0), MAX_RETRY_AFTER)


@dataclass
class _Worker:
    app: web.Application
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    drains: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    paused_until: dict[int, float] = field(default_factory=dict)  # loop time; after an internal error
    rng: random.Random = field(default_factory=random.Random)
    session: aiohttp.ClientSession | None = None
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONCURRENT_ENDPOINTS))

    @property
    def db(self) -> sqlite_utils.Database:
        return self.app[DB_KEY].db

    @property
    def schedule(self) -> list[float]:
        return list(self.app[CONFIG_KEY].webhook_retry_schedule)

    def now(self) -> float:
        return self.app[CLOCK_KEY]()

    def _due(self, head: Mapping[str, Any]) -> float:
        return float(head["next_attempt_at"]) + (self.schedule[0] if head["attempts"] == 0 else 0.0)

    def _heads(self) -> list[dict[str, Any]]:
        """The oldest pending delivery of every enabled endpoint."""
        return list(
            self.db.query(
                "SELECT d.id, d.endpoint_id, d.attempts, d.next_attempt_at FROM webhook_deliveries d"
                " JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE e.enabled = 1 AND d.id IN"
                " (SELECT MIN(id) FROM webhook_deliveries WHERE status = 'pending' GROUP BY endpoint_id)"
            )
        )

    def _head(self, endpoint_id: int) -> dict[str, Any] | None:
        rows = list(
            self.db.query(
                "SELECT d.* FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id"
                " WHERE d.endpoint_id = ? AND d.status = 'pending' AND e.enabled = 1 ORDER BY d.id LIMIT 1",
                [endpoint_id],
            )
        )
        return rows[0] if rows else None

    async def run(self) -> None:
        while True:
            self.wakeup.clear()
            try:
                delay = self._dispatch()
            except Exception:
                log.exception("webhook worker: cannot read the delivery queue")
                delay = POLL_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=max(0.0, min(delay, POLL_SECONDS)))

    def _dispatch(self) -> float:
        """Start a drain for every idle endpoint whose head is due; return seconds until the next one is."""
        now, loop_now = self.now(), asyncio.get_running_loop().time()
        delay = POLL_SECONDS
        for head in self._heads():
            endpoint_id = head["endpoint_id"]
            if endpoint_id in self.drains:
                continue
            paused = self.paused_until.get(endpoint_id, 0.0) - loop_now
            if paused > 0:
                delay = min(delay, paused)
                continue
            due = self._due(head)
            if due <= now:
                self.drains[endpoint_id] = asyncio.create_task(self._drain(endpoint_id))
            else:
                delay = min(delay, due - now)
        return delay

    async def _drain(self, endpoint_id: int) -> None:
        """Send an endpoint's due deliveries one after another, in order, until none is due."""
        try:
            while True:
                async with self.slots:
                    head = self._head(endpoint_id)
                    if head is None or self._due(head) > self.now():
                        return
                    await self._attempt(head)
        except Exception:
            log.exception(
                "webhook worker: endpoint %s paused for %.0f s after an internal error", endpoint_id, POLL_SECONDS
            )
            self.paused_until[endpoint_id] = asyncio.get_running_loop().time() + POLL_SECONDS
        finally:
            self.drains.pop(endpoint_id, None)
            self.wakeup.set()

    async def _attempt(self, delivery: Mapping[str, Any]) -> None:
        endpoint = self.db.execute(
            "SELECT id, name, url, hmac_secret, enabled FROM webhook_endpoints WHERE id = ?", [delivery["endpoint_id"]]
        ).fetchone()
        if endpoint is None or not endpoint[4]:
            return
        endpoint_id, name, url, hmac_secret, _ = endpoint
        now = self.now()
        try:
            outcome = await self._send(url, hmac_secret, delivery, now)
        except Exception as exc:  # a bug must cost one attempt, not the worker
            log.exception("webhook %s (%s): delivery %s failed inside the server", endpoint_id, name, delivery["id"])
            outcome = Outcome(None, f"internal error ({type(exc).__name__})")
        self._record(endpoint_id, name, delivery, outcome, now)
        from fleet import health  # health reads the queue from here: import late, keep the graph acyclic

        metrics = self.app.get(health.METRICS_KEY)
        if metrics is not None:
            metrics.webhook_attempts.labels(outcome="delivered" if outcome.ok else "failed").inc()

    async def _send(self, url: str, hmac_secret: str | None, delivery: Mapping[str, Any], now: float) -> Outcome:
        allow_insecure = self.app[CONFIG_KEY].webhook_allow_insecure
        try:
            check_url(url, allow_insecure=allow_insecure)
        except UrlRefusedError as exc:
            return Outcome(None, f"refused: {exc}")
        body = str(delivery["body"]).encode("utf-8")
        headers = webhooks.sign(
            delivery["msg_id"],
            int(now),
            body,
            hmac_secret=hmac_secret,
            ed25519_key=self.app[KEYS_KEY].webhook_signing_key,
        )
        headers["Content-Type"] = "application/json"
        timeout = self.app[CONFIG_KEY].webhook_timeout_seconds
        assert self.session is not None
        try:
            async with self.session.post(
                url, data=body, headers=headers, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                status = resp.status
                retry_after = None
                if status in THROTTLE_STATUSES:
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"), now)
        except TimeoutError:
            return Outcome(None, f"no response within {timeout:g} s")
        except aiohttp.InvalidURL:  # its message would repeat the URL, which may carry a query token
            return Outcome(None, "invalid URL")
        except aiohttp.ClientError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:300])
        if 200 <= status < 300:
            return Outcome(status)
        if 300 <= status < 400:
            return Outcome(status, f"HTTP {status}: redirects are not followed")
        return Outcome(status, f"HTTP {status}", retry_after)

    def _record(self, endpoint_id: int, name: str, delivery: Mapping[str, Any], outcome: Outcome, now: float) -> None:
        """Store one attempt's result and the endpoint's status in one transaction."""
        attempts = int(delivery["attempts"]) + 1
        conn = self.db.conn
        with transaction(self.db.conn):
            if outcome.ok:
                conn.execute(
                    "UPDATE webhook_deliveries SET status = 'delivered', attempts = ?, last_status = ?,"
                    " last_error = NULL, delivered_at = ? WHERE id = ?",
                    [attempts, outcome.status, now, delivery["id"]],
                )
                conn.execute(
                    "UPDATE webhook_endpoints SET last_attempt_at = ?, last_success_at = ?, last_status = ?,"
                    " last_error = NULL, consecutive_failures = 0, delivered_count = delivered_count + 1 WHERE id = ?",
                    [now, now, outcome.status, endpoint_id],
                )
            else:
                self._failed(endpoint_id, name, delivery, outcome, attempts, now)

    def _failed(
        self, endpoint_id: int, name: str, delivery: Mapping[str, Any], outcome: Outcome, attempts: int, now: float
    ) -> None:
        conn, schedule = self.db.conn, self.schedule
        error = outcome.error or "failed"
        disable = outcome.status == 410
        # Before a first attempt, _due() is when the delivery was queued (or re-queued by redeliver) plus schedule[0].
        waited_out = attempts == 1 and now - self._due(delivery) > max(sum(schedule), MIN_BACKLOG_WAIT)
        dead = not disable and (attempts >= len(schedule) or waited_out)
        if disable:
            status, next_at = "pending", now  # kept in order for when the endpoint is enabled again
            error = "HTTP 410: the receiver says this endpoint is gone; endpoint disabled"
        elif dead:
            status, next_at = "dead", float(delivery["next_attempt_at"])
        else:
            delay = schedule[attempts] * self.rng.uniform(1 - JITTER, 1 + JITTER)
            if outcome.retry_after is not None:
                delay = max(delay, outcome.retry_after)
            status, next_at = "pending", now + delay
        conn.execute(
            "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_status = ?,"
            " last_error = ? WHERE id = ?",
            [status, attempts, next_at, outcome.status, error, delivery["id"]],
        )
        conn.execute(
            "UPDATE webhook_endpoints SET last_attempt_at = ?, last_status = ?, last_error = ?,"
            " consecutive_failures = consecutive_failures + 1, dead_count = dead_count + ? WHERE id = ?",
            [now, outcome.status, error, int(dead), endpoint_id],
        )
        if disable:
            conn.execute(
                "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = ? WHERE id = ?",
                ["the receiver answered 410 Gone", endpoint_id],
            )
            log.warning("webhook %s (%s): receiver answered 410 Gone; endpoint disabled", endpoint_id, name)
        elif dead:
            log.warning(
                "webhook %s (%s): delivery %s of event %s is dead after %d attempts: %s",
                endpoint_id, name, delivery["id"], delivery["event_id"], attempts, error,
            )  # fmt: skip
        else:
            log.info(
                "webhook %s (%s): attempt %d of delivery %s failed (%s); next in %.1f s",
                endpoint_id, name, attempts, delivery["id"], error, next_at - now,
            )  # fmt: skip


# ---- HTTP routes -------------------------------------------------------------------------------------

_WORKER_KEY = web.AppKey("delivery_worker", _Worker)

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]
Url = Annotated[str, Field(min_length=1, max_length=MAX_URL_LENGTH)]
AppList = Annotated[list[App], Field(max_length=16)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateRequest(_Body):
    name: Name
    url: Url
    format: Format = "standard"
    apps: AppList = Field(default_factory=list)
    min_severity: Severity = "info"
    hmac: bool = Field(False, description="Also sign with v1 (HMAC); the whsec_ secret is returned once.")


class UpdateRequest(_Body):
    name: Name | None = None
    url: Url | None = None
    format: Format | None = None
    apps: AppList | None = None
    min_severity: Severity | None = None
    enabled: bool | None = None
    hmac: bool | None = Field(None, description="true: a new whsec_ secret (returned once); false: remove it.")


def _int_id(request: web.Request) -> int:
    try:
        value = int(request.match_info["id"])
    except ValueError:
        raise RejectedError(404, "no such id") from None
    if not 0 < value < 2**63:  # SQLite's integers
        raise RejectedError(404, "no such id")
    return value


async def _checked_url(request: web.Request, url: str) -> None:
    try:
        await check_url_resolves(url, allow_insecure=request.app[CONFIG_KEY].webhook_allow_insecure)
    except UrlRefusedError as exc:
        raise RejectedError(400, f"url refused: {exc}") from None


def _audit(request: web.Request, actor: str, action: str, target: str, details: Mapping[str, Any]) -> None:
    """Inside the change's transaction, so the change and its audit entry commit together."""
    audit.record(
        request.app[DB_KEY].db, actor=actor, action=action, target=target, details=details, now=request.app[CLOCK_KEY]()
    )


async def handle_list(request: web.Request) -> web.Response:
    await require(request, "operator")
    db = request.app[DB_KEY].db
    return web.json_response({"webhooks": list_endpoints(db), "queue": queue_depth(db)})


async def handle_create(request: web.Request) -> web.Response:
    who = await require(request, "admin")
    body = await read_json(request, CreateRequest)
    await _checked_url(request, body.url)
    db = request.app[DB_KEY].db
    try:
        with transaction(db.conn):
            endpoint, secret = create_endpoint(
                db,
                name=body.name,
                url=body.url,
                format=body.format,
                apps=body.apps,
                min_severity=body.min_severity,
                with_hmac=body.hmac,
                created_by=who.actor,
                now=request.app[CLOCK_KEY](),
                allow_insecure=request.app[CONFIG_KEY].webhook_allow_insecure,
            )
            details = {k: endpoint[k] for k in ("name", "url", "format", "apps", "min_severity", "has_hmac")}
            _audit(request, who.actor, "webhook.create", f"webhook:{endpoint['id']}", details)
    except ValueError as exc:
        raise RejectedError(400, str(exc)) from None
    log.info("webhook %s (%s) created by %s", endpoint["id"], endpoint["name"], who.actor)
    return web.json_response(
        {"webhook": endpoint, "hmac_secret": secret, "public_key": request.app[KEYS_KEY].webhook_public_key},
        status=201,
    )


async def handle_update(request: web.Request) -> web.Response:
    who = await require(request, "admin")
    endpoint_id = _int_id(request)
    body = await read_json(request, UpdateRequest)
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise RejectedError(400, "nothing to change")
    if body.url is not None:
        await _checked_url(request, body.url)
    if "hmac" in changes:  # say what happened; the secret itself never goes into the audit log
        changes["hmac_secret_rotated" if body.hmac else "hmac_secret_removed"] = True
        del changes["hmac"]
    db = request.app[DB_KEY].db
    try:
        with transaction(db.conn):
            endpoint, secret = update_endpoint(
                db,
                endpoint_id,
                now=request.app[CLOCK_KEY](),
                allow_insecure=request.app[CONFIG_KEY].webhook_allow_insecure,
                name=body.name,
                url=body.url,
                format=body.format,
                apps=body.apps,
                min_severity=body.min_severity,
                enabled=body.enabled,
                with_hmac=body.hmac,
                disabled_reason=f"disabled by {who.actor}",
            )
            _audit(request, who.actor, "webhook.update", f"webhook:{endpoint_id}", changes)
    except EndpointError as exc:
        raise RejectedError(exc.status, str(exc)) from None
    except ValueError as exc:
        raise RejectedError(400, str(exc)) from None
    if body.enabled:
        wake(request.app)
    response: dict[str, Any] = {"webhook": endpoint}
    if secret is not None:
        response["hmac_secret"] = secret
    return web.json_response(response)


async def handle_delete(request: web.Request) -> web.Response:
    who = await require(request, "admin")
    endpoint_id = _int_id(request)
    db = request.app[DB_KEY].db
    with transaction(db.conn):
        endpoint = get_endpoint(db, endpoint_id)
        if endpoint is None or not delete_endpoint(db, endpoint_id):
            raise RejectedError(404, f"no webhook endpoint {endpoint_id}")
        details = {"name": endpoint["name"], "url": endpoint["url"], "pending_dropped": endpoint["pending_count"]}
        _audit(request, who.actor, "webhook.delete", f"webhook:{endpoint_id}", details)
    return web.json_response({"deleted": endpoint_id})


async def handle_deliveries(request: web.Request) -> web.Response:
    await require(request, "operator")
    endpoint_id = _int_id(request)
    db = request.app[DB_KEY].db
    if get_endpoint(db, endpoint_id) is None:
        raise RejectedError(404, f"no webhook endpoint {endpoint_id}")
    statuses: dict[str | None, Status | None] = {
        None: None,
        "pending": "pending",
        "delivered": "delivered",
        "dead": "dead",
    }
    if request.query.get("status") not in statuses:
        raise RejectedError(400, "status must be pending, delivered or dead")
    try:
        limit = int(request.query.get("limit", "100"))
        rows = list_deliveries(db, endpoint_id, statuses[request.query.get("status")], limit)
    except ValueError:
        raise RejectedError(400, "limit must be an integer between 1 and 1000") from None
    return web.json_response({"deliveries": rows})


async def handle_redeliver(request: web.Request) -> web.Response:
    who = await require(request, "admin")
    delivery_id = _int_id(request)
    db = request.app[DB_KEY].db
    try:
        with transaction(db.conn):
            row = redeliver(db, delivery_id, request.app[CLOCK_KEY]())
            details = {"endpoint_id": row["endpoint_id"], "event_id": row["event_id"]}
            _audit(request, who.actor, "webhook.redeliver", f"webhook_delivery:{delivery_id}", details)
    except EndpointError as exc:
        raise RejectedError(exc.status, str(exc)) from None
    wake(request.app)
    return web.json_response({"delivery": row})


async def handle_public_key(request: web.Request) -> web.Response:
    await require(request, "operator")
    return web.json_response({"public_key": request.app[KEYS_KEY].webhook_public_key, "signature_version": "v1a"})


def setup(app: web.Application) -> None:
    """Add the webhook routes and the delivery worker (started and stopped with the app)."""
    worker = _Worker(app)
    app[_WORKER_KEY] = worker
    events.listen(app, lambda app, event: wake(app))

    async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
        config = app[CONFIG_KEY]
        worker.rng = app.get(RNG_KEY) or random.Random()  # noqa: S311 - jitter, not cryptography
        worker.wakeup = asyncio.Event()
        worker.slots = asyncio.Semaphore(MAX_CONCURRENT_ENDPOINTS)
        connector = aiohttp.TCPConnector(
            socket_factory=guarded_socket_factory(config.webhook_allow_insecure), limit=4 * MAX_CONCURRENT_ENDPOINTS
        )
        worker.session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), headers={"User-Agent": USER_AGENT}
        )
        task = asyncio.create_task(worker.run(), name="webhook-delivery")
        yield
        task.cancel()
        drains = list(worker.drains.values())
        for drain in drains:
            drain.cancel()
        await asyncio.gather(task, *drains, return_exceptions=True)
        await worker.session.close()

    app.cleanup_ctx.append(worker_ctx)
    app.router.add_get("/api/v1/webhooks", handle_list)
    app.router.add_post("/api/v1/webhooks", handle_create)
    app.router.add_get("/api/v1/webhooks/public-key", handle_public_key)
    app.router.add_patch(r"/api/v1/webhooks/{id:\d+}", handle_update)
    app.router.add_delete(r"/api/v1/webhooks/{id:\d+}", handle_delete)
    app.router.add_get(r"/api/v1/webhooks/{id:\d+}/deliveries", handle_deliveries)
    app.router.add_post(r"/api/v1/webhooks/deliveries/{id:\d+}/redeliver", handle_redeliver)


def wake(app: web.Application) -> None:
    """Tell the delivery worker new deliveries are due (cheap; safe to call from request handlers)."""
    worker = app.get(_WORKER_KEY)
    if worker is not None:
        worker.wakeup.set()
