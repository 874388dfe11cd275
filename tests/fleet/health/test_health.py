"""Heartbeats, presence (offline / back online announcements), the fleet summary and /metrics.

Presence decisions are unit-tested as pure functions; everything else runs on a real SQLite file and,
where the app is involved, the real aiohttp application.
"""

import asyncio
import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleet.accounts import service as operators
from fleet.app import create_app
from fleet.config import ServerConfig
from fleet.health.heartbeats import accept_heartbeat
from fleet.health.metrics import METRICS_KEY
from fleet.health.monitor import check_presence
from fleet.health.presence import PresenceRecord, Transition, is_offline, transitions
from fleet.health.store import (
    SAMPLES_PER_DEVICE,
    UnknownDeviceError,
    device_health,
    health_history,
    mark_heard,
    record_heartbeat,
)
from fleet.health.summary import fleet_summary
from fleet.store.db import FleetDB
from fleet.web.appkeys import DB_KEY
from tests.fleet.helpers import Clock, bearer, insert_device
from wardsight import wire

T0 = 1_800_000_000.0
GRACE = 90.0


# ---- presence: pure decisions ------------------------------------------------------------------------------


def rec(device_id="dev-a", enrolled_at=0.0, **over):
    return PresenceRecord(device_id, enrolled_at, **over)


def test_a_never_heard_device_is_silent_since_enrollment():
    r = rec(enrolled_at=1000.0)
    assert transitions([r], 1000.0 + GRACE, GRACE) == []
    assert transitions([r], 1000.0 + GRACE + 0.001, GRACE) == [
        Transition("dev-a", "offline", 1000.0 + GRACE + 0.001, 1000.0, pytest.approx(90.001))
    ]


def test_silence_of_exactly_the_grace_period_is_still_online():
    r = rec(enrolled_at=0.0, last_heard_at=500.0)
    assert transitions([r], 500.0 + GRACE, GRACE) == []
    assert not is_offline(r, 500.0 + GRACE, GRACE)
    (t,) = transitions([r], 500.0 + GRACE + 1e-6, GRACE)
    assert (t.kind, t.silent_since) == ("offline", 500.0)  # counted from the last contact, not enrollment
    assert is_offline(r, 500.0 + GRACE + 1e-6, GRACE)


def test_an_offline_device_is_announced_once_and_its_return_once():
    offline = rec(last_heard_at=500.0, offline_since=500.0)
    assert transitions([offline], 10_000.0, GRACE) == []  # already announced: nothing more, however long
    assert is_offline(offline, 10_000.0, GRACE)
    back = rec(last_heard_at=10_010.0, offline_since=500.0, returned_at=10_000.0)
    assert transitions([back], 10_020.0, GRACE) == [Transition("dev-a", "online", 10_000.0, 500.0, 9500.0)]
    assert not is_offline(back, 10_020.0, GRACE)


@pytest.mark.parametrize("status", ["pending", "quarantined", "revoked"])
def test_devices_that_are_not_active_are_never_announced(status):
    silent = rec(status=status)
    returning = rec(status=status, last_heard_at=5000.0, offline_since=0.0, returned_at=5000.0)
    assert transitions([silent, returning], 1e6, GRACE) == []


def test_a_record_from_before_statuses_counts_as_active():
    assert [t.kind for t in transitions([rec(status=None)], 1e6, GRACE)] == ["offline"]


def test_a_clock_going_backwards_neither_declares_offline_nor_revives():
    heard_later = rec(last_heard_at=5000.0)
    assert transitions([heard_later], 1000.0, GRACE) == []  # now before the last contact: silence < 0
    assert not is_offline(heard_later, 1000.0, GRACE)
    offline = rec(last_heard_at=5000.0, offline_since=5000.0)
    assert transitions([offline], 1000.0, GRACE) == []  # not heard again: stays offline
    # Heard again by a clock that stepped back before the silence began: back online, silence clamped to 0.
    back = rec(last_heard_at=4000.0, offline_since=5000.0, returned_at=4000.0)
    assert transitions([back], 4001.0, GRACE) == [Transition("dev-a", "online", 4000.0, 5000.0, 0.0)]


