"""Webhook delivery against real servers on loopback: the fleet app (its real worker, SQLite file and keys)
and a real aiohttp receiver that verifies what arrives with wardsight.webhooks.verify."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import socket
import time
from dataclasses import dataclass

import pytest
from aiohttp import web

from fleet import intake
from fleet.app import create_app
from fleet.audit import log as audit
from fleet.config import ServerConfig
from fleet.store.db import FleetDB
from fleet.web.appkeys import DB_KEY, KEYS_KEY
from fleet.webhooks import fhir, retry, ssrf, worker
from fleet.webhooks.store import (
    EndpointError,
    create_endpoint,
    get_endpoint,
    list_deliveries,
    list_endpoints,
    queue_depth,
    redeliver,
    update_endpoint,
)
from tests.fleet.helpers import api_headers, enroll_device, event_for, free_port, insert_device
from wardsight import webhooks, wire

SHORT = [0.0, 0.05, 0.1]


# ---- a real receiver ---------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def msg_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    """Answers each POST with the next (status, headers) planned for its path, then ``default``; records everything."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.plan: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.default = 200
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        planned = self.plan.get(request.path)
        status, headers = planned.pop(0) if planned else (self.default, {})
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        self.requests.append(Received(request.path, {k.lower(): v for k, v in request.headers.items()}, body, status))
        return web.Response(status=status, headers=headers, text="ok")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        app.router.add_get("/{tail:.*}", self.handle)
        return app

    def accepted(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.answered < 300]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
async def receiver_url(aiohttp_server, receiver):
    server = await aiohttp_server(receiver.app())
    return str(server.make_url("/hook"))


# ---- the fleet app -----------------------------------------------------------------------------------


@pytest.fixture
def start_fleet(aiohttp_client, db_path, clock):
    """Start the real fleet app on loopback (its delivery worker runs); returns the test client."""

    async def start(clock=clock, **config):
        settings = {"webhook_allow_insecure": True, "webhook_retry_schedule": SHORT, "webhook_timeout_seconds": 2.0}
        settings.update(config)
        app = create_app(ServerConfig(database=db_path, **settings), clock=clock)
        app[worker.RNG_KEY] = random.Random(5)  # noqa: S311 - jitter
        return await aiohttp_client(app)

    return start


def db_of(client) -> FleetDB:
    return client.server.app[DB_KEY]


def add_device(db: FleetDB, device_id: str = "dev-1") -> None:
    if db.get_device(device_id) is None:
        insert_device(db, device_id)


def store(client, clock, **over) -> wire.Event:
    """Store an event the way the device API does (same transaction queues its deliveries), then wake the worker."""
    db = db_of(client)
    add_device(db)
    event = event_for("dev-1", **over)
    assert intake.store(db, event, clock())
    worker.wake(client.server.app)
    return event


def add_endpoint(client, clock, url, **over):
    fields = dict(
        name="nurse-call",
        url=url,
        format="standard",
        apps=[],
        min_severity="info",
        with_hmac=False,
        created_by="test",
        now=clock(),
        allow_insecure=True,
    )
    fields.update(over)
    return create_endpoint(db_of(client).db, **fields)


def deliveries(client, endpoint_id):
    return list(reversed(list_deliveries(db_of(client).db, endpoint_id)))


def endpoint(client, endpoint_id):
    return get_endpoint(db_of(client).db, endpoint_id)


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def advance(client, clock, seconds: float) -> None:
    clock.now += seconds
    worker.wake(client.server.app)


