"""Alerts: list and filters, acknowledge/resolve with the audit log, and the Server-Sent Events stream
(wake-ups, catching up from the database, Last-Event-ID replay, ending with the credentials), against the
real aiohttp app and a real SQLite file."""

import asyncio
import json

import pytest

from fleet import intake
from fleet.accounts import service as operators
from fleet.alerts.store import feed_head
from fleet.alerts.streams import BROKER_KEY, notify
from fleet.audit import log as audit
from fleet.auth.operator import COOKIE_NAME, CSRF_HEADER
from fleet.health.monitor import check_presence
from fleet.store.migrations import m0008_alerts
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY
from tests.fleet.helpers import api_headers, bearer, enroll_device, insert_device, live_db, start_app
from wardsight import wire

T0 = 1_800_000_000.0
PASSWORD = "correct horse battery"


# ---- helpers -------------------------------------------------------------------------------------------------


async def session(client, username, role):
    app = client.server.app
    operators.create_operator(live_db(client), username, PASSWORD, role, app[CLOCK_KEY](), app[CONFIG_KEY])
    resp = await client.post("/api/v1/session", json={"username": username, "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    return {COOKIE_NAME: resp.cookies[COOKIE_NAME].value, CSRF_HEADER: (await resp.json())["csrf_token"]}


def cookie_headers(login, csrf=True):
    headers = {"Cookie": f"{COOKIE_NAME}={login[COOKIE_NAME]}"}
    if csrf:
        headers[CSRF_HEADER] = login[CSRF_HEADER]
    return headers


def store(client, device_id, *, room="3B-12", app="fall", type="fall", severity="critical", at=None, **fields):
    clock = client.server.app[CLOCK_KEY]
    event = wire.Event(
        event_id=wire.new_event_id(), device_id=device_id, room=room, app=app, type=type, severity=severity,
        time=at if at is not None else clock(), **fields,
    )  # fmt: skip
    assert intake.store(client.server.app[DB_KEY], event, clock())
    return event


class SSE:
    """Reads an event stream the way EventSource does: blocks of lines, ``id``, ``data``, comments."""

    def __init__(self, resp) -> None:
        self.resp = resp

    async def block(self, timeout=5.0):
        async def read():
            block = {"comments": [], "data": []}
            while True:
                raw = await self.resp.content.readline()
                if raw == b"":
                    return None
                line = raw.decode("utf-8").rstrip("\n")
                if line == "":
                    if block["comments"] or block["data"] or "id" in block:
                        break
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    block["comments"].append(value)
                elif name == "data":
                    block["data"].append(value)
                else:
                    block[name] = value
            block["json"] = json.loads("\n".join(block["data"])) if block["data"] else None
            return block

        return await asyncio.wait_for(read(), timeout)

    async def message(self, timeout=5.0):
        """The next block with data (keepalives skipped)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            block = await self.block(max(0.01, deadline - asyncio.get_running_loop().time()))
            if block is None or block["json"] is not None:
                return block

    async def nothing_for(self, seconds):
        with pytest.raises(TimeoutError):
            await self.message(seconds)


async def open_stream(client, headers, query="", **extra):
    resp = await client.get("/api/v1/alerts/stream" + query, headers={**headers, **extra})
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/event-stream"
    stream = SSE(resp)
    ready = await stream.message()
    assert ready["json"]["kind"] == "ready" and ready["id"] == str(ready["json"]["cursor"])
    return stream, ready


@pytest.fixture
async def client(aiohttp_client, tmp_path, clock):
    client = await start_app(aiohttp_client, tmp_path, clock)
    insert_device(live_db(client), "dev-a", room="3B-12", ward="3B", site="st-marys", enrolled_at=T0)
    insert_device(live_db(client), "dev-b", room="4A-01", ward="4A", site="st-marys", enrolled_at=T0)
    insert_device(live_db(client), "dev-c", room="9Z-99", ward="9Z", site="elsewhere", enrolled_at=T0)
    return client


def broker(client):
    return client.server.app[BROKER_KEY]


# ---- listing -----------------------------------------------------------------------------------------------


async def test_alerts_are_the_warning_and_critical_events_newest_first_with_filters(client, clock):
    viewer = api_headers(client, "viewer")
    store(client, "dev-a", app="occupancy", type="count_changed", severity="info", data={"count": 1})
    fall = store(client, "dev-a")
    clock.now += 10
    missed = store(client, "dev-b", room="4A-01", app="hand_hygiene", type="missed", severity="warning")
    clock.now += 10
    offline = wire.Event(event_id=wire.new_event_id(), device_id="dev-c", room="9Z-99", app="system",
                         type="device_offline", severity="warning", time=clock.now, data={"silent_s": 1.0})  # fmt: skip
    intake.store(client.server.app[DB_KEY], offline, clock.now)
    store(client, "dev-c", room="9Z-99", app="system", type="device_online", severity="info")

    resp = await client.get("/api/v1/alerts", headers=viewer)
    assert resp.status == 200
    body = await resp.json()
    assert [a["event_id"] for a in body["alerts"]] == [offline.event_id, missed.event_id, fall.event_id]
    first = body["alerts"][-1]
    assert first["state"] == "open" and first["room"] == "3B-12" and first["ward"] == "3B"
    assert first["site"] == "st-marys" and first["severity"] == "critical" and first["data"] == {}
    assert body["next_before"] is None and isinstance(body["stream_after"], int)

    async def ids(query):
        resp = await client.get("/api/v1/alerts" + query, headers=viewer)
        assert resp.status == 200, await resp.text()
        return [a["event_id"] for a in (await resp.json())["alerts"]]

    assert await ids("?room=4A-01") == [missed.event_id]
    assert await ids("?ward=3B") == [fall.event_id]
    assert await ids("?site=st-marys") == [missed.event_id, fall.event_id]
    assert await ids(f"?since={T0 + 10}") == [offline.event_id, missed.event_id]
    assert await ids("?state=acknowledged") == []
    page = await (await client.get("/api/v1/alerts?limit=2", headers=viewer)).json()
    assert [a["event_id"] for a in page["alerts"]] == [offline.event_id, missed.event_id]
    assert await ids(f"?limit=2&before={page['next_before']}") == [fall.event_id]
    room = await client.get("/api/v1/rooms/3B-12/alerts", headers=viewer)
    assert [a["event_id"] for a in (await room.json())["alerts"]] == [fall.event_id]


@pytest.mark.parametrize(
    "query", ["?state=closed", "?limit=0", "?limit=501", "?since=soon", "?room=3B%2012", "?colour=red", "?since=nan"]
)
async def test_bad_list_parameters_are_refused(client, query):
    resp = await client.get("/api/v1/alerts" + query, headers=api_headers(client, "viewer"))
    assert resp.status == 400 and "error" in await resp.json()


async def test_the_alert_routes_need_a_login(client):
    assert (await client.get("/api/v1/alerts")).status == 401
    assert (await client.get("/api/v1/alerts/stream")).status == 401
    assert (await client.get("/api/v1/rooms/3B-12/alerts")).status == 401


# ---- acknowledge and resolve ---------------------------------------------------------------------------------


async def test_acknowledge_then_resolve_is_audited_and_wrong_transitions_are_409(client, clock):
    fall = store(client, "dev-a")
    login = await session(client, "nora", "operator")
    url = f"/api/v1/alerts/{fall.event_id}"

    no_csrf = await client.post(url + "/acknowledge", headers=cookie_headers(login, csrf=False))
    assert no_csrf.status == 403
    clock.now += 30
    ack = await client.post(url + "/acknowledge", json={"note": "on my way"}, headers=cookie_headers(login))
    assert ack.status == 200, await ack.text()
    alert = (await ack.json())["alert"]
    assert alert["state"] == "acknowledged" and alert["acknowledged_by"] == "user:nora"
    assert alert["acknowledged_at"] == T0 + 30 and alert["note"] == "on my way"
    again = await client.post(url + "/acknowledge", headers=cookie_headers(login))
    assert again.status == 409 and "acknowledged" in (await again.json())["error"]

    clock.now += 60
    resolved = await client.post(url + "/resolve", headers=cookie_headers(login))  # no body: no note
    alert = (await resolved.json())["alert"]
    assert resolved.status == 200 and alert["state"] == "resolved" and alert["resolved_by"] == "user:nora"
    assert alert["resolved_at"] == T0 + 90 and alert["note"] == "on my way"  # the earlier note is kept
    assert (await client.post(url + "/resolve", headers=cookie_headers(login))).status == 409
    assert (await client.post(url + "/acknowledge", headers=cookie_headers(login))).status == 409

    entries = audit.query(live_db(client), target=f"event:{fall.event_id}")
    assert [(e["actor"], e["action"]) for e in reversed(entries)] == [
        ("user:nora", "alert.acknowledge"),
        ("user:nora", "alert.resolve"),
    ]
    assert entries[-1]["details"] == {"room": "3B-12", "app": "fall", "type": "fall", "note": "on my way"}
    assert audit.verify(live_db(client)).ok
    listed = await client.get("/api/v1/alerts?state=resolved", headers=cookie_headers(login))
    assert [a["event_id"] for a in (await listed.json())["alerts"]] == [fall.event_id]


async def test_an_open_alert_can_be_resolved_directly_and_refusals_change_nothing(client):
    fall = store(client, "dev-a")
    info = store(client, "dev-a", app="occupancy", type="count_changed", severity="info")
    operator, viewer = api_headers(client, "operator"), api_headers(client, "viewer")
    before = len(audit.query(live_db(client)))
    assert (await client.post(f"/api/v1/alerts/{fall.event_id}/resolve", headers=viewer)).status == 403
    assert (await client.post(f"/api/v1/alerts/{info.event_id}/resolve", headers=operator)).status == 404
    assert (await client.post("/api/v1/alerts/no-such-event/resolve", headers=operator)).status == 404
    for body in ({"note": "x", "colour": "red"}, {"note": ""}, {"note": "a" * 501}, {"note": "bell\x07"}):
        resp = await client.post(f"/api/v1/alerts/{fall.event_id}/resolve", json=body, headers=operator)
        assert resp.status == 400, body
    text = await client.post(
        f"/api/v1/alerts/{fall.event_id}/resolve", data="note", headers={**operator, "Content-Type": "text/plain"}
    )
    assert text.status == 415
    assert len(audit.query(live_db(client))) == before and live_db(client)["alert_states"].count == 0
    empty_json = await client.post(
        f"/api/v1/alerts/{fall.event_id}/resolve", data=b"", headers={**operator, "Content-Type": "application/json"}
    )
    assert empty_json.status == 200 and (await empty_json.json())["alert"]["state"] == "resolved"


# ---- the stream -----------------------------------------------------------------------------------------------


async def test_a_notified_alert_reaches_the_stream_and_nothing_polls_meanwhile(client):
    broker(client).heartbeat_seconds = 3600  # no timer: only a wake-up can deliver
    stream, ready = await open_stream(client, api_headers(client, "viewer"))
    fall = store(client, "dev-a")  # stored, but nobody said so
    await stream.nothing_for(0.5)
    notify(client.server.app, fall)
    got = await stream.message()
    assert got["json"]["kind"] == "alert" and got["json"]["alert"]["event_id"] == fall.event_id
    assert got["json"]["alert"]["state"] == "open" and int(got["id"]) > int(ready["id"])
    info = store(client, "dev-a", app="occupancy", type="count_changed", severity="info")
    notify(client.server.app, info)  # not an alert: no wake-up, nothing to send anyway
    notify(client.server.app, None)
    await stream.nothing_for(0.3)


async def test_a_missed_notify_is_caught_up_at_the_next_heartbeat(client):
    broker(client).heartbeat_seconds = 0.2
    stream, _ = await open_stream(client, api_headers(client, "viewer"))
    keepalive = await stream.block()
    assert keepalive["comments"] == ["keepalive"] and keepalive["json"] is None
    fall = store(client, "dev-a")
    got = await stream.message(2.0)
    assert got["json"]["alert"]["event_id"] == fall.event_id


async def test_reconnecting_with_last_event_id_replays_what_was_missed_in_order(client, clock):
    viewer, operator = api_headers(client, "viewer"), api_headers(client, "operator")
    broker(client).heartbeat_seconds = 3600
    listed = await (await client.get("/api/v1/alerts", headers=viewer)).json()
    first = store(client, "dev-a")  # between the list and the stream: ?after= must still deliver it
    stream, _ = await open_stream(client, viewer, f"?after={listed['stream_after']}")
    got = await stream.message()
    assert got["json"]["alert"]["event_id"] == first.event_id
    last_id = got["id"]
    stream.resp.close()

    second = store(client, "dev-b", room="4A-01", app="bed_exit", type="bed_exit", severity="warning")
    clock.now += 5
    ack = await client.post(f"/api/v1/alerts/{first.event_id}/acknowledge", json={"note": "seen"}, headers=operator)
    assert ack.status == 200
    store(client, "dev-a", app="occupancy", type="count_changed", severity="info")

    again, ready = await open_stream(client, viewer, **{"Last-Event-ID": last_id})
    assert ready["id"] == last_id
    replay = [await again.message(), await again.message()]
    assert [(m["json"]["kind"], m["json"]["alert"]["event_id"]) for m in replay] == [
        ("alert", second.event_id),
        ("acknowledged", first.event_id),
    ]
    change = replay[1]["json"]
    assert change["alert"]["state"] == "acknowledged"
    assert change["change"] == {"by": change["change"]["by"], "at": T0 + 5, "note": "seen"}
    assert change["change"]["by"].startswith("apitoken:")
    assert int(replay[0]["id"]) < int(replay[1]["id"])
    await again.nothing_for(0.3)
    resolve = await client.post(f"/api/v1/alerts/{first.event_id}/resolve", headers=operator)
    assert resolve.status == 200  # the route wakes the streams itself
    live = await again.message()
    assert live["json"]["kind"] == "resolved" and live["json"]["alert"]["state"] == "resolved"


async def test_a_filtered_stream_sends_only_its_rooms_alerts(client):
    broker(client).heartbeat_seconds = 3600
    stream, _ = await open_stream(client, api_headers(client, "viewer"), "?ward=4A")
    for _ in range(3):
        notify(client.server.app, store(client, "dev-a"))
    theirs = store(client, "dev-b", room="4A-01")
    notify(client.server.app, theirs)
    got = await stream.message()
    assert got["json"]["alert"]["event_id"] == theirs.event_id
    await stream.nothing_for(0.3)


async def test_a_device_event_and_an_offline_announcement_reach_the_stream(aiohttp_client, tmp_path, clock):
    client = await start_app(aiohttp_client, tmp_path, clock)
    broker(client).heartbeat_seconds = 0.2
    stream, _ = await open_stream(client, api_headers(client, "viewer"))
    device = await enroll_device(client, tmp_path / "fleet.db", clock)
    fall = wire.Event(event_id=wire.new_event_id(), device_id=device.device_id, room="3B-12", app="fall",
                      type="fall", severity="critical", time=clock.now, data={"drop": 0.4})  # fmt: skip
    resp = await device.post_event(fall)
    assert resp.status == 201, await resp.text()
    got = await stream.message(3.0)
    assert got["json"]["alert"]["event_id"] == fall.event_id and got["json"]["alert"]["data"] == {"drop": 0.4}

    clock.now += client.server.app[CONFIG_KEY].offline_grace_seconds + 5
    (announced,) = check_presence(client.server.app, clock.now)
    assert announced.kind == "offline"
    offline = await stream.message(3.0)
    alert = offline["json"]["alert"]
    assert (alert["app"], alert["type"], alert["device_id"]) == ("system", "device_offline", device.device_id)


async def test_the_stream_ends_when_its_token_is_revoked(client, clock):
    broker(client).heartbeat_seconds = 0.2
    token = operators.create_api_token(live_db(client), "wall", "viewer", "system", clock())
    stream, _ = await open_stream(client, bearer(token))
    await stream.block()  # a keepalive: still allowed
    operators.revoke_api_token(live_db(client), token.split(".")[1], actor="system", now=clock())
    closed = await stream.message(2.0)
    assert closed["json"]["kind"] == "closed"
    assert await stream.block(2.0) is None  # the server ended the response


async def test_the_stream_ends_when_the_session_idles_out_and_does_not_keep_it_alive(client, clock):
    broker(client).heartbeat_seconds = 0.2
    login = await session(client, "wally", "viewer")
    stream, _ = await open_stream(client, cookie_headers(login, csrf=False))
    await stream.block()
    idle = client.server.app[CONFIG_KEY].session_idle_seconds
    clock.now += idle - 1  # the open stream does not refresh the session's idle timer...
    await stream.block()
    clock.now += 2  # ...so it ends when the session would
    assert (await stream.message(2.0))["json"]["kind"] == "closed"


@pytest.mark.parametrize("header", ["abc", "-1", "1.5", "9" * 19])
async def test_a_malformed_last_event_id_is_refused(client, header):
    resp = await client.get("/api/v1/alerts/stream", headers={**api_headers(client, "viewer"), "Last-Event-ID": header})
    assert resp.status == 400


def test_migrate_is_idempotent_and_the_trigger_feeds_only_alerts(tmp_path):
    from fleet.store.db import FleetDB

    fleet = FleetDB(tmp_path / "fleet.db")
    try:
        m0008_alerts.apply(fleet.db.conn)
        m0008_alerts.apply(fleet.db.conn)
        fleet.db["devices"].insert({"id": "dev-a", "name": "cam", "room": "3B-12", "public_key": "k" * 43,
                                    "enrolled_at": T0})  # fmt: skip
        for severity in ("info", "warning", "critical"):
            event = wire.Event(event_id=wire.new_event_id(), device_id="dev-a", room="3B-12", app="mask",
                               type="no_mask", severity=severity, time=T0)  # fmt: skip
            intake.store(fleet, event, T0)
            intake.store(fleet, event, T0)  # a duplicate is not stored, so not fed twice
        kinds = [r["kind"] for r in fleet.db.query("SELECT kind FROM alert_feed ORDER BY seq")]
        assert kinds == ["alert", "alert"] and feed_head(fleet.db) == 2
    finally:
        fleet.close()