def test_silence_before_the_server_started_watching_is_not_held_against_a_device():
    r = rec(last_heard_at=100.0)  # the server was down from 100 to 10_000
    assert transitions([r], 10_000.0 + GRACE, GRACE, watch_start=10_000.0) == []
    (t,) = transitions([r], 10_000.0 + GRACE + 1, GRACE, watch_start=10_000.0)
    assert (t.silent_since, t.silent_s) == (100.0, 10_000.0 + GRACE + 1 - 100.0)


def test_many_devices_each_decided_on_its_own_and_ordered_by_id():
    records = []
    expected = {}
    for i in range(2000):
        dev = f"dev-{i:04d}"
        match i % 4:
            case 0:  # heard recently
                records.append(rec(dev, last_heard_at=9_950.0))
            case 1:  # silent too long
                records.append(rec(dev, last_heard_at=1_000.0))
                expected[dev] = "offline"
            case 2:  # offline, came back
                records.append(rec(dev, last_heard_at=9_990.0, offline_since=1_000.0, returned_at=9_980.0))
                expected[dev] = "online"
            case _:  # offline and still silent
                records.append(rec(dev, last_heard_at=1_000.0, offline_since=1_000.0))
    records.reverse()
    got = transitions(records, 10_000.0, GRACE)
    assert {t.device_id: t.kind for t in got} == expected
    assert [t.device_id for t in got] == sorted(expected)


@pytest.mark.parametrize("grace", [-1.0, float("nan"), float("inf")])
def test_a_nonsense_grace_period_is_refused(grace):
    with pytest.raises(ValueError, match="grace_s"):
        transitions([rec()], 100.0, grace)


# ---- storage --------------------------------------------------------------------------------------------


@pytest.fixture
def fleet(tmp_path):
    db = FleetDB(tmp_path / "fleet.db")
    yield db
    db.close()


def add_device(fleet, device_id, room="3B-12", enrolled_at=T0, status="active"):
    insert_device(
        fleet,
        device_id,
        room=room,
        enrolled_at=enrolled_at,
        status=status,
        name=f"cam-{device_id}",
        last_seen=enrolled_at,
    )


def beat(device_id="dev-a", sent_at=T0, **over):
    fields = dict(
        device_id=device_id,
        sent_at=sent_at,
        uptime_s=3600.0,
        agent_version="0.4.0",
        accelerator="cpu",
        cpu_temp_c=55.5,
        mem_used_mb=812.0,
        mem_total_mb=3792.0,
        fps=9.5,
        frames_processed=34_000,
        frames_dropped=12,
        stage_ms={"pose": 61.5, "tracking": 0.4},
        models={"movenet": "1.0"},
    )
    fields.update(over)
    return wire.Health(**fields)


def system_events(fleet):
    rows = fleet.db.conn.execute(
        "SELECT device_id, room, type, severity, time, received_at, data FROM events WHERE app = 'system'"
        " ORDER BY rowid"
    ).fetchall()
    return [(d, room, typ, sev, t, r, json.loads(data)) for d, room, typ, sev, t, r, data in rows]


def test_a_heartbeat_is_stored_with_the_device_clock_skew(fleet):
    add_device(fleet, "dev-a")
    record_heartbeat(fleet.db, "dev-a", beat(sent_at=T0 + 2.5, warnings=["camera_reconnect"]), T0 + 10)
    got = device_health(fleet.db, "dev-a")
    assert got is not None
    assert got["clock_skew_s"] == pytest.approx(-7.5)  # device clock 7.5 s behind the server's
    assert got["received_at"] == T0 + 10
    assert got["last_heard_at"] == T0 + 10 and got["offline_since"] is None
    assert got["stage_ms"] == {"pose": 61.5, "tracking": 0.4}
    assert got["models"] == {"movenet": "1.0"}
    assert got["warnings"] == ["camera_reconnect"]
    assert (got["fps"], got["frames_dropped"], got["accelerator_configured"]) == (9.5, 12, None)
    assert got["degraded"] == ["warnings"]
    assert device_health(fleet.db, "dev-b") is None

    record_heartbeat(fleet.db, "dev-a", beat(sent_at=T0 + 80, fps=6.0), T0 + 70)
    got = device_health(fleet.db, "dev-a")
    assert (got["clock_skew_s"], got["fps"], got["warnings"], got["degraded"]) == (10.0, 6.0, [], [])
    assert fleet.db["health_latest"].count == 1