async def drive(client, clock, predicate, timeout: float = 5.0) -> None:
    """Advance the clock a second at a time (waking the worker) until ``predicate`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        advance(client, clock, 1)
        await asyncio.sleep(0.02)


def verify(client, clock, received: Received, secret: str | None = None) -> None:
    key = client.server.app[KEYS_KEY].webhook_public_key
    webhooks.verify(received.headers, received.body, public_key=key, now=clock())
    if secret is not None:
        webhooks.verify(received.headers, received.body, hmac_secret=secret, now=clock())


# ---- delivery ----------------------------------------------------------------------------------------


async def test_event_from_the_device_api_arrives_signed_v1a_and_v1(start_fleet, db_path, clock, receiver, receiver_url):
    client = await start_fleet()
    ep, secret = add_endpoint(client, clock, receiver_url, with_hmac=True)
    assert secret is not None and secret.startswith("whsec_") and ep["has_hmac"] and "hmac_secret" not in ep

    device = await enroll_device(client, db_path, clock)
    event = event_for(device.device_id, app="fall", type="fall", severity="critical", track_id=3, confidence=0.9)
    resp = await device.post_event(event)
    assert resp.status == 201, await resp.text()
    await until(lambda: len(receiver.requests) == 1)

    got = receiver.requests[0]
    verify(client, clock, got, secret)
    with pytest.raises(webhooks.WebhookVerificationError):  # a different secret or key does not verify
        webhooks.verify(got.headers, got.body, hmac_secret=webhooks.new_hmac_secret(), now=clock())
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(got.headers, got.body, public_key=webhooks.new_ed25519_keypair()[1], now=clock())
    versions = sorted(sig.split(",")[0] for sig in got.headers["webhook-signature"].split())
    assert versions == ["v1", "v1a"]
    assert got.headers["webhook-id"] == "msg_" + event.event_id.replace("-", "")
    assert got.headers["webhook-timestamp"] == str(int(clock()))
    assert got.headers["content-type"] == "application/json"
    assert len(got.body) < 20_000
    body = json.loads(got.body)
    assert body["type"] == "wardsight.fall.fall"
    assert body["timestamp"] == "2027-01-15T08:00:00.000Z"  # the event's time, 1_800_000_000
    assert body["data"] == event.model_dump(mode="json", exclude={"v"})

    await until(lambda: deliveries(client, ep["id"])[0]["status"] == "delivered")
    row = deliveries(client, ep["id"])[0]
    assert row["attempts"] == 1 and row["last_status"] == 200 and row["delivered_at"] == clock()
    status = endpoint(client, ep["id"])
    assert status["delivered_count"] == 1 and status["last_success_at"] == clock()
    assert status["consecutive_failures"] == 0 and status["pending_count"] == 0


async def test_receiver_down_then_up_gets_every_event_once_and_in_order(start_fleet, clock, aiohttp_server, receiver):
    port = free_port()
    client = await start_fleet(webhook_retry_schedule=[0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    ep, secret = add_endpoint(client, clock, f"http://127.0.0.1:{port}/hook", with_hmac=True)
    events = [store(client, clock, data={"count": n, "previous": n - 1}) for n in range(1, 4)]

    # Nobody listens: connection refused, and only the first event is ever tried (per-endpoint FIFO).
    await until(lambda: deliveries(client, ep["id"])[0]["attempts"] == 1)
    first = deliveries(client, ep["id"])
    assert first[0]["status"] == "pending" and "Connect" in first[0]["last_error"]
    assert [d["attempts"] for d in first[1:]] == [0, 0]
    # The retry is scheduled after schedule[1] = 0.05 s, with at most 10 % jitter.
    assert 0.045 <= first[0]["next_attempt_at"] - clock() <= 0.055
    advance(client, clock, 1)
    await until(lambda: deliveries(client, ep["id"])[0]["attempts"] == 2)

    # The receiver comes up on that port, still failing twice with 500; two more events arrive meanwhile.
    await aiohttp_server(receiver.app(), port=port)
    receiver.plan["/hook"] = [(500, {}), (500, {})]
    events += [store(client, clock, data={"count": n, "previous": n - 1}) for n in range(4, 6)]
    await drive(client, clock, lambda: len(receiver.accepted()) == 5)
    advance(client, clock, 10)  # nothing is sent again after a success
    await asyncio.sleep(0.2)

    assert len(receiver.requests) == 7
    assert {r.msg_id for r in receiver.requests[:3]} == {"msg_" + events[0].event_id.replace("-", "")}
    assert len({r.body for r in receiver.requests[:3]}) == 1  # every retry sends the very same bytes
    assert [r.answered for r in receiver.requests] == [500, 500] + [200] * 5
    accepted = receiver.accepted()
    assert [json.loads(r.body)["data"]["event_id"] for r in accepted] == [e.event_id for e in events]
    for r in accepted:
        verify(client, clock, r, secret)
    rows = deliveries(client, ep["id"])
    assert [d["status"] for d in rows] == ["delivered"] * 5
    assert [d["attempts"] for d in rows] == [5, 1, 1, 1, 1]
    assert endpoint(client, ep["id"])["delivered_count"] == 5


async def test_410_disables_the_endpoint_and_keeps_its_queue(start_fleet, clock, receiver, receiver_url, caplog):
    client = await start_fleet()
    ep, _ = add_endpoint(client, clock, receiver_url)
    other, _ = add_endpoint(client, clock, receiver_url.replace("/hook", "/other"), name="pager")
    receiver.plan["/hook"] = [(410, {})]
    first = store(client, clock)
    with caplog.at_level(logging.WARNING, logger="wardsight.fleet.delivery"):
        await until(lambda: not endpoint(client, ep["id"])["enabled"])
    assert "410" in caplog.text
    status = endpoint(client, ep["id"])
    assert "410" in status["disabled_reason"] and status["last_status"] == 410
    row = deliveries(client, ep["id"])[0]
    assert row["status"] == "pending" and row["attempts"] == 1

    # A disabled endpoint is sent nothing and queues nothing new; the other endpoint is unaffected.
    store(client, clock)
    await until(lambda: len(deliveries(client, other["id"])) == 2 and len(receiver.accepted()) == 2)
    advance(client, clock, 60)
    await asyncio.sleep(0.1)
    assert sorted(r.path for r in receiver.requests) == ["/hook", "/other", "/other"]
    assert len(deliveries(client, ep["id"])) == 1

    # Enabling it again sends what was kept.
    update_endpoint(db_of(client).db, ep["id"], enabled=True, now=clock(), allow_insecure=True)
    worker.wake(client.server.app)
    await until(lambda: deliveries(client, ep["id"])[0]["status"] == "delivered")
    assert receiver.requests[-1].path == "/hook"
    assert json.loads(receiver.requests[-1].body)["data"]["event_id"] == first.event_id
    assert endpoint(client, ep["id"])["disabled_reason"] is None


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured_when_longer_than_the_schedule(
    start_fleet, clock, receiver, receiver_url, status
):
    client = await start_fleet()
    ep, _ = add_endpoint(client, clock, receiver_url)
    receiver.plan["/hook"] = [(status, {"Retry-After": "120"})]
    store(client, clock)
    await until(lambda: deliveries(client, ep["id"])[0]["attempts"] == 1)
    row = deliveries(client, ep["id"])[0]
    assert row["next_attempt_at"] == clock() + 120 and row["last_status"] == status

    advance(client, clock, 100)
    await asyncio.sleep(0.2)
    assert len(receiver.requests) == 1
    advance(client, clock, 21)
    await until(lambda: deliveries(client, ep["id"])[0]["status"] == "delivered")
    assert len(receiver.requests) == 2


def test_retry_after_parsing():
    now = 1_800_000_000.0
    assert retry.parse_retry_after("30", now) == 30
    assert retry.parse_retry_after("Fri, 15 Jan 2027 08:01:00 GMT", now) == 60
    assert retry.parse_retry_after("999999999", now) == 24 * 3600  # capped
    assert retry.parse_retry_after("soon", now) is None
    assert retry.parse_retry_after(None, now) is None


async def test_dead_letter_after_the_schedule_then_redeliver(start_fleet, receiver, receiver_url):
    # Real time here: the worker itself sleeps until each retry is due.
    client = await start_fleet(clock=time.time)
    ep, _ = add_endpoint(client, time.time, receiver_url)
    receiver.default = 500
    started = time.time()
    dead = store(client, time.time)
    await until(lambda: deliveries(client, ep["id"])[0]["status"] == "dead")
    took = time.time() - started
    row = deliveries(client, ep["id"])[0]
    assert row["attempts"] == 3 and row["last_status"] == 500 and row["last_error"] == "HTTP 500"
    assert len(receiver.requests) == 3 and len({r.msg_id for r in receiver.requests}) == 1
    assert took >= (0.05 + 0.1) * 0.9
    assert endpoint(client, ep["id"])["dead_count"] == 1
    assert queue_depth(db_of(client).db)["dead"] == 1

    # A dead head no longer blocks the endpoint's queue.
    receiver.default = 200
    later = store(client, time.time)
    await until(lambda: deliveries(client, ep["id"])[1]["status"] == "delivered")

    # Redelivery sends the same message again (same webhook-id and bytes).
    redeliver(db_of(client).db, row["id"], time.time())
    worker.wake(client.server.app)
    await until(lambda: deliveries(client, ep["id"])[0]["status"] == "delivered")
    ids = [json.loads(r.body)["data"]["event_id"] for r in receiver.accepted()]
    assert ids == [later.event_id, dead.event_id]
    assert receiver.accepted()[1].body == receiver.requests[0].body
    with pytest.raises(EndpointError) as info:
        redeliver(db_of(client).db, row["id"], time.time())
    assert info.value.status == 409


async def test_a_backlog_behind_a_long_outage_gets_one_attempt_each(start_fleet, clock, receiver, receiver_url):
    client = await start_fleet()
    ep, _ = add_endpoint(client, clock, receiver_url)
    receiver.default = 500
    store(client, clock)
    store(client, clock)
    await until(lambda: deliveries(client, ep["id"])[0]["attempts"] == 1)
    advance(client, clock, 1)
    await until(lambda: deliveries(client, ep["id"])[0]["attempts"] == 2)
    advance(client, clock, 100)  # longer than max(schedule span, 60 s) since the second event was queued
    await until(lambda: [d["status"] for d in deliveries(client, ep["id"])] == ["dead", "dead"])
    assert [d["attempts"] for d in deliveries(client, ep["id"])] == [3, 1]
    store(client, clock)  # a fresh event gets the whole schedule
    await until(lambda: len(deliveries(client, ep["id"])) == 3 and deliveries(client, ep["id"])[2]["attempts"] == 1)
    assert deliveries(client, ep["id"])[2]["status"] == "pending"


async def test_a_redirect_is_a_failure_and_is_not_followed(start_fleet, clock, receiver, receiver_url):
    client = await start_fleet(webhook_retry_schedule=[0])
    ep, _ = add_endpoint(client, clock, receiver_url)
    receiver.plan["/hook"] = [(307, {"Location": "/elsewhere"})]
    store(client, clock)
    await until(lambda: deliveries(client, ep["id"])[0]["status"] == "dead")
    row = deliveries(client, ep["id"])[0]
    assert row["last_status"] == 307 and "redirect" in row["last_error"]
    await asyncio.sleep(0.1)
    assert [r.path for r in receiver.requests] == ["/hook"]


async def test_deliveries_survive_a_server_restart(start_fleet, clock, aiohttp_server, receiver):
    port = free_port()
    first = await start_fleet()
    ep, _ = add_endpoint(first, clock, f"http://127.0.0.1:{port}/hook")
    events = [store(first, clock) for _ in range(3)]
    await until(lambda: deliveries(first, ep["id"])[0]["attempts"] == 1)
    await first.close()  # the app stops: worker cancelled, database closed

    await aiohttp_server(receiver.app(), port=port)
    clock.now += 5
    second = await start_fleet()
    await until(lambda: len(receiver.accepted()) == 3)
    await asyncio.sleep(0.1)
    assert [json.loads(r.body)["data"]["event_id"] for r in receiver.requests] == [e.event_id for e in events]
    assert [d["status"] for d in deliveries(second, ep["id"])] == ["delivered"] * 3


async def test_filters_choose_which_endpoints_get_an_event(tmp_path):
    db = FleetDB(tmp_path / "fleet.db")
    add_device(db)
    now = 1_800_000_000.0
    common = dict(format="standard", with_hmac=False, created_by="test", now=now, allow_insecure=False)
    falls, _ = create_endpoint(
        db.db, name="falls", url="https://10.0.0.5/f", apps=["fall"], min_severity="info", **common
    )
    urgent, _ = create_endpoint(
        db.db, name="urgent", url="https://10.0.0.5/u", apps=[], min_severity="warning", **common
    )
    off, _ = create_endpoint(db.db, name="off", url="https://10.0.0.5/o", apps=[], min_severity="info", **common)
    update_endpoint(db.db, off["id"], enabled=False, now=now, allow_insecure=False)
    intake.store(db, event_for("dev-1"), now)  # occupancy, info: nobody
    intake.store(db, event_for("dev-1", app="fall", type="resolved"), now)  # info fall: falls only
    intake.store(db, event_for("dev-1", app="mask", type="no_mask", severity="warning"), now)  # urgent only
    intake.store(db, event_for("dev-1", app="fall", type="fall", severity="critical"), now)  # both
    counts = {e["name"]: len(list_deliveries(db.db, e["id"])) for e in list_endpoints(db.db)}
    assert counts == {"falls": 2, "urgent": 2, "off": 0}
    assert queue_depth(db.db)["pending"] == 4
    # Storing the same event again queues nothing more.
    assert (
        intake.store(db, event_for("dev-1", event_id=list_deliveries(db.db, urgent["id"])[0]["event_id"]), now) is False
    )
    assert queue_depth(db.db)["pending"] == 4
    assert falls["apps"] == ["fall"]
    db.close()


async def test_concurrency_is_bounded_and_a_broken_endpoint_does_not_stop_the_worker(
    start_fleet, clock, receiver, receiver_url, caplog
):
    client = await start_fleet()
    receiver.delay = 0.15
    endpoints = [add_endpoint(client, clock, f"{receiver_url}/{n}", with_hmac=True) for n in range(6)]
    broken_id = endpoints[0][0]["id"]
    bad_secret = "whsec_" + "A" * 8  # too short: signing raises inside the worker
    db_of(client).db.conn.execute("UPDATE webhook_endpoints SET hmac_secret = ? WHERE id = ?", [bad_secret, broken_id])
    with caplog.at_level(logging.INFO, logger="wardsight.fleet.delivery"):
        store(client, clock)
        await until(lambda: len(receiver.accepted()) == 5)
        await until(lambda: deliveries(client, broken_id)[0]["attempts"] == 1)
    assert receiver.max_in_flight == worker.MAX_CONCURRENT_ENDPOINTS
    assert "internal error" in deliveries(client, broken_id)[0]["last_error"]
    for _, secret in endpoints:
        assert secret not in caplog.text
    assert bad_secret not in caplog.text
    # The worker is still alive.
    store(client, clock)
    await until(lambda: len(receiver.accepted()) == 10)


async def test_fhir_endpoints_get_a_communication(start_fleet, clock, receiver, receiver_url):
    client = await start_fleet()
    ep, _ = add_endpoint(client, clock, receiver_url, format="fhir")
    event = store(client, clock, app="fall", type="fall", severity="critical", room="3B-12", data={})
    await until(lambda: len(receiver.requests) == 1)
    verify(client, clock, receiver.requests[0])
    body = json.loads(receiver.requests[0].body)
    assert body["type"] == "wardsight.fall.fall"
    resource = body["data"]
    assert_r4_communication(resource)
    assert resource["id"] == event.event_id and resource["priority"] == "stat"
    assert resource["payload"] == [{"contentString": "Fall detected in room 3B-12"}]
    assert resource["sender"]["identifier"] == {"system": "urn:wardsight:device", "value": "dev-1"}
    assert resource["about"][0]["identifier"] == {"system": "urn:wardsight:room", "value": "3B-12"}


# ---- FHIR --------------------------------------------------------------------------------------------

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
FHIR_DATETIME = re.compile(
    r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$"
)
EVENT_STATUS = {
    "preparation",
    "in-progress",
    "not-done",
    "on-hold",
    "stopped",
    "completed",
    "entered-in-error",
    "unknown",
}
REQUEST_PRIORITY = {"routine", "urgent", "asap", "stat"}
CATEGORY_CODES = {"alert", "notification", "reminder", "instruction"}
R4_FIELDS = {
    "resourceType", "id", "meta", "implicitRules", "language", "text", "contained", "extension",
    "modifierExtension", "identifier", "instantiatesCanonical", "instantiatesUri", "basedOn", "partOf",
    "inResponseTo", "status", "statusReason", "category", "priority", "medium", "subject", "topic", "about",
    "encounter", "sent", "received", "recipient", "sender", "reasonCode", "reasonReference", "payload", "note",
}  # fmt: skip


def assert_logical_reference(ref):
    assert set(ref) <= {"reference", "type", "identifier", "display"}
    assert ref["identifier"]["system"].startswith("urn:wardsight:") and ref["identifier"]["value"]


def assert_r4_communication(resource):
    """The R4 rules we can check without a validator: known elements, cardinality, required codes and formats."""
    assert resource["resourceType"] == "Communication"
    assert set(resource) <= R4_FIELDS
    assert FHIR_ID.match(resource["id"])
    assert resource["status"] in EVENT_STATUS  # status is 1..1 and required
    assert resource["priority"] in REQUEST_PRIORITY
    assert FHIR_DATETIME.match(resource["sent"])
    assert [i["system"] for i in resource["identifier"]] == ["urn:wardsight:event"]
    (category,) = resource["category"]
    (coding,) = category["coding"]
    assert coding["system"] == "http://terminology.hl7.org/CodeSystem/communication-category"
    assert coding["code"] in CATEGORY_CODES
    assert_logical_reference(resource["sender"])
    assert resource["sender"]["type"] == "Device"
    for about in resource["about"]:
        assert_logical_reference(about)
    for part in resource["payload"]:  # content[x] is 1..1 in each payload
        assert len([k for k in part if k.startswith("content")]) == 1
        assert isinstance(part["contentString"], str) and part["contentString"]
    json.dumps(resource, allow_nan=False)


@pytest.mark.parametrize(
    ("severity", "priority", "app", "kind", "data", "sentence"),
    [
        ("critical", "stat", "fall", "fall", {}, "Fall detected in room 12"),
        ("warning", "urgent", "hand_hygiene", "missed", {}, "Hand hygiene missed in room 12"),
        ("info", "routine", "occupancy", "count_changed", {"count": 1, "previous": 2}, "1 person now in room 12"),
        ("info", "routine", "occupancy", "count_changed", {"count": 3}, "3 people now in room 12"),
        ("info", "routine", "system", "agent_started", {}, "System event agent_started in room 12"),
    ],
)
def test_fhir_communication_shape(severity, priority, app, kind, data, sentence):
    event = event_for("dev-7", room="12", app=app, type=kind, severity=severity, data=data, time=1_800_000_000.25)
    resource = fhir.communication(event, server_base="https://fleet.example.org")
    assert_r4_communication(resource)
    assert resource["priority"] == priority
    assert resource["payload"][0]["contentString"] == sentence
    assert resource["sent"] == "2027-01-15T08:00:00.250Z"
    assert resource["meta"] == {"source": "https://fleet.example.org"}
    assert "meta" not in fhir.communication(event, server_base=None)


def test_fhir_communication_from_a_stored_event_row(tmp_path):
    db = FleetDB(tmp_path / "fleet.db")
    add_device(db)
    event = event_for("dev-1", app="bed_exit", type="bed_exit", severity="critical", data={"zone": 1})
    intake.store(db, event, 1_800_000_100.0)
    (row,) = db.recent_events(1)
    row["data"] = json.dumps(row["data"])  # as the table holds it
    assert fhir.communication(row, server_base=None) == fhir.communication(event, server_base=None)
    db.close()


# ---- SSRF guard --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "insecure", "why"),
    [
        ("http://10.0.0.5/hook", False, "https"),
        ("https://127.0.0.1/hook", False, "loopback"),
        ("https://[::1]/hook", False, "loopback"),
        ("https://0.0.0.0/hook", False, "unspecified"),
        ("https://169.254.169.254/latest/meta-data", True, "metadata"),
        ("https://169.254.10.20/hook", True, "link-local"),
        ("https://[fe80::1]/hook", True, "link-local"),
        ("https://[::ffff:169.254.169.254]/hook", True, "metadata"),
        ("https://[fd00:ec2::254]/hook", True, "metadata"),
        ("https://metadata.google.internal/computeMetadata/v1/", True, "metadata"),
        ("https://user:pw@10.0.0.5/hook", True, "credentials"),
        ("ftp://10.0.0.5/hook", True, "https"),
        ("/relative", True, "https"),
    ],
)
def test_refused_urls(url, insecure, why):
    with pytest.raises(ssrf.UrlRefusedError, match=why):
        ssrf.check_url(url, allow_insecure=insecure)


@pytest.mark.parametrize(
    ("url", "insecure"),
    [
        ("https://10.20.30.40/hook", False),  # hospital systems live on private networks
        ("https://192.168.1.10:8443/fhir/Communication", False),
        ("https://nurse-call.hospital.example/hook?site=3", False),
        ("http://127.0.0.1:8080/hook", True),
    ],
)
def test_allowed_urls(url, insecure):
    ssrf.check_url(url, allow_insecure=insecure)


async def test_names_are_resolved_and_checked_at_creation():
    with pytest.raises(ssrf.UrlRefusedError, match="resolves to 127.0.0.1"):
        await ssrf.check_url_resolves("https://localhost/hook", allow_insecure=False)
    await ssrf.check_url_resolves("https://localhost/hook", allow_insecure=True)
    with pytest.raises(ssrf.UrlRefusedError, match="does not resolve"):
        await ssrf.check_url_resolves("https://no-such-host.invalid/hook", allow_insecure=False)


def test_the_socket_factory_refuses_forbidden_addresses():
    factory = ssrf.guarded_socket_factory(allow_insecure=False)
    for address in ("169.254.169.254", "127.0.0.1"):
        with pytest.raises(OSError, match="refused to connect"):
            factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 443)))
    with pytest.raises(OSError, match="link-local"):
        factory((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1%1", 443, 0, 1)))
    factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 443))).close()


async def test_targets_are_checked_again_at_every_send(start_fleet, clock, receiver, receiver_url):
    # Endpoints made while loopback was allowed; the server now runs without webhook_allow_insecure.
    client = await start_fleet(webhook_allow_insecure=False, webhook_retry_schedule=[0])
    port = receiver_url.split(":")[2].split("/")[0]
    plain, _ = add_endpoint(client, clock, receiver_url)
    by_name, _ = add_endpoint(
        client, clock, f"https://localhost:{port}/hook"
    )  # passes the URL check; DNS says loopback
    store(client, clock)
    await until(lambda: all(deliveries(client, e["id"])[0]["status"] == "dead" for e in (plain, by_name)))
    assert "refused: URL must be https://" in deliveries(client, plain["id"])[0]["last_error"]
    assert "refused to connect to 127.0.0.1" in deliveries(client, by_name["id"])[0]["last_error"]
    assert receiver.requests == []


# ---- HTTP API ----------------------------------------------------------------------------------------


async def test_webhook_api(start_fleet, clock, receiver, receiver_url):
    client = await start_fleet()
    admin, oper, viewer = (api_headers(client, role, f"{role}-token") for role in ("admin", "operator", "viewer"))
    spec = {"name": "Nurse call 3B", "url": receiver_url, "format": "standard", "apps": ["fall"], "hmac": True}

    assert (await client.post("/api/v1/webhooks", json=spec)).status == 401
    assert (await client.post("/api/v1/webhooks", json=spec, headers=oper)).status == 403
    assert (await client.get("/api/v1/webhooks", headers=viewer)).status == 403
    resp = await client.post("/api/v1/webhooks", json=spec, headers=admin)
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    secret, ep = created["hmac_secret"], created["webhook"]
    assert secret.startswith("whsec_") and created["public_key"] == client.server.app[KEYS_KEY].webhook_public_key
    assert ep["apps"] == ["fall"] and ep["enabled"] is True and ep["created_by"].startswith("apitoken:")

    listed = await client.get("/api/v1/webhooks", headers=oper)
    assert listed.status == 200
    text = await listed.text()
    assert secret not in text and "hmac_secret" not in text
    assert (await listed.json())["webhooks"][0]["has_hmac"] is True
    key = await client.get("/api/v1/webhooks/public-key", headers=oper)
    assert (await key.json())["public_key"] == client.server.app[KEYS_KEY].webhook_public_key

    # Delivered through the API-made endpoint, verifiable with the secret it showed once.
    store(client, clock, app="fall", type="fall", severity="critical", data={})
    await until(lambda: len(receiver.accepted()) == 1)
    verify(client, clock, receiver.requests[0], secret)
    url = f"/api/v1/webhooks/{ep['id']}/deliveries"
    got = await (await client.get(url + "?status=delivered", headers=oper)).json()
    assert [d["status"] for d in got["deliveries"]] == ["delivered"] and "body" not in got["deliveries"][0]

    resp = await client.patch(f"/api/v1/webhooks/{ep['id']}", json={"enabled": False, "hmac": True}, headers=admin)
    assert resp.status == 200
    patched = await resp.json()
    rotated = patched["hmac_secret"]
    assert rotated.startswith("whsec_") and rotated != secret
    assert patched["webhook"]["enabled"] is False and patched["webhook"]["disabled_reason"].startswith("disabled by")

    dead = await client.post("/api/v1/webhooks/deliveries/1/redeliver", headers=admin)
    assert dead.status == 409
    assert (await client.post("/api/v1/webhooks/deliveries/999/redeliver", headers=admin)).status == 404

    entries = audit.query(db_of(client).db, text="webhook")
    assert [e["action"] for e in reversed(entries)] == ["webhook.create", "webhook.update"]
    assert all(e["actor"] == ep["created_by"] for e in entries)
    audit_text = json.dumps(entries)
    assert secret not in audit_text and rotated not in audit_text

    resp = await client.delete(f"/api/v1/webhooks/{ep['id']}", headers=admin)
    assert resp.status == 200
    assert (await client.delete(f"/api/v1/webhooks/{ep['id']}", headers=admin)).status == 404
    assert (await client.get(url, headers=oper)).status == 404
    assert audit.query(db_of(client).db, action="webhook.delete")[0]["target"] == f"webhook:{ep['id']}"


async def test_webhook_api_refuses_bad_input_with_4xx(start_fleet, clock, receiver_url):
    client = await start_fleet()
    admin = api_headers(client, "admin", "admin-token")
    ok = {"name": "x", "url": receiver_url}
    cases = [
        (dict(data=b"{}", headers={**admin, "Content-Type": "text/plain"}), 415),
        (dict(data=b"{not json", headers={**admin, "Content-Type": "application/json"}), 400),
        (dict(json={**ok, "surprise": 1}, headers=admin), 400),
        (dict(json={**ok, "format": "hl7"}, headers=admin), 400),
        (dict(json={**ok, "apps": ["cctv"]}, headers=admin), 400),
        (dict(json={**ok, "min_severity": "apocalyptic"}, headers=admin), 400),
        (dict(json={**ok, "name": ""}, headers=admin), 400),
        (dict(json={"name": "x"}, headers=admin), 400),
        (dict(json={**ok, "url": "https://169.254.169.254/"}, headers=admin), 400),
        (dict(json={**ok, "url": "https://no-such-host.invalid/"}, headers=admin), 400),
        (dict(json=[1, 2], headers=admin), 400),
    ]
    for kwargs, status in cases:
        resp = await client.post("/api/v1/webhooks", **kwargs)
        assert resp.status == status, (kwargs, await resp.text())
        assert "error" in await resp.json()
    ep = await (await client.post("/api/v1/webhooks", json=ok, headers=admin)).json()
    path = f"/api/v1/webhooks/{ep['webhook']['id']}"
    for body, status in (({}, 400), ({"enabled": "maybe"}, 400), ({"url": "http://[fe80::1]/"}, 400)):
        assert (await client.patch(path, json=body, headers=admin)).status == status
    assert (await client.patch("/api/v1/webhooks/999", json={"name": "y"}, headers=admin)).status == 404
    for query in ("?status=lost", "?limit=abc", "?limit=0"):
        assert (await client.get(path + "/deliveries" + query, headers=admin)).status == 400
    assert len(list_endpoints(db_of(client).db)) == 1
