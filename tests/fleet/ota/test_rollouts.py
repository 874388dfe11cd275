"""Staged rollouts against the real fleet app on loopback and a real SQLite file, with simulated devices that
enroll, poll ``GET /api/v1/device/update`` and report their progress as the device agent would."""

import asyncio
import os
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from tuf.api.metadata import Metadata, Root, TargetFile, Targets

from fleet.app import create_app
from fleet.audit import log as audit
from fleet.config import ServerConfig
from fleet.ota.library import package as library
from fleet.ota.repository.files import REPOSITORY_KEY
from fleet.ota.repository.keys import signer_for
from fleet.ota.rollouts import ticker
from fleet.ota.rollouts.bodies import NewRollout
from fleet.ota.rollouts.service import create_rollout, tick_all
from fleet.store.db import FleetDB
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from tests.fleet.helpers import api_headers, enroll_device, insert_device
from wardsight import modelpkg, wire

UPDATE = "/api/v1/device/update"
ROLLOUTS = "/api/v1/rollouts"
STEPS = ("downloading", "downloaded", "installed", "activated", "healthy")
WEEK = 7 * 86400.0


@pytest.fixture
def config(db_path):
    # Credentials that outlive a week offline (with the 24 h default, an admin would reissue one first).
    return ServerConfig(database=db_path, credential_ttl_seconds=30 * 86400)


def store_package(app, directory, version, model="movenet"):
    """Package one version (a small stand-in model file) and store it through the model library's code, as an
    upload does; returns what the library read of it (not signed: :func:`publish` signs)."""
    repo = app[REPOSITORY_KEY]
    directory.mkdir(exist_ok=True)
    model_file = directory / f"{model}-{version}.tflite"
    model_file.write_bytes(os.urandom(2048))
    digest, size = modelpkg.describe_file(model_file)
    build = modelpkg.Build(backend="cpu", runtime="litert", file="model.tflite", sha256=digest, size=size,
                           decoder="movenet_multipose")  # fmt: skip
    manifest = modelpkg.Manifest(name=model, version=version, task="pose", license="Apache-2.0", builds=[build])
    package = directory / f"{model}-{version}.wsm"
    modelpkg.write_package(package, manifest, {"model.tflite": model_file})
    repo.incoming_dir.mkdir(parents=True, exist_ok=True)
    upload = repo.incoming_dir / package.name
    shutil.copyfile(package, upload)
    info = library.inspect_package(upload)
    library.install_package(repo, upload, info)
    return info


def publish(app, clock, directory, versions, model="movenet"):
    """Play the hospital: package each version (a small stand-in model file), store it through the model
    library's code, and sign root and targets metadata listing them with offline keys made here."""
    repo, now = app[REPOSITORY_KEY], datetime.fromtimestamp(clock.now, UTC)
    directory.mkdir(exist_ok=True)
    listed = {}
    for version in versions:
        info = store_package(app, directory, version, model)
        listed[info.target] = TargetFile(info.length, {"sha256": info.sha256}, info.target)
    root_key, targets_key = signer_for(wire.generate_key()), signer_for(wire.generate_key())
    root = Root(expires=now + timedelta(days=365), consistent_snapshot=False)
    for role, signer in (("root", root_key), ("targets", targets_key), ("snapshot", repo.keys.snapshot),
                         ("timestamp", repo.keys.timestamp)):  # fmt: skip
        root.add_key(signer.public_key, role)
    root_md, targets_md = Metadata(root), Metadata(Targets(version=1, expires=now + timedelta(days=30)))
    targets_md.signed.targets = listed
    root_md.sign(root_key)
    targets_md.sign(targets_key)
    repo.accept_root(root_md.to_bytes(), targets_md.to_bytes(), now)


PUBLISHED = ("1.0", "1.1", "2.0", "2.1")


@pytest.fixture
async def client(aiohttp_client, config, clock, tmp_path):
    client = await aiohttp_client(create_app(config, clock=clock))
    publish(client.server.app, clock, tmp_path / "packages", PUBLISHED)
    return client