def test_a_heartbeat_must_come_from_a_known_device_and_name_it(fleet):
    add_device(fleet, "dev-a")
    with pytest.raises(ValueError, match="dev-b"):
        record_heartbeat(fleet.db, "dev-a", beat("dev-b"), T0)
    with pytest.raises(UnknownDeviceError):
        record_heartbeat(fleet.db, "dev-x", beat("dev-x"), T0)
    with pytest.raises(UnknownDeviceError):
        mark_heard(fleet.db, "dev-x", T0)
    assert fleet.db["health_latest"].count == fleet.db["health_samples"].count == fleet.db["presence"].count == 0
    assert not fleet.db.conn.in_transaction


def test_dropped_frames_count_as_rising_only_between_heartbeats_of_one_run(fleet):
    add_device(fleet, "dev-a")

    def delta(**over):
        record_heartbeat(fleet.db, "dev-a", beat(**over), T0)
        return device_health(fleet.db, "dev-a")["frames_dropped_delta"]

    assert delta(uptime_s=100.0, frames_dropped=40) == 0  # first heartbeat: no baseline
    assert delta(uptime_s=160.0, frames_dropped=40) == 0
    assert delta(uptime_s=220.0, frames_dropped=43) == 3
    assert delta(uptime_s=10.0, frames_dropped=2) == 2  # the agent restarted: all of its drops are new
    assert delta(uptime_s=70.0, frames_dropped=2) == 0


def test_history_keeps_the_newest_samples_per_device_by_arrival(fleet):
    add_device(fleet, "dev-a")
    add_device(fleet, "dev-b")
    record_heartbeat(fleet.db, "dev-b", beat("dev-b"), T0, keep=5)
    # The server clock steps back halfway: arrival order, not received_at, decides what is newest.
    times = [T0 + 100, T0 + 200, T0 + 300, T0 + 400, T0 + 50, T0 + 60, T0 + 70, T0 + 80]
    for i, now in enumerate(times):
        record_heartbeat(fleet.db, "dev-a", beat(frames_processed=i), now, keep=5)
    history = health_history(fleet.db, "dev-a", since=0.0, limit=100)
    assert [h["frames_processed"] for h in history] == [3, 4, 5, 6, 7]
    assert [h["received_at"] for h in history] == times[3:]
    assert history[0]["pose_ms"] == 61.5 and history[0]["cpu_temp_c"] == 55.5
    assert [h["frames_processed"] for h in health_history(fleet.db, "dev-a", since=T0 + 60, limit=2)] == [
        6,
        7,
    ]
    assert [h["received_at"] for h in health_history(fleet.db, "dev-a", since=T0 + 75, limit=10)] == [
        T0 + 400,
        T0 + 80,
    ]
    assert len(health_history(fleet.db, "dev-b", since=0.0, limit=10)) == 1  # trimming is per device
    with pytest.raises(ValueError, match="limit"):
        health_history(fleet.db, "dev-a", since=0.0, limit=0)


def test_the_default_bound_on_samples(fleet):
    add_device(fleet, "dev-a")
    n = SAMPLES_PER_DEVICE + 3
    for i in range(n):
        record_heartbeat(fleet.db, "dev-a", beat(frames_processed=i), T0 + i)
    history = health_history(fleet.db, "dev-a", since=0.0, limit=10_000)
    assert len(history) == SAMPLES_PER_DEVICE
    assert (history[0]["frames_processed"], history[-1]["frames_processed"]) == (3, n - 1)


def test_the_pose_time_falls_back_to_the_inference_stage(fleet):
    add_device(fleet, "dev-a")
    record_heartbeat(fleet.db, "dev-a", beat(stage_ms={"inference": 40.0}), T0)
    record_heartbeat(fleet.db, "dev-a", beat(stage_ms={}), T0 + 1)
    assert [h["pose_ms"] for h in health_history(fleet.db, "dev-a", 0.0, 10)] == [40.0, None]


# ---- the offline monitor, driven by hand ----------------------------------------------------------------------


