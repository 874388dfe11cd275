"""Webhook delivery with several workers on one PostgreSQL database: two real fleet apps (their real delivery
workers, each its own claim connections) on one schema, and a real receiver on loopback that counts what arrives
per endpoint and message id."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from fleet import intake
from fleet.app import create_app
from fleet.config import ServerConfig
from fleet.health.metrics import METRICS_KEY
from fleet.store.db import FleetDB
from fleet.web.appkeys import DB_KEY
from fleet.webhooks import queue, worker
from fleet.webhooks.claims import ClaimLost, PgClaims
from fleet.webhooks.envelope import msg_id_for
from fleet.webhooks.retry import Failure, Outcome
from fleet.webhooks.store import EndpointError, create_endpoint, delete_endpoint, list_deliveries
from tests.fleet.helpers import Clock, event_for, insert_device

SHORT = [0.0, 0.05, 0.1]
FAILED = (Outcome(503, "HTTP 503"), Failure("pending", 0.0, "HTTP 503", disable=False))


@pytest.fixture(autouse=True)
def _postgres_only(fleet_backend: str) -> None:
    if fleet_backend != "postgresql":
        pytest.skip("several workers need PostgreSQL: this test runs as its [postgresql] variant")


class Receiver:
    """Answers 200; records each request's (path, webhook-id) on arrival and the most requests one path had at once.
    ``hold``: message ids whose first request is kept waiting until ``release`` is set."""

    def __init__(self) -> None:
        self.arrived: list[tuple[str, str]] = []
        self.answered: list[tuple[str, str]] = []
        self.delay = 0.0
        self.hold: set[str] = set()
        self.release = asyncio.Event()
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.max_in_flight: collections.Counter[str] = collections.Counter()

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        msg_id = request.headers["webhook-id"]
        self.arrived.append((request.path, msg_id))
        self.in_flight[request.path] += 1
        self.max_in_flight[request.path] = max(self.max_in_flight[request.path], self.in_flight[request.path])
        try:
            if msg_id in self.hold:
                self.hold.discard(msg_id)
                await self.release.wait()
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight[request.path] -= 1
        self.answered.append((request.path, msg_id))
        return web.Response(text="ok")

    def by_path(self, arrivals: list[tuple[str, str]]) -> dict[str, list[str]]:
        paths: dict[str, list[str]] = collections.defaultdict(list)
        for path, msg_id in arrivals:
            paths[path].append(msg_id)
        return dict(paths)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
async def receiver_url(aiohttp_server: Any, receiver: Receiver) -> str:
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    server = await aiohttp_server(app)
    return str(server.make_url("/hook"))


@pytest.fixture
def start_workers(aiohttp_client: Any, tmp_path: Path, pg_url: str) -> Callable[..., Any]:
    """Start ``n`` fleet apps on one PostgreSQL schema, sharing their keys and clock: ``n`` webhook workers."""

    async def start(clock: Clock, n: int = 2) -> list[Any]:
        clients = []
        for _ in range(n):
            config = ServerConfig(
                database=tmp_path / "unused.db",
                database_url=pg_url,
                keys_dir=tmp_path / "keys",
                webhook_allow_insecure=True,
                webhook_retry_schedule=SHORT,
                webhook_timeout_seconds=20.0,
            )
            clients.append(await aiohttp_client(create_app(config, clock=clock)))
        insert_device(fleet(clients[0]), "dev-1")
        return clients

    return start


def fleet(client: Any) -> FleetDB:
    return client.server.app[DB_KEY]


def add_endpoints(client: Any, clock: Clock, url: str, n: int) -> list[int]:
    common: dict[str, Any] = dict(
        format="standard", apps=[], min_severity="info", with_hmac=False, created_by="test", allow_insecure=True
    )
    db = fleet(client).db
    return [create_endpoint(db, name=f"ep{i}", url=f"{url}/{i}", now=clock(), **common)[0]["id"] for i in range(n)]


def accept(client: Any, clock: Clock) -> str:
    """Store an event the way the device API does (its deliveries queued in its transaction, this app's worker
    woken); return the message id its deliveries carry."""
    event = event_for("dev-1")
    assert intake.accept(client.server.app, fleet(client), event, clock())
    return msg_id_for(event.event_id)


def delivered_by(client: Any) -> float:
    """How many deliveries this app's worker made (its own metrics registry)."""
    registry = client.server.app[METRICS_KEY].registry
    return registry.get_sample_value("wardsight_webhook_attempts_total", {"outcome": "delivered"}) or 0.0


def statuses(client: Any, endpoint_id: int) -> list[tuple[str, int]]:
    return [(d["status"], d["attempts"]) for d in reversed(list_deliveries(fleet(client).db, endpoint_id))]


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_two_workers_deliver_every_webhook_once_in_order_and_share_the_work(
    start_workers: Any, receiver: Receiver, receiver_url: str
) -> None:
    clock = Clock()
    clients = await start_workers(clock)
    endpoints = add_endpoints(clients[0], clock, receiver_url, n=worker.MAX_CONCURRENT_ENDPOINTS + 2)
    receiver.delay = 0.01
    sent: list[str] = []
    for i in range(24):  # events come in through both workers, each waking its own
        sent.append(accept(clients[i % 2], clock))
        await asyncio.sleep(0.005)
    total = len(sent) * len(endpoints)
    await until(lambda: len(receiver.answered) >= total)
    await asyncio.sleep(0.3)  # nothing more arrives

    assert len(receiver.arrived) == total
    assert receiver.by_path(receiver.arrived) == {f"/hook/{i}": sent for i in range(len(endpoints))}
    assert all(n == 1 for n in receiver.max_in_flight.values()), receiver.max_in_flight
    for endpoint_id in endpoints:
        assert statuses(clients[1], endpoint_id) == [("delivered", 1)] * len(sent)
    shares = [delivered_by(c) for c in clients]
    assert sum(shares) == total and all(shares), shares
    for c in clients:
        assert not c.server.app[worker.WORKER_KEY].claims.holding


