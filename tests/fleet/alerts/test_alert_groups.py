"""Grouped alerts and incidents that end (issue 15): a room's repeated critical alerts are one alert with a count,
the fall app's ``resolved`` resolves its fall alerts by the system (audited), webhooks still get every event, and
the API and stream show the device's name and the group; against the real app and a real SQLite file."""

import pytest

from fleet import intake
from fleet.alerts.streams import BROKER_KEY, notify
from fleet.audit import log as audit
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.webhooks.store import create_endpoint
from tests.fleet.alerts.test_alerts_api import T0, open_stream
from tests.fleet.helpers import api_headers, insert_device, live_db, start_app
from wardsight import wire


@pytest.fixture
async def client(aiohttp_client, tmp_path, clock):
    client = await start_app(aiohttp_client, tmp_path, clock)
    db = live_db(client)
    insert_device(db, "dev-a", name="Bed 1 camera", room="3B-12", ward="3B", site="st-marys", enrolled_at=T0)
    insert_device(db, "dev-b", name="Door camera", room="3B-12", ward="3B", site="st-marys", enrolled_at=T0)
    insert_device(db, "dev-c", name="4A camera", room="4A-01", ward="4A", site="st-marys", enrolled_at=T0)
    return client


def send(client, device_id="dev-a", type="fall", *, room="3B-12", app="fall", severity=None, track_id=1, **data):
    """Store an event as the device API does (intake.store, then the listeners) and return it."""
    clock = client.server.app[CLOCK_KEY]
    severity = severity or ("info" if type == "resolved" else "critical")
    event = wire.Event(event_id=wire.new_event_id(), device_id=device_id, room=room, app=app, type=type,
                       severity=severity, time=clock(), track_id=track_id, data=data)  # fmt: skip
    assert intake.store(client.server.app[DB_KEY], event, clock())
    notify(client.server.app, event)
    return event


async def alerts(client, query=""):
    resp = await client.get("/api/v1/alerts" + query, headers=api_headers(client, "viewer"))
    assert resp.status == 200, await resp.text()
    return (await resp.json())["alerts"]


async def test_a_looping_fall_is_one_open_alert_with_a_count_and_every_event_still_goes_to_webhooks(client, clock):
    db = live_db(client)
    create_endpoint(db, name="nurse call", url="https://nurse-call.example.org/hook", format="standard", apps=[],
                    min_severity="info", with_hmac=False, created_by="test", now=T0, allow_insecure=False)  # fmt: skip
    sent = []
    for loop in range(18):  # the looping clip: a fall and a still_on_floor each loop, a new track each time
        sent.append(send(client, type="fall", track_id=loop))
        clock.now += 10
        sent.append(send(client, type="still_on_floor", track_id=loop))
        clock.now += 23
    other = send(client, "dev-c", room="4A-01")

    listed = await alerts(client)
    assert [a["event_id"] for a in listed] == [other.event_id, sent[0].event_id]
    group = listed[1]
    assert group["count"] == 36 and group["state"] == "open"
    assert group["last_event_id"] == sent[-1].event_id and group["last_type"] == "still_on_floor"
    assert group["last_seen_at"] == T0 + 17 * 33 + 10 and group["received_at"] == T0
    assert group["device_name"] == "Bed 1 camera" and group["room"] == "3B-12"
    assert listed[0]["count"] == 1 and listed[0]["last_event_id"] == other.event_id
    assert [a["count"] for a in await alerts(client, "?room=3B-12&state=open")] == [36]
    # Webhook semantics are unchanged: each event is delivered on its own.
    delivered = {r["event_id"] for r in db.query("SELECT event_id FROM webhook_deliveries")}
    assert delivered == {e.event_id for e in [*sent, other]}


async def test_warnings_and_other_apps_are_not_grouped_into_a_fall(client):
    fall = send(client)
    exits = [send(client, app="bed_exit", type="bed_exit", severity="warning") for _ in range(2)]
    assert [(a["event_id"], a["count"]) for a in await alerts(client)] == [
        (exits[1].event_id, 1), (exits[0].event_id, 1), (fall.event_id, 1),
    ]  # fmt: skip