def test_a_silent_device_is_announced_once_and_its_return_once(fleet):
    add_device(fleet, "dev-a", room="3B-12")
    add_device(fleet, "dev-b", room="3B-14")
    mark_heard(fleet.db, "dev-a", T0 + 10)
    for now in (T0 + 50, T0 + GRACE):
        assert check_presence(fleet, now, grace_s=GRACE) == []

    (t,) = check_presence(fleet, T0 + GRACE + 1, grace_s=GRACE)  # dev-b: never heard since enrollment
    assert (t.device_id, t.kind, t.silent_since) == ("dev-b", "offline", T0)
    assert check_presence(fleet, T0 + GRACE + 5, grace_s=GRACE) == []
    (t,) = check_presence(fleet, T0 + GRACE + 11, grace_s=GRACE)
    assert (t.device_id, t.kind) == ("dev-a", "offline")
    for now in (T0 + 500, T0 + 5000):
        assert check_presence(fleet, now, grace_s=GRACE) == []
    assert system_events(fleet) == [
        ("dev-b", "3B-14", "device_offline", "warning", T0 + GRACE + 1, T0 + GRACE + 1, {"silent_s": GRACE + 1}),
        ("dev-a", "3B-12", "device_offline", "warning", T0 + GRACE + 11, T0 + GRACE + 11, {"silent_s": GRACE + 1}),
    ]
    assert device_health(fleet.db, "dev-a") is None  # heard, but no heartbeat yet

    mark_heard(fleet.db, "dev-b", T0 + 6000)
    record_heartbeat(fleet.db, "dev-b", beat("dev-b"), T0 + 6030)  # the first contact counts
    assert device_health(fleet.db, "dev-b")["offline_since"] == T0
    (t,) = check_presence(fleet, T0 + 6040, grace_s=GRACE)
    assert t == Transition("dev-b", "online", T0 + 6000, T0, 6000.0)
    assert check_presence(fleet, T0 + 6050, grace_s=GRACE) == []
    assert system_events(fleet)[2:] == [
        ("dev-b", "3B-14", "device_online", "info", T0 + 6040, T0 + 6040, {"silent_s": 6000.0})
    ]
    assert device_health(fleet.db, "dev-b")["offline_since"] is None
    # Its "offline" alert is resolved by the system; dev-a's, still silent, stays open.
    from fleet.alerts import store as alerts_api

    ids = dict(fleet.db.conn.execute("SELECT device_id, event_id FROM events WHERE type = 'device_offline'").fetchall())
    back = alerts_api.get_alert(fleet.db, ids["dev-b"])
    assert (back["state"], back["resolved_by"]) == ("resolved", "system")
    assert alerts_api.get_alert(fleet.db, ids["dev-a"])["state"] == "open"
    # Silent again: a new episode, announced again.
    (t,) = check_presence(fleet, T0 + 6030 + GRACE + 1, grace_s=GRACE)
    assert (t.device_id, t.kind, t.silent_since) == ("dev-b", "offline", T0 + 6030)
    assert len(system_events(fleet)) == 4


def test_an_interrupted_check_does_not_announce_twice(fleet):
    add_device(fleet, "dev-a")
    assert len(check_presence(fleet, T0 + GRACE + 1, grace_s=GRACE)) == 1
    # As if the server had stopped after storing the event but before recording the device offline:
    fleet.db.conn.execute("UPDATE presence SET offline_since = NULL")
    again = check_presence(fleet, T0 + GRACE + 30, grace_s=GRACE)
    assert [t.kind for t in again] == ["offline"]
    assert len(system_events(fleet)) == 1
    assert check_presence(fleet, T0 + GRACE + 60, grace_s=GRACE) == []


def test_a_device_that_cannot_be_announced_does_not_hold_up_the_others(fleet, caplog):
    add_device(fleet, "dev-a", room="not a room!")  # not an identifier: no valid event can name it
    add_device(fleet, "dev-b")
    assert [t.device_id for t in check_presence(fleet, T0 + GRACE + 1, grace_s=GRACE)] == ["dev-b"]
    assert "dev-a is offline but cannot be announced" in caplog.text
    assert [e[0] for e in system_events(fleet)] == ["dev-b"]
    caplog.clear()
    assert check_presence(fleet, T0 + GRACE + 2, grace_s=GRACE) == []
    assert caplog.text == ""  # recorded as offline: not retried (and logged) on every check


def test_devices_that_are_not_active_are_not_announced(fleet):
    if "status" not in fleet.db["devices"].columns_dict:
        pytest.fail("the devices table has no status column")
    for status in ("pending", "quarantined", "revoked"):
        add_device(fleet, f"dev-{status}", status=status)
    assert check_presence(fleet, T0 + 10 * GRACE, grace_s=GRACE) == []
    assert system_events(fleet) == []