@pytest.mark.parametrize("death", ["connection_lost", "shutdown"])
async def test_a_delivery_whose_worker_dies_mid_attempt_is_sent_by_the_other(
    start_workers: Any, receiver: Receiver, receiver_url: str, death: str
) -> None:
    clock = Clock()
    clients = await start_workers(clock)
    [endpoint_id] = add_endpoints(clients[0], clock, receiver_url, n=1)
    first = accept(clients[0], clock)
    receiver.hold.add(first)
    rest = [accept(clients[0], clock) for _ in range(2)]
    await until(lambda: len(receiver.arrived) == 1)
    held = [c for c in clients if c.server.app[worker.WORKER_KEY].claims.holding]
    assert len(held) == 1  # one worker at a time
    holder, other = held[0], next(c for c in clients if c is not held[0])
    claims = holder.server.app[worker.WORKER_KEY].claims
    [(delivery_id, conn)] = claims.holding.items()
    assert receiver.arrived == [("/hook/0", first)]

    if death == "connection_lost":  # what PostgreSQL sees of a killed worker: its session ends
        conn.close()
    else:  # the worker's process stops while the receiver still holds the request
        await holder.close()
    await until(lambda: len(receiver.answered) == 3)
    assert receiver.by_path(receiver.answered) == {"/hook/0": [first, *rest]}
    assert receiver.by_path(receiver.arrived) == {"/hook/0": [first, first, *rest]}  # at least once
    await until(lambda: delivered_by(other) == 3)  # (the receiver notes its answer before the worker has it)
    assert statuses(other, endpoint_id) == [("delivered", 1)] * 3

    # The first worker's request gets its answer now: too late, its claim is gone and it records nothing.
    receiver.release.set()
    await until(lambda: len(receiver.answered) == 4 or death == "shutdown")
    await until(lambda: not claims.holding)
    await asyncio.sleep(0.2)
    assert statuses(other, endpoint_id) == [("delivered", 1)] * 3
    row = fleet(other).db.execute("SELECT delivered_count FROM webhook_endpoints WHERE id = ?", [endpoint_id])
    assert row.fetchone()[0] == 3
    assert delivery_id in [d["id"] for d in list_deliveries(fleet(other).db, endpoint_id)]
    assert all(not c.closed for c in claims.idle)


async def test_deleting_an_endpoint_while_a_delivery_to_it_is_out_is_refused_not_waited_for(
    start_workers: Any, receiver: Receiver, receiver_url: str
) -> None:
    clock = Clock()
    [client] = await start_workers(clock, n=1)
    [endpoint_id] = add_endpoints(client, clock, receiver_url, n=1)
    receiver.hold.add(accept(client, clock))
    await until(lambda: len(receiver.arrived) == 1)
    db = fleet(client).db
    # Waiting for the claim's row lock on the app's own connection would stop this event loop, and with it the
    # attempt that holds the lock, for good; the lock timeout only keeps a regression from hanging the test.
    db.conn.execute("SET lock_timeout = '3s'")
    started = time.monotonic()
    with pytest.raises(EndpointError) as refused:
        delete_endpoint(db, endpoint_id)
    assert refused.value.status == 409 and time.monotonic() - started < 1.0
    assert not db.conn.in_transaction

    receiver.release.set()
    await until(lambda: statuses(client, endpoint_id) == [("delivered", 1)])
    await until(lambda: not client.server.app[worker.WORKER_KEY].claims.holding)
    assert delete_endpoint(db, endpoint_id)
    assert list_deliveries(db, endpoint_id) == []


async def test_a_hung_worker_lets_go_of_its_claim_after_its_hold_limit(
    start_workers: Any, receiver: Receiver, receiver_url: str, pg_url: str
) -> None:
    clock = Clock()
    [client] = await start_workers(clock, n=1)
    [endpoint_id] = add_endpoints(client, clock, receiver_url, n=1)
    event = event_for("dev-1")
    assert intake.store(fleet(client), event, clock())  # not announced: the app's worker sees it at its next poll
    hung = PgClaims(pg_url, size=1, hold_seconds=0.5)  # a worker that claims the head, then never sends it
    try:
        async with hung.claim(endpoint_id) as claim:
            assert claim is not None and claim.delivery["msg_id"] == msg_id_for(event.event_id)
            await until(lambda: receiver.answered == [("/hook/0", claim.delivery["msg_id"])], timeout=10)
            with pytest.raises(ClaimLost):  # never written outside the claim's transaction
                claim.record(lambda db: queue.record_failure(db, endpoint_id, claim.delivery, 1, *FAILED, clock()))
    finally:
        hung.close()
    # (the receiver answers before the worker has read the reply and committed it)
    await until(lambda: statuses(client, endpoint_id) == [("delivered", 1)], timeout=10)