def live_db(client):
    return client.server.app[DB_KEY].db


async def enroll(client, db_path, clock, rooms):
    """One simulated device per room; ``rooms`` maps room to ward (the site is st-marys)."""
    return {
        room: await enroll_device(client, db_path, clock, name=f"cam-{room}", room=room, ward=ward, site="st-marys")
        for room, ward in rooms.items()
    }


def rollout_body(**over):
    body = {
        "model": "movenet",
        "version": "2.0",
        "previous_version": "1.0",
        "selector": {"ward": "3B"},
        "groups": [{"count": 2}, {"count": 2}, {"percent": 100}],
        "success_threshold": 1.0,
        "error_threshold": {"count": 1},
        "in_progress_timeout_s": 600,
    }
    body.update(over)
    return body


async def create(client, headers, **over):
    resp = await client.post(ROLLOUTS, json=rollout_body(**over), headers=headers)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def view(client, headers, rollout_id):
    resp = await client.get(f"{ROLLOUTS}/{rollout_id}", headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def poll(device):
    resp = await device.send("GET", UPDATE)
    if resp.status == 204:
        return None
    assert resp.status == 200, await resp.text()
    return wire.UpdateOffer.model_validate(await resp.json())


async def report(device, offer, state, reason=None, *, version=None):
    body = wire.UpdateReport(
        rollout_id=offer.rollout_id, model=offer.model, version=version or offer.version, state=state, reason=reason
    )
    return await device.send("POST", UPDATE, body.model_dump_json(exclude_none=True).encode(), "application/json")


async def update(device, states=STEPS):
    """Poll, then report each state (what the agent does as it downloads, installs and self-tests)."""
    offer = await poll(device)
    assert offer is not None, f"{device.device_id} was offered nothing"
    for state in states:
        resp = await report(device, offer, state)
        assert resp.status == 202, await resp.text()
    return offer


def tick(client):
    return tick_all(client.server.app, client.server.app[CLOCK_KEY]())


def groups_of(rollout, devices):
    """Group number -> the simulated devices in it, from the rollout's own view."""
    by_id = {d.device_id: d for d in devices.values()}
    out = {}
    for row in rollout["devices"]:
        out.setdefault(row["group"], []).append(by_id[row["device_id"]])
    return out


def audit_rows(client, prefix="rollout."):
    rows = reversed(audit.query(live_db(client), limit=1000))
    return [(r["actor"], r["action"], r["details"]) for r in rows if r["action"].startswith(prefix)]


# ---- the scenario -------------------------------------------------------------------------------


async def test_a_group_succeeds_then_a_failed_self_test_pauses_the_rollout_at_the_error_threshold(
    client, db_path, clock
):
    rooms = {f"3B-0{i}": "3B" for i in range(1, 6)} | {"4A-01": "4A"}
    devices = await enroll(client, db_path, clock, rooms)
    operator = api_headers(client, "operator")
    rollout = await create(client, operator)
    assert rollout["status"] == "running" and rollout["current_group"] == 1 and rollout["devices_total"] == 5
    assert [g["size"] for g in rollout["groups"]] == [2, 2, 1] and rollout["target"] == "models/movenet/2.0.wsm"
    groups = groups_of(rollout, devices)
    assert devices["4A-01"] not in [d for g in groups.values() for d in g]  # another ward

    # Only the first group is offered the update.
    for device in groups[1]:
        offer = await poll(device)
        assert (offer.rollout_id, offer.model, offer.version, offer.target) == (
            rollout["id"], "movenet", "2.0", "models/movenet/2.0.wsm"
        )  # fmt: skip
    for device in [*groups[2], *groups[3], devices["4A-01"]]:
        assert await poll(device) is None

    # Group 1: both devices download, switch and report healthy; the next tick starts group 2.
    for device in groups[1]:
        await update(device)
    clock.now += 60
    decisions = tick(client)[rollout["id"]]
    assert [d.kind for d in decisions] == ["group_started", "offer", "offer"]
    state = await view(client, operator, rollout["id"])
    assert state["groups"][0] | {"counts": None} == {"group": 1, "size": 2, "needed": 2, "started": True,
                                                    "succeeded": True, "counts": None}  # fmt: skip
    assert state["groups"][0]["counts"] == {"healthy": 2} and state["current_group"] == 2

    # Group 2: one device is fine; the other fails its self-test and goes back to its previous model.
    good, bad = groups[2]
    await update(good)
    offer = await update(bad, STEPS[:-1])
    resp = await report(bad, offer, "rolled_back", "self_test_failed")
    assert resp.status == 202
    clock.now += 60
    assert [d.kind for d in tick(client)[rollout["id"]]] == ["paused"]
    state = await view(client, operator, rollout["id"])
    assert state["status"] == "paused" and state["failures"] == 1  # at the threshold of 1, not past it
    assert state["reason"] == "group 2 cannot reach 2 healthy of 2 (1 healthy, 1 failed)"
    assert state["groups"][1]["counts"] == {"healthy": 1, "rolled_back": 1}
    bad_row = next(d for d in state["devices"] if d["device_id"] == bad.device_id)
    assert (bad_row["status"], bad_row["reason"]) == ("rolled_back", "self_test_failed")
    assert await poll(groups[3][0]) is None  # the last group does not start
    assert await poll(bad) is None  # nothing more for the device that went back
    assert rollout["id"] not in tick(client)  # settled: only an operator or a new report can move it now

    # What happened is in the audit log, and every accepted report in the append-only report table.
    actions = [(actor.split(":")[0], action) for actor, action, _ in audit_rows(client)]
    assert actions == [("apitoken", "rollout.create"), ("system", "rollout.pause")]
    assert audit_rows(client)[1][2] == {"reason": state["reason"]}
    assert live_db(client)["rollout_reports"].count == 2 * 5 + 5 + 4 + 1
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        live_db(client).execute("UPDATE rollout_reports SET state = 'healthy' WHERE state = 'rolled_back'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        live_db(client).execute("DELETE FROM rollout_reports")


async def test_a_device_offline_for_a_week_catches_up(client, db_path, clock):
    devices = await enroll(client, db_path, clock, {f"3B-0{i}": "3B" for i in range(1, 5)})
    operator = api_headers(client, "operator")
    rollout = await create(client, operator, groups=[{"percent": 100}], success_threshold=0.5)
    a, b, offline, dropped = devices.values()
    await update(a)
    await update(b)
    offer = await poll(dropped)
    assert (await report(dropped, offer, "downloading")).status == 202  # ... and then it loses power
    clock.now += 700
    decisions = tick(client)[rollout["id"]]
    assert [(d.kind, d.device_id) for d in decisions] == [("timed_out", dropped.device_id), ("completed", None)]
    state = await view(client, operator, rollout["id"])
    assert state["status"] == "completed" and state["failures"] == 1
    statuses = {d["device_id"]: (d["status"], d["reason"]) for d in state["devices"]}
    assert statuses[offline.device_id] == ("offered", None)  # silent: no clock runs
    assert statuses[dropped.device_id] == ("failed", "timeout")

    # A week later both come back: the offer still stands for each, and they finish the update.
    clock.now += WEEK
    tick(client)
    assert (await view(client, operator, rollout["id"]))["groups"][0]["counts"]["offered"] == 1
    for device in (offline, dropped):
        clock.now += 30
        offer = await update(device)
        assert offer.rollout_id == rollout["id"] and offer.version == "2.0"
    clock.now += 60
    tick(client)
    state = await view(client, operator, rollout["id"])
    assert state["groups"][0]["counts"] == {"healthy": 4} and state["failures"] == 0
    assert state["status"] == "completed"
    assert await poll(offline) is None  # done: nothing more to do


# ---- operator routes ------------------------------------------------------------------------------------


async def heartbeat(device, clock, models):
    body = wire.Health(
        device_id=device.device_id, sent_at=clock.now, uptime_s=10.0, agent_version="0.1", accelerator="cpu",
        models=models,
    )  # fmt: skip
    resp = await device.send("POST", "/api/v1/device/heartbeat", body.model_dump_json().encode(), "application/json")
    assert resp.status == 200, await resp.text()


async def test_operators_pause_resume_roll_back_and_abort_and_each_is_audited(client, db_path, clock):
    devices = await enroll(client, db_path, clock, {"3B-01": "3B", "3B-02": "3B", "3B-03": "3B"})
    operator, viewer = api_headers(client, "operator"), api_headers(client, "viewer")
    for device in devices.values():
        await heartbeat(device, clock, {"movenet": "1.1"})
    rollout = await create(client, operator, groups=[{"count": 1}, {"percent": 100}])
    rid = rollout["id"]
    first, rest = groups_of(rollout, devices)[1][0], groups_of(rollout, devices)[2]
    await update(first)
    clock.now += 10
    tick(client)

    async def command(name, headers=operator, **body):
        return await client.post(f"{ROLLOUTS}/{rid}/{name}", json=body or None, headers=headers)

    assert (await command("pause", viewer)).status == 403
    resp = await command("pause", reason="night shift asked to wait")
    assert resp.status == 200 and (await resp.json())["status"] == "paused"
    again = await command("pause")
    assert again.status == 409 and "only a running rollout" in (await again.json())["error"]
    assert (await command("resume")).status == 200
    assert (await client.get(f"{ROLLOUTS}/{rid}", headers=viewer)).status == 200
    listed = await (await client.get(ROLLOUTS, headers=viewer)).json()
    assert [(r["id"], r["status"]) for r in listed["rollouts"]] == [(rid, "running")] and "devices" not in listed[
        "rollouts"
    ][0]

    # Roll back: the device that switched is offered what it ran before (from its heartbeat); the others
    # lose their offer.
    resp = await command("rollback", reason="false alarms on ward 3B")
    body = await resp.json()
    assert resp.status == 200 and body["status"] == "rolling_back"
    offer = await poll(first)
    assert (offer.version, offer.target, offer.window_start) == ("1.1", "models/movenet/1.1.wsm", None)
    for device in rest:
        assert await poll(device) is None
        assert (await report(device, offer, "downloading", version="2.0")).status == 409
    await update(first)
    clock.now += 10
    assert [d.kind for d in tick(client)[rid]] == ["rolled_back"]
    state = await view(client, viewer, rid)
    row = next(d for d in state["devices"] if d["device_id"] == first.device_id)
    assert state["status"] == "rolled_back" and (row["status"], row["reverting"], row["version"]) == (
        "rolled_back", True, "1.1"
    )  # fmt: skip
    assert (await command("rollback")).status == 409 and (await command("abort")).status == 409
    assert rid not in tick(client)

    # A second rollout, aborted: nobody is offered anything any more.
    second = await create(client, operator, version="2.1", groups=[{"percent": 100}])
    assert await poll(first) is not None
    resp = await client.post(f"{ROLLOUTS}/{second['id']}/abort", headers=operator)
    assert resp.status == 200 and (await resp.json())["status"] == "aborted"
    for device in devices.values():
        assert await poll(device) is None
    assert (await client.post(f"{ROLLOUTS}/ro-nope/pause", headers=operator)).status == 404

    got = [(actor.split(":")[0], action, details.get("to")) for actor, action, details in audit_rows(client)]
    assert got == [
        ("apitoken", "rollout.create", None),
        ("apitoken", "rollout.pause", "paused"),
        ("apitoken", "rollout.resume", "running"),
        ("apitoken", "rollout.rollback", "rolling_back"),
        ("system", "rollout.rolled_back", None),
        ("apitoken", "rollout.create", None),
        ("apitoken", "rollout.abort", "aborted"),
    ]
    assert audit_rows(client)[1][2]["reason"] == "night shift asked to wait"
    assert audit_rows(client)[3][2]["rollbacks_offered"] == 1 and audit_rows(client)[3][2]["offers_withdrawn"] == 2
    assert audit.verify(live_db(client)).ok


async def test_bad_rollout_requests_are_refused_and_nothing_is_stored(client, db_path, clock):
    await enroll(client, db_path, clock, {"3B-01": "3B"})
    operator = api_headers(client, "operator")
    cases = [
        ({"surprise": 1}, "surprise"),
        ({"version": "latest"}, "version"),
        ({"model": "../etc"}, "model"),
        ({"groups": [{"count": 1, "percent": 50}]}, "either count or percent"),
        ({"groups": []}, "groups"),
        ({"success_threshold": 0}, "success_threshold"),
        ({"error_threshold": {}}, "either count or fraction"),
        ({"in_progress_timeout_s": 1}, "in_progress_timeout_s"),
        ({"window": {"start": "02:00", "end": "02:00"}}, "same time"),
        ({"window": {"start": "25:00", "end": "02:00"}}, "window.start"),
        ({"previous_version": "2.0"}, "previous_version must differ"),
        ({"selector": {"ward": "9Z"}}, "no active device matches"),
        ({"selector": {"ward": "3B", "percent": 0}}, "percent"),
        ({"groups": [{"count": 0}]}, "count"),
    ]
    for over, why in cases:
        resp = await client.post(ROLLOUTS, json=rollout_body(**over), headers=operator)
        body = await resp.json()
        assert resp.status == 400 and why in body["error"], (over, resp.status, body)
    await enroll(client, db_path, clock, {"3B-02": "3B", "3B-03": "3B"})
    resp = await client.post(ROLLOUTS, json=rollout_body(groups=[{"count": 2}]), headers=operator)
    assert resp.status == 400 and "cover 2 of the 3" in (await resp.json())["error"]
    resp = await client.post(ROLLOUTS, data="{}", headers=operator | {"Content-Type": "text/plain"})
    assert resp.status == 415
    resp = await client.post(ROLLOUTS, data="[1, ", headers=operator | {"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await client.post(ROLLOUTS, json=rollout_body())).status == 401
    assert (await client.post(ROLLOUTS, json=rollout_body(), headers=api_headers(client, "viewer"))).status == 403
    assert (await client.get(f"{ROLLOUTS}/ro-missing", headers=operator)).status == 404
    assert live_db(client)["rollouts"].count == 0 and live_db(client)["rollout_devices"].count == 0
    assert audit_rows(client) == []


async def test_only_a_version_the_model_library_publishes_can_be_rolled_out(client, db_path, clock):
    await enroll(client, db_path, clock, {"3B-01": "3B"})
    operator = api_headers(client, "operator")
    resp = await client.post(ROLLOUTS, json=rollout_body(version="3.0", groups=[{"percent": 100}]), headers=operator)
    assert resp.status == 400 and "no movenet 3.0 (models/movenet/3.0.wsm)" in (await resp.json())["error"]
    resp = await client.post(ROLLOUTS, json=rollout_body(model="facemesh", groups=[{"percent": 100}]), headers=operator)
    assert resp.status == 400
    rollout = await create(client, operator, groups=[{"percent": 100}])
    assert rollout["target_checked"] is True and audit_rows(client)[0][2]["target_checked"] is True


async def test_without_a_library_to_ask_a_rollout_says_its_target_was_not_checked(db_path, clock):
    db = FleetDB(db_path)
    try:
        insert_device(db, "dev-1", room="3B-01", ward="3B", enrolled_at=clock.now, tags='["pilot"]')
        body = NewRollout.model_validate(rollout_body(selector={"tags": ["pilot"]}, groups=[{"count": 1}]))
        view = create_rollout(db.db, body, actor="test", now=clock.now)
        assert view["target_checked"] is False and [d["device_id"] for d in view["devices"]] == ["dev-1"]
        assert audit.query(db.db, action="rollout.create")[0]["details"]["target_checked"] is False
    finally:
        db.close()


# ---- the device side ------------------------------------------------------------------------------------


async def test_devices_report_only_on_what_they_were_offered(client, db_path, clock):
    devices = await enroll(client, db_path, clock, {"3B-01": "3B", "4A-01": "4A"})
    inside, outside = devices["3B-01"], devices["4A-01"]
    rollout = await create(client, api_headers(client, "operator"), groups=[{"percent": 100}])
    offer = await poll(inside)
    assert await poll(outside) is None
    resp = await report(outside, offer, "downloading")
    assert resp.status == 404 and "offers this device nothing" in (await resp.json())["error"]
    resp = await report(inside, offer, "downloading", version="2.1")
    assert resp.status == 409 and "offers movenet 2.0, not movenet 2.1" in (await resp.json())["error"]
    unknown = offer.model_copy(update={"rollout_id": "ro-000000000000"})
    assert (await report(inside, unknown, "downloading")).status == 404
    good = wire.UpdateReport(rollout_id=rollout["id"], model="movenet", version="2.0", state="downloading")
    raw = good.model_dump_json().encode()
    assert (await inside.send("POST", UPDATE, raw, "text/plain")).status == 415
    assert (
        await inside.send("POST", UPDATE, raw.replace(b"downloading", b"exploded"), "application/json")
    ).status == 400
    assert (await inside.send("POST", UPDATE, raw[:-1] + b',"extra":1}', "application/json")).status == 400
    assert (await inside.send("POST", UPDATE, raw, "application/json", credential=None)).status == 401
    assert (await inside.send("GET", UPDATE, b"{}")).status == 400
    assert (await client.get(UPDATE)).status == 401
    assert live_db(client)["rollout_reports"].count == 0
    resp = await inside.send("POST", UPDATE, raw, "application/json")
    assert resp.status == 202 and (await resp.json()) == {"accepted": True, "server_time": clock.now}
    assert wire.NONCE_HEADER in resp.headers  # device-API responses carry a fresh nonce
    assert live_db(client)["rollout_reports"].count == 1


async def test_offers_carry_the_next_maintenance_window_in_server_time(client, db_path, clock):
    devices = await enroll(client, db_path, clock, {"3B-01": "3B"})
    window = {"start": "02:00", "end": "04:00", "utc_offset_minutes": 60}
    await create(client, api_headers(client, "operator"), groups=[{"percent": 100}], window=window)
    now = datetime.fromtimestamp(clock.now, UTC)
    assert (now.hour, now.minute) == (8, 0)  # 09:00 at UTC+1: the next window opens tomorrow 01:00 UTC
    offer = await poll(devices["3B-01"])
    start = datetime(now.year, now.month, now.day + 1, 1, 0, tzinfo=UTC).timestamp()
    assert (offer.window_start, offer.window_end) == (start, start + 2 * 3600)


async def test_the_background_ticker_moves_a_rollout_on(aiohttp_client, config, db_path, clock, monkeypatch, tmp_path):
    monkeypatch.setattr(ticker, "TICK_SECONDS", 0.02)
    client = await aiohttp_client(create_app(config, clock=clock))
    publish(client.server.app, clock, tmp_path / "packages", ["2.0"])
    devices = await enroll(client, db_path, clock, {"3B-01": "3B", "3B-02": "3B"})
    operator = api_headers(client, "operator")
    rollout = await create(client, operator, groups=[{"count": 1}, {"percent": 100}])
    await update(groups_of(rollout, devices)[1][0])
    for _ in range(200):
        if (await view(client, operator, rollout["id"]))["current_group"] == 2:
            break
        await asyncio.sleep(0.02)
    assert (await view(client, operator, rollout["id"]))["current_group"] == 2
    assert await poll(groups_of(rollout, devices)[2][0]) is not None


# ---- reaching devices promptly, and saying why each is where it is --------------------------------------

JOBS = "/api/v1/device/jobs"


async def long_poll(device, wait, seen=""):
    """The device's jobs long poll, naming the update offer it last saw (as firmware.jobs.JobRunner does)."""
    dev = device
    if dev.nonce is None:
        await dev.fetch_nonce()
    target = f"{JOBS}?wait={wait}&update={seen}"
    resp = await dev.send("GET", target, proof=dev.proof("GET", target))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_a_new_rollout_wakes_the_devices_long_poll_at_once(client, db_path, clock):
    devices = await enroll(client, db_path, clock, {"3B-12": "3B"})
    device = devices["3B-12"]
    operator = api_headers(client, "operator")
    assert (await long_poll(device, 0))["update"] is None  # nothing waits yet
    waiting = asyncio.create_task(long_poll(device, 25))
    await asyncio.sleep(0.3)  # the poll is now waiting on the server
    rollout = await create(client, operator, selector={"room": "3B-12"}, groups=[{"percent": 100}])
    assert rollout["devices"][0]["explain"].startswith("offered; the device is connected and was told")
    # Answered when the rollout offered it the update, not after its 25 s.
    answer = await asyncio.wait_for(waiting, 10)
    assert answer == {"jobs": [], "update": f"{rollout['id']}/2.0"}
    # A poll that already knows of the offer waits as usual (here its whole 1 s) and names it again.
    assert (await long_poll(device, 1, seen=f"{rollout['id']}/2.0"))["update"] == f"{rollout['id']}/2.0"


async def test_each_device_says_why_it_is_where_it_is(client, db_path, clock):
    devices = await enroll(client, db_path, clock, {"3B-12": "3B", "3B-14": "3B", "3B-15": "3B", "3B-16": "3B"})
    viewer, operator = api_headers(client, "viewer"), api_headers(client, "operator")
    no_root, trial, refused, polled = (devices[r] for r in ("3B-12", "3B-14", "3B-15", "3B-16"))
    heartbeat = wire.Health(
        device_id=no_root.device_id, sent_at=clock.now, uptime_s=5, agent_version="0.1.0", accelerator="cpu",
        updates="no_ota_root",
    )  # fmt: skip
    resp = await no_root.send("POST", "/api/v1/device/heartbeat", heartbeat.model_dump_json().encode(),
                              "application/json")  # fmt: skip
    assert resp.status == 200, await resp.text()
    rollout = await create(client, operator, selector={"ward": "3B"}, groups=[{"percent": 100}],
                           error_threshold={"count": 4})  # fmt: skip
    offer = await poll(polled)  # asked once: the next check is due within the poll interval
    offer = await update(trial, ("downloading", "downloaded", "installed", "activated"))
    progress = wire.UpdateReport(rollout_id=offer.rollout_id, model=offer.model, version=offer.version,
                                 state="activated", progress=0.4, done=12, total=30)  # fmt: skip
    assert (await trial.send("POST", UPDATE, progress.model_dump_json().encode(), "application/json")).status == 202
    await update(refused, ("downloading", "downloaded"))
    assert (await report(refused, offer, "rejected", "self_test_failed")).status == 202
    tick(client)
    got = {d["device_id"]: d for d in (await view(client, viewer, rollout["id"]))["devices"]}
    assert got[no_root.device_id]["explain"] == "cannot take updates (enrolled without an OTA root)"
    assert got[trial.device_id]["explain"] == "on trial, health check 12 of 30 frames"
    assert (got[trial.device_id]["done"], got[trial.device_id]["total"]) == (12, 30)
    assert got[refused.device_id]["status"] == "rejected"
    assert got[refused.device_id]["explain"] == (
        "rejected by the device: the model failed its self-test; it still runs its previous model"
    )
    assert got[polled.device_id]["explain"] == "offered; next check within 300 s"
    clock.now += 100
    got = {d["device_id"]: d for d in (await view(client, viewer, rollout["id"]))["devices"]}
    assert got[polled.device_id]["explain"] == "offered; next check within 200 s"
    listed = (await (await client.get(ROLLOUTS, headers=viewer)).json())["rollouts"]
    assert listed[0]["failures"] == 1  # a rejection counts against the error threshold