def test_silence_counts_from_approval_for_a_device_that_waited_as_pending(fleet):
    add_device(fleet, "dev-late", status="pending")
    approved_at = T0 + 10 * GRACE  # an operator approves it long after it enrolled
    assert fleet.set_status("dev-late", "active", reason=None, by="t", now=approved_at, allowed_from=("pending",))
    assert check_presence(fleet, approved_at + 1, grace_s=GRACE) == []
    went = check_presence(fleet, approved_at + GRACE + 1, grace_s=GRACE)
    assert [t.kind for t in went] == ["offline"]


# ---- fleet summary ----------------------------------------------------------------------------------------


def test_fleet_summary_counts_online_offline_and_degraded(fleet):
    now = T0 + 1000
    healthy = beat()
    causes = {
        "dev-warn": beat("dev-warn", warnings=["outbox_full"]),
        "dev-hot": beat("dev-hot", cpu_temp_c=80.0),
        "dev-hot-npu": beat("dev-hot-npu", accelerator_temp_c=85.0),
        "dev-fallback": beat("dev-fallback", accelerator_configured="hailo8", accelerator="cpu"),
        "dev-same-accel": beat("dev-same-accel", accelerator_configured="cpu", accelerator="cpu", cpu_temp_c=79.9),
    }
    add_device(fleet, "dev-a")
    record_heartbeat(fleet.db, "dev-a", healthy, now - 10)
    for device_id, hb in causes.items():
        add_device(fleet, device_id)
        record_heartbeat(fleet.db, device_id, hb, now - 10)
    add_device(fleet, "dev-drops")  # drops frames but analyses 9.5 a second: online, not degraded
    record_heartbeat(fleet.db, "dev-drops", beat("dev-drops", uptime_s=100, frames_dropped=5), now - 40)
    record_heartbeat(fleet.db, "dev-drops", beat("dev-drops", uptime_s=130, frames_dropped=9), now - 10)
    add_device(fleet, "dev-slow")
    record_heartbeat(fleet.db, "dev-slow", beat("dev-slow", fps=3.0), now - 10)
    add_device(fleet, "dev-silent-hot")  # degraded, but offline: counted as offline only
    record_heartbeat(fleet.db, "dev-silent-hot", beat("dev-silent-hot", cpu_temp_c=95.0), now - GRACE - 1)
    add_device(fleet, "dev-never", enrolled_at=now - 30)  # enrolled recently, never heard: online
    add_device(fleet, "dev-pending", status="pending", enrolled_at=T0 - 1e5)
    add_device(fleet, "dev-revoked", status="revoked", enrolled_at=T0 - 1e5)

    summary = fleet_summary(fleet.db, now, grace_s=GRACE)
    assert summary["devices"] == 12
    assert summary["by_status"] == {"pending": 1, "active": 10, "quarantined": 0, "revoked": 1}
    assert (summary["online"], summary["offline"], summary["degraded"]) == (9, 1, 5)
    assert {d["device_id"]: d["reasons"] for d in summary["degraded_devices"]} == {
        "dev-warn": ["warnings"],
        "dev-hot": ["hot"],
        "dev-hot-npu": ["hot"],
        "dev-fallback": ["accelerator_fallback"],
        "dev-slow": ["slow"],
    }
    # The monitor's view agrees: the silent device is the one it announces.
    assert [t.device_id for t in check_presence(fleet, now, grace_s=GRACE)] == ["dev-silent-hot"]
    assert fleet_summary(fleet.db, now, grace_s=GRACE)["offline"] == 1


# ---- the real app -----------------------------------------------------------------------------------------------


def make_app(tmp_path, clock, **config):
    return create_app(ServerConfig(database=tmp_path / "fleet.db", **config), clock=clock)