@pytest.mark.parametrize(("got_up", "reason"), [(True, "got up"), (False, "attended")])
async def test_the_devices_resolved_resolves_the_fall_alert_by_the_system_with_an_audit_entry(client, clock, got_up,
                                                                                              reason):  # fmt: skip
    broker = client.server.app[BROKER_KEY]
    broker.heartbeat_seconds = 3600  # only a wake-up can deliver
    stream, _ = await open_stream(client, api_headers(client, "viewer"))
    fall = send(client, track_id=7)
    assert (await stream.message())["json"]["kind"] == "alert"
    clock.now += 30
    still = send(client, type="still_on_floor", track_id=7)
    grouped = (await stream.message())["json"]
    assert grouped["kind"] == "grouped" and grouped["event_id"] == still.event_id
    assert grouped["alert"]["event_id"] == fall.event_id and grouped["alert"]["count"] == 2
    clock.now += 15
    ended = send(client, type="resolved", track_id=7, got_up=got_up)

    resolved = (await stream.message())["json"]  # the resolved event woke the stream
    assert resolved["kind"] == "resolved" and resolved["change"] == {"by": "system", "at": T0 + 45, "note": reason}
    (alert,) = await alerts(client, "?state=resolved")
    assert alert["event_id"] == fall.event_id and alert["resolved_by"] == "system" and alert["note"] == reason
    assert await alerts(client, "?state=open") == []
    (entry,) = audit.query(live_db(client), target=f"event:{fall.event_id}")
    assert entry["actor"] == "system" and entry["action"] == "alert.resolve"
    assert entry["details"] == {"room": "3B-12", "app": "fall", "type": "fall", "note": reason, "reason": reason,
                                "ended_by": ended.event_id, "track_id": 7}  # fmt: skip
    assert audit.verify(live_db(client)).ok


async def test_only_the_same_device_and_track_end_an_incident_and_a_group_waits_for_every_person(client, clock):
    fall = send(client, track_id=1)
    send(client, track_id=2)  # a second person down in the same room: same alert
    send(client, "dev-b", type="resolved", track_id=1, got_up=True)  # another camera's track 1: someone else
    send(client, type="resolved", track_id=3, got_up=True)  # another track
    send(client, "dev-c", room="4A-01", type="resolved", track_id=1, got_up=True)
    (alert,) = await alerts(client)
    assert alert["state"] == "open" and alert["count"] == 2
    send(client, type="resolved", track_id=1, got_up=True)
    assert (await alerts(client))[0]["state"] == "open"  # the person on track 2 is still down
    send(client, type="resolved", track_id=2, got_up=False)
    (alert,) = await alerts(client)
    assert alert["event_id"] == fall.event_id and alert["state"] == "resolved" and alert["note"] == "attended"


async def test_after_an_acknowledgement_a_new_fall_opens_a_new_alert_and_follow_ups_join_their_own(client, clock):
    operator = api_headers(client, "operator")
    first = send(client, track_id=1)
    ack = await client.post(f"/api/v1/alerts/{first.event_id}/acknowledge", json={"note": "on my way"},
                            headers=operator)  # fmt: skip
    assert ack.status == 200
    clock.now += 5
    second = send(client, track_id=2)  # someone else falls: must be seen again
    clock.now += 5
    follow_up = send(client, type="still_on_floor", track_id=1)  # the first person, still down
    again = send(client, track_id=4)  # while the second alert is open, it joins that one
    listed = await alerts(client)
    assert [(a["event_id"], a["state"], a["count"]) for a in listed] == [
        (second.event_id, "open", 2),
        (first.event_id, "acknowledged", 2),
    ]
    assert listed[1]["last_event_id"] == follow_up.event_id and listed[0]["last_event_id"] == again.event_id
    # Acting on an event counted in a group acts on the group.
    resolved = await client.post(f"/api/v1/alerts/{again.event_id}/resolve", headers=operator)
    assert resolved.status == 200 and (await resolved.json())["alert"]["event_id"] == second.event_id
    third = send(client, track_id=5)  # the room's alerts are acknowledged or resolved: a new one opens
    assert [a["event_id"] for a in await alerts(client, "?state=open")] == [third.event_id]


async def test_a_resolved_after_an_operator_resolved_the_alert_changes_nothing(client):
    operator = api_headers(client, "operator")
    fall = send(client, track_id=3)
    assert (await client.post(f"/api/v1/alerts/{fall.event_id}/resolve", headers=operator)).status == 200
    send(client, type="resolved", track_id=3, got_up=True)
    (alert,) = await alerts(client)
    assert alert["resolved_by"].startswith("apitoken:") and alert["note"] is None
    assert [e["actor"] for e in audit.query(live_db(client), action="alert.resolve")] == [alert["resolved_by"]]