async def wait_for(predicate, timeout=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def test_check_presence_on_the_app_uses_its_grace_and_start_time(aiohttp_client, tmp_path):
    clock = Clock(T0)
    client = await aiohttp_client(make_app(tmp_path, clock, offline_grace_seconds=60, offline_check_seconds=600))
    app = client.server.app
    fleet = app[DB_KEY]
    add_device(fleet, "dev-a", enrolled_at=T0 - 10_000)  # silent for long, but the server just started
    assert check_presence(app, T0 + 60) == []
    (t,) = check_presence(app, T0 + 61)
    assert (t.kind, t.silent_since, t.silent_s) == ("offline", T0 - 10_000, 10_061.0)
    assert [e["type"] for e in fleet.recent_events()] == ["device_offline"]


async def test_the_background_monitor_announces_a_silent_device_and_its_return(aiohttp_client, tmp_path):
    clock = Clock(T0)
    client = await aiohttp_client(make_app(tmp_path, clock, offline_grace_seconds=5, offline_check_seconds=0.05))
    fleet = client.server.app[DB_KEY]
    add_device(fleet, "dev-a")
    record_heartbeat(fleet.db, "dev-a", beat(), T0)

    def types():
        return [e[2] for e in system_events(fleet)]

    await asyncio.sleep(0.2)  # several checks within the grace period
    assert types() == []
    clock.now = T0 + 6
    await wait_for(lambda: types() == ["device_offline"])
    await asyncio.sleep(0.2)
    assert types() == ["device_offline"]
    record_heartbeat(fleet.db, "dev-a", beat(sent_at=T0 + 7), T0 + 7)
    clock.now = T0 + 8
    await wait_for(lambda: types() == ["device_offline", "device_online"])
    await asyncio.sleep(0.2)
    assert types() == ["device_offline", "device_online"]
    assert system_events(fleet)[1][6] == {"silent_s": 7.0}


# ---- /metrics ------------------------------------------------------------------------------------------------


def families(text):
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_are_served_to_viewer_tokens_only(aiohttp_client, tmp_path):
    clock = Clock(T0)
    client = await aiohttp_client(make_app(tmp_path, clock))
    app = client.server.app
    fleet = app[DB_KEY]
    add_device(fleet, "dev-a")
    add_device(fleet, "dev-b", enrolled_at=T0 - 1000)
    add_device(fleet, "dev-c", status="quarantined")
    record_heartbeat(fleet.db, "dev-a", beat(warnings=["camera_reconnect"]), T0 + 50)
    clock.now = T0 + 100
    check_presence(app, T0 + 100, watch_start=T0 - 1000)  # dev-b: silent since enrollment
    accept_heartbeat(app, "dev-a", beat())
    metrics = app[METRICS_KEY]
    metrics.events_ingested.labels(app="fall", severity="critical").inc(2)
    metrics.requests_rejected.labels(status="401").inc()
    metrics.webhook_attempts.labels(outcome="delivered").inc()

    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wsa.0123.nope"})).status == 401
    token = operators.create_api_token(fleet.db, "prometheus", "viewer", "admin", clock())
    resp = await client.get("/metrics", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    got = families(await resp.text())
    assert got[("wardsight_devices", (("status", "active"),))] == 2
    assert got[("wardsight_devices", (("status", "quarantined"),))] == 1
    assert got[("wardsight_devices", (("status", "pending"),))] == 0
    assert got[("wardsight_devices_online", ())] == 1
    assert got[("wardsight_devices_offline", ())] == 1
    assert got[("wardsight_devices_degraded", ())] == 0  # the second heartbeat has no warnings
    assert got[("wardsight_heartbeats_total", ())] == 1
    assert got[("wardsight_events_ingested_total", (("app", "fall"), ("severity", "critical")))] == 2
    assert got[("wardsight_requests_rejected_total", (("status", "401"),))] >= 1
    assert got[("wardsight_webhook_attempts_total", (("outcome", "delivered"),))] == 1
    assert got[("wardsight_presence_transitions_total", (("kind", "offline"),))] == 1
    assert got[("wardsight_webhook_deliveries", (("status", "pending"),))] == 0
    assert got[("wardsight_webhook_deliveries", (("status", "dead"),))] == 0


async def test_two_apps_in_one_process_keep_their_own_metrics(aiohttp_client, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = await aiohttp_client(make_app(tmp_path / "a", Clock()))
    two = await aiohttp_client(make_app(tmp_path / "b", Clock()))
    one.server.app[METRICS_KEY].heartbeats.inc(3)
    assert b"wardsight_heartbeats_total 3.0" in one.server.app[METRICS_KEY].exposition()
    assert b"wardsight_heartbeats_total 0.0" in two.server.app[METRICS_KEY].exposition()
