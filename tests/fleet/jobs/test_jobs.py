"""Maintenance jobs (fleet/jobs/) against the real app on loopback and a real SQLite file: simulated devices
enroll through the API, poll for jobs, verify each job's signature with the key enrollment gave them, and report.
Operators act through API tokens (and sessions in the role check)."""

import asyncio
import json
import time

import jwt
import pytest
from aiohttp import DummyCookieJar

from fleet.accounts import service as operators
from fleet.app import create_app
from fleet.audit import log as audit
from fleet.auth.operator import COOKIE_NAME, CSRF_HEADER, has_role
from fleet.config import ServerConfig
from fleet.enrollment import tokens
from fleet.jobs import store as jobs
from fleet.store.db import FleetDB
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY, KEYS_KEY
from tests.fleet.helpers import JOSE, DeviceSession, api_headers, bearer, enrollment, event_for, insert_device
from wardsight import wire

JOBS = "/api/v1/device/jobs"
ROTATE = "/api/v1/device/rotate-key"
PASSWORD = "correct horse battery"
GOOD_CONFIG = """
server_url = "https://fleet.example.org"
[occupancy]
stable_seconds = 2.0
min_score = 0.3
[[zones]]
name = "bed"
kind = "bed"
polygon = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.9]]
[[privacy_regions]]
name = "bathroom door"
polygon = [[0.0, 0.0], [0.25, 0.0], [0.25, 1.0]]
"""


@pytest.fixture
async def client(aiohttp_client, db_path, clock):
    config = ServerConfig(database=db_path, password_memory_kib=1024, password_time_cost=1)
    app = create_app(config, clock=clock)
    return await aiohttp_client(app, cookie_jar=DummyCookieJar())


def live(client):
    return client.server.app[DB_KEY]


@pytest.fixture
def admin(client):
    return api_headers(client, "admin", "admin-script")


@pytest.fixture
def operator(client):
    return api_headers(client, "operator", "operator-script")


def person_headers(client, role, name, created_by):
    """An API token made by ``created_by`` (the person it acts for, as the two-person rule sees it)."""
    app = client.server.app
    return bearer(operators.create_api_token(app[DB_KEY].db, name, role, created_by, app[CLOCK_KEY]()))


@pytest.fixture
def second_admin(client):
    """Another person's admin token: the one who approves privacy-reducing configuration jobs."""
    return person_headers(client, "admin", "second-admin", "user:second-admin")


class Device:
    """A simulated device: the real device API by hand, checking every job's signature and expiry."""

    def __init__(self, session: DeviceSession, job_key: str) -> None:
        self.session, self.job_key = session, wire.decode_public_key(job_key)
        self.id = session.device_id
        self.server_time = 0.0

    async def poll_raw(self, wait=0):
        dev = self.session
        if dev.nonce is None:
            await dev.fetch_nonce()
        for _ in range(2):
            target = f"{JOBS}?wait={wait}"
            resp = await dev.send("GET", target, proof=dev.proof("GET", target))
            if resp.status != 401 or (await resp.json()).get("code") != "use_nonce":
                break  # a stale nonce (the test clock jumped): retry once with the fresh one
        if wire.TIME_HEADER in resp.headers:
            self.server_time = float(resp.headers[wire.TIME_HEADER])
        return resp

    async def poll(self, wait=0):
        resp = await self.poll_raw(wait)
        assert resp.status == 200, await resp.text()
        got = []
        for token in (await resp.json())["jobs"]:
            job = wire.verify_job(token, self.job_key)
            assert job.device_id == self.id and job.expires_at > self.server_time
            got.append(job)
        return got

    async def report(self, job_id, state, **fields):
        body = wire.JobReport(job_id=job_id, state=state, **fields).model_dump_json(exclude_none=True).encode()
        return await self.session.send("POST", f"{JOBS}/{job_id}", body, "application/json")

    async def report_raw(self, job_id, body):
        return await self.session.send("POST", f"{JOBS}/{job_id}", body, "application/json")

    async def finish(self, job, state="succeeded", **fields):
        assert (await self.report(job.job_id, "received")).status == 200
        resp = await self.report(job.job_id, state, **fields)
        assert resp.status == 200, await resp.text()


def add_tokens(db_path, clock, count, **scope):
    db = FleetDB(db_path)
    try:
        plain = []
        for _ in range(count):
            text, record = tokens.new_token(scope.pop("room", None) or "3B-12", clock(), 600, **scope)
            db.add_token(record)
            plain.append(text)
        return plain
    finally:
        db.close()


async def enroll(client, token, name):
    key, body = enrollment(token, name=name)
    resp = await client.post("/api/v1/enroll", data=body, headers=JOSE)
    assert resp.status == 201, await resp.text()
    answer = await resp.json()
    session = DeviceSession(client, key, answer["device_id"])
    got = await session.obtain_credential()
    assert got.status == 200, await got.text()
    return Device(session, answer["job_key"])


async def enroll_many(client, db_path, clock, count, **scope):
    """Tokens straight into the database; enrollment and credentials through the API, concurrently."""
    plain = add_tokens(db_path, clock, count, **scope)
    return list(await asyncio.gather(*(enroll(client, t, f"cam-{i}") for i, t in enumerate(plain))))


@pytest.fixture
async def device(client, db_path, clock):
    return (await enroll_many(client, db_path, clock, 1))[0]


async def create(client, headers, kind, target, expires_in_s=3600, **fields):
    body = {"kind": kind, "target": target, "expires_in_s": expires_in_s, **fields}
    return await client.post("/api/v1/jobs", json=body, headers=headers)


async def create_ok(client, headers, kind, target, **fields):
    resp = await create(client, headers, kind, target, **fields)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["batch_id"]


async def approve(client, batch_id, headers):
    resp = await client.post(f"/api/v1/jobs/{batch_id}/approve", json={}, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def batch(client, batch_id, headers):
    resp = await client.get(f"/api/v1/jobs/{batch_id}", headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def audit_rows(client, **filters):
    return list(reversed(audit.query(live(client).db, limit=1000, **filters)))


# ---- every kind, end to end ----------------------------------------------------------------------------------


async def test_every_kind_reaches_the_device_signed_in_order_and_reports_back(
    client, device, admin, second_admin, clock
):
    assert device.job_key == client.server.app[KEYS_KEY].jobs.public_key()
    target = {"device_ids": [device.id]}
    made = {}
    for kind, extra in [
        ("restart_agent", {}),
        ("self_test", {}),
        ("set_log_level", {"params": {"level": "debug", "duration_s": 900}}),
        ("collect_diagnostics", {}),
        ("push_config", {"config": GOOD_CONFIG}),
        ("reboot", {}),
    ]:
        made[kind] = await create_ok(client, admin, kind, target, **extra)
        if kind == "push_config":  # a whole file for a device whose configuration the server does not know yet
            await approve(client, made[kind], second_admin)
        clock.now += 1  # oldest first
    got = await device.poll()
    assert [job.kind for job in got] == list(made)
    by_kind = {job.kind: job for job in got}
    assert [job.kind for job in got if job.privacy_approval is not None] == ["push_config"]
    assert by_kind["set_log_level"].params == {"level": "debug", "duration_s": 900}
    assert by_kind["push_config"].config == GOOD_CONFIG and by_kind["reboot"].config is None
    assert by_kind["restart_agent"].expires_at == by_kind["restart_agent"].issued_at + 3600
    assert [job.kind for job in await device.poll()] == list(made)  # re-sent until reported on

    await device.report(by_kind["self_test"].job_id, "received")
    await device.report(by_kind["self_test"].job_id, "running", progress=0.5)
    view = await batch(client, made["self_test"], admin)
    assert view["jobs"][0]["state"] == "running" and view["jobs"][0]["progress"] == 0.5
    assert "self_test" not in [job.kind for job in await device.poll()]  # acknowledged: not sent again
    await device.report(by_kind["self_test"].job_id, "succeeded", progress=1.0)
    await device.finish(by_kind["restart_agent"])
    await device.finish(by_kind["set_log_level"])
    await device.finish(by_kind["collect_diagnostics"], output="agent 0.1.0\nfps 14.9\terrors 0\n")
    await device.finish(by_kind["push_config"], "failed", reason="config_rolled_back")
    await device.finish(by_kind["reboot"], "refused", reason="unknown_kind")
    assert await device.poll() == []

    states = {kind: (await batch(client, bid, admin))["jobs"][0]["state"] for kind, bid in made.items()}
    assert states == {
        "restart_agent": "succeeded",
        "self_test": "succeeded",
        "set_log_level": "succeeded",
        "collect_diagnostics": "succeeded",
        "push_config": "failed",
        "reboot": "refused",
    }
    rows = [r for r in audit_rows(client, target=device.id) if r["action"].startswith("job.")]
    outcomes = [(r["action"], r["target"], r["details"]["kind"]) for r in rows]
    assert ("job.failed", device.id, "push_config") in outcomes and ("job.refused", device.id, "reboot") in outcomes
    assert len([o for o in outcomes if o[0].startswith("job.")]) == 6  # one outcome each, no progress noise
    created = audit_rows(client, action="job.create")
    assert [r["details"]["kind"] for r in created] == list(made)
    assert all(r["actor"].startswith("apitoken:") and r["details"]["devices"] == [device.id] for r in created)
    assert "config_sha256" in created[4]["details"] and "server_url" not in json.dumps(created[4]["details"])


async def test_factory_reset_revokes_the_device_which_must_enroll_again(client, device, admin):
    batch_id = await create_ok(client, admin, "factory_reset", {"device_ids": [device.id]})
    (job,) = await device.poll()
    await device.finish(job)
    row = live(client).get_device(device.id)
    assert (row["status"], row["status_reason"], row["credential_id"]) == ("revoked", "factory_reset", None)
    refused = await device.poll_raw()
    assert refused.status == 401 and (await refused.json())["code"] == "revoked"
    (revoke,) = audit_rows(client, action="device.revoke")
    assert revoke["target"] == device.id and revoke["details"]["job_id"] == job.job_id
    assert (await batch(client, batch_id, admin))["counts"]["succeeded"] == 1


async def test_operators_may_not_reboot_reset_or_rotate(client, device, operator, admin):
    target = {"device_ids": [device.id]}
    for kind in ("reboot", "factory_reset", "rotate_key"):
        resp = await create(client, operator, kind, target)
        assert resp.status == 403 and "admin" in (await resp.json())["error"]
    assert (await create(client, operator, "self_test", target)).status == 201
    assert (await create(client, admin, "reboot", target)).status == 201
    assert len(audit_rows(client, action="job.create")) == 2


async def test_bad_requests_are_refused_with_the_field_named_and_store_nothing(client, device, operator):
    target = {"device_ids": [device.id]}
    cases = [
        ({"kind": "push_config", "config": "zones = [[["}, "config is not valid TOML"),
        ({"kind": "push_config", "config": "[occupancy]\nmin_score = 2.5\n"}, "occupancy.min_score"),
        ({"kind": "push_config", "config": "[fall]\nwindow_secs = 2\n"}, "unknown key 'fall.window_secs'"),
        ({"kind": "push_config", "config": '[occupancy]\nzones = ["nowhere"]\n'}, "names zone 'nowhere'"),
        ({"kind": "push_config"}, "push_config needs config"),
        ({"kind": "self_test", "config": GOOD_CONFIG}, "config is only for push_config"),
        (
            {"kind": "set_log_level", "params": {"level": "loud", "duration_s": 60}},
            "params for set_log_level: invalid value for 'level'",
        ),
        ({"kind": "set_log_level", "params": {"level": "debug"}}, "missing field 'duration_s'"),
        ({"kind": "self_test", "params": {"x": 1}}, "unknown field 'x'"),
        ({"kind": "format_disk"}, "kind"),
        ({"kind": "self_test", "expires_in_s": 59}, "expires_in_s"),
        ({"kind": "self_test", "expires_in_s": 7 * 86400 + 1}, "expires_in_s"),
        ({"kind": "self_test", "error_threshold": 1.5}, "error_threshold"),
        ({"kind": "self_test", "error_threshold": 0}, "error_threshold"),
        ({"kind": "self_test", "rate_per_minute": 0}, "rate_per_minute"),
        ({"kind": "self_test", "target": {}}, "give device_ids, site, ward, room or tags"),
        ({"kind": "self_test", "target": {"room": "no-such-room"}}, "no active device matches"),
        ({"kind": "self_test", "target": {"device_ids": ["dev-unknown"]}}, "no active device matches"),
    ]
    for fields, named in cases:
        body = {"target": target, "expires_in_s": 600, **fields}
        resp = await client.post("/api/v1/jobs", json=body, headers=operator)
        assert resp.status == 400, (fields, await resp.text())
        assert named in (await resp.json())["error"], (fields, await resp.text())
    wrong_type = await client.post("/api/v1/jobs", data=b"kind=self_test", headers=operator)
    assert wrong_type.status == 415
    assert live(client).db["job_batches"].count == 0 and audit_rows(client, action="job.create") == []
    assert await device.poll() == []


async def test_a_push_config_larger_than_the_apps_body_limit_is_accepted(client, device, admin, second_admin):
    # 20 KiB of valid TOML: more than the server's default 16 KiB body limit, within the job's 32 KiB.
    config = GOOD_CONFIG + "".join(f"# note {i:05d} {'x' * 60}\n" for i in range(300))
    assert 16 * 1024 < len(config) < 32 * 1024
    await approve(client, await create_ok(client, admin, "push_config", {"device_ids": [device.id]}, config=config),
                  second_admin)  # fmt: skip
    (job,) = await device.poll()
    assert job.config == config


async def test_targets_select_active_devices_by_site_ward_room_and_tags(client, db_path, clock, operator):
    a, b = await enroll_many(client, db_path, clock, 2, site="st-marys", ward="3B", room="3B-12")
    (c,) = await enroll_many(client, db_path, clock, 1, site="st-marys", ward="4A", room="4A-01")
    (d,) = await enroll_many(client, db_path, clock, 1, site="general", ward="3B", room="3B-12")
    db = live(client)
    db.db.execute("UPDATE devices SET tags = ? WHERE id = ?", [json.dumps(["pilot", "icu"]), a.id])
    db.db.execute("UPDATE devices SET tags = ? WHERE id = ?", [json.dumps(["pilot"]), c.id])
    assert db.set_status(b.id, "quarantined", reason="t", by="t", now=clock(), allowed_from=("active",))

    async def chosen(target):
        resp = await create(client, operator, "self_test", target)
        if resp.status == 400:
            return set(), []
        body = await resp.json()
        view = await batch(client, body["batch_id"], operator)
        return {j["device_id"] for j in view["jobs"]}, body["skipped"]

    assert await chosen({"site": "st-marys"}) == ({a.id, c.id}, [])  # b is quarantined
    assert await chosen({"site": "st-marys", "ward": "3B"}) == ({a.id}, [])
    assert await chosen({"ward": "3B"}) == ({a.id, d.id}, [])
    assert await chosen({"room": "4A-01"}) == ({c.id}, [])
    assert await chosen({"tags": ["pilot"]}) == ({a.id, c.id}, [])
    assert await chosen({"tags": ["pilot", "icu"]}) == ({a.id}, [])
    assert await chosen({"device_ids": [a.id, b.id, "dev-gone"], "site": "st-marys"}) == ({a.id}, [b.id, "dev-gone"])
    assert await chosen({"tags": ["nobody"]}) == (set(), [])


# ---- 100 devices: rate limit and error threshold -------------------------------------------------------------


async def test_a_hundred_device_job_is_paced_and_stopped_by_the_error_threshold(client, db_path, clock, admin):
    fleet = await enroll_many(client, db_path, clock, 100, site="st-marys", ward="3B", room="3B-12")
    start = clock.now
    resp = await create(
        client, admin, "reboot", {"ward": "3B"}, rate_per_minute=30, error_threshold=5, expires_in_s=3600
    )
    assert resp.status == 201 and (await resp.json())["devices"] == 100
    batch_id = (await resp.json())["batch_id"]
    order = [j["device_id"] for j in (await batch(client, batch_id, admin))["jobs"]]
    healthy = set(order[:3])  # in release order: the first three succeed, the rest fail
    by_id = {d.id: d for d in fleet}

    def released(view):
        return [j["device_id"] for j in view["jobs"] if j["state"] == "released"]

    delivered = []  # (server time, device)
    for step in range(20):
        view = await batch(client, batch_id, admin)
        if view["status"] != "running":
            break
        if step in (0, 4):  # everyone polls: only the one device whose job was released gets it
            polled = await asyncio.gather(*(d.poll() for d in fleet))
            got = [(d, found) for d, found in zip(fleet, polled, strict=True) if found]
        else:
            got = [(by_id[device_id], await by_id[device_id].poll()) for device_id in released(view)]
        assert len(got) == 1, f"{len(got)} releases at step {step} (30 per minute: one every 2 s)"
        ((d, (job,)),) = got
        delivered.append((clock.now, d.id))
        await d.finish(job, "succeeded" if d.id in healthy else "failed", reason=None if d.id in healthy else "x")
        assert released(await batch(client, batch_id, admin)) == []  # nothing more until the clock moves
        clock.now += 2.0

    assert [dev for _, dev in delivered] == order[:8]  # three succeeded, then five failures stopped it
    assert [t - start for t, _ in delivered] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]
    view = await batch(client, batch_id, admin)
    assert view["status"] == "stopped" and view["end_reason"] == "error_threshold"
    assert [j["released_at"] - start for j in view["jobs"] if j["released_at"]] == [2.0 * k for k in range(8)]
    counts = {k: v for k, v in view["counts"].items() if v}
    assert counts == {"succeeded": 3, "failed": 5, "cancelled": 92}
    clock.now += 600
    assert not any(await asyncio.gather(*(d.poll() for d in fleet)))  # cancelled jobs are never sent

    # The audit log: who asked for what on which devices, and one outcome per device.
    (created,) = audit_rows(client, action="job.create")
    assert created["actor"].startswith("apitoken:") and created["details"]["count"] == 100
    assert sorted(created["details"]["devices"]) == sorted(by_id)
    outcome = {}
    for row in audit_rows(client, text=batch_id):
        if row["action"] in {"job.succeeded", "job.failed", "job.cancelled"}:
            assert row["target"] not in outcome and row["details"]["requested_by"] == created["actor"]
            outcome[row["target"]] = row["action"]
    assert len(outcome) == 100
    assert sorted(outcome.values()).count("job.cancelled") == 92 and set(outcome) == set(by_id)
    (stopped,) = audit_rows(client, action="job.batch_stopped")
    assert stopped["details"]["errors"] == 5 and stopped["details"]["cancelled"] == 92
    assert audit.verify(live(client).db).ok


async def test_without_a_rate_a_threshold_stop_withdraws_jobs_not_yet_fetched(client, db_path, clock, operator):
    fleet = await enroll_many(client, db_path, clock, 6)
    batch_id = await create_ok(client, operator, "self_test", {"room": "3B-12"}, error_threshold=2)
    first = [(d, (await d.poll())[0]) for d in fleet[:3]]
    await first[0][0].report(first[0][1].job_id, "received")  # acknowledged: it runs on
    for d, job in first[1:]:
        await d.finish(job, "failed")
    assert [await d.poll() for d in fleet[3:]] == [[], [], []]  # withdrawn before they fetched them
    await first[0][0].finish(first[0][1])
    view = await batch(client, batch_id, operator)
    counts = {k: v for k, v in view["counts"].items() if v}
    assert view["status"] == "stopped" and counts == {"succeeded": 1, "failed": 2, "cancelled": 3}


async def test_a_waiting_device_is_woken_when_its_job_is_created_or_released(client, device, db_path, clock, operator):
    waiting = asyncio.create_task(device.poll(wait=10))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    started = time.monotonic()
    await create_ok(client, operator, "self_test", {"device_ids": [device.id]})
    (job,) = await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 1.0 and job.kind == "self_test"
    await device.finish(job)

    # Paced: the second device's job is released by the server's own task once the clock allows.
    (other,) = await enroll_many(client, db_path, clock, 1)
    batch_id = await create_ok(client, operator, "restart_agent", {"room": "3B-12"}, rate_per_minute=1)
    view = await batch(client, batch_id, operator)
    _, second_id = (j["device_id"] for j in view["jobs"])
    second = device if second_id == device.id else other
    assert await second.poll() == []
    waiting = asyncio.create_task(second.poll(wait=10))
    await asyncio.sleep(0.2)
    clock.now += 60
    (job,) = await asyncio.wait_for(waiting, 5)
    assert job.kind == "restart_agent"
    await second.finish(job)
    nothing = time.monotonic()
    assert await second.poll(wait=1) == [] and time.monotonic() - nothing >= 0.9


# ---- offline devices and expiry ------------------------------------------------------------------------------


async def test_an_offline_device_gets_its_job_when_it_returns(client, device, clock, operator):
    batch_id = await create_ok(client, operator, "collect_diagnostics", {"device_ids": [device.id]})
    clock.now += 3000  # offline for 50 minutes of the job's hour
    (job,) = await device.poll()
    await device.finish(job, output="uptime 3000\n")
    assert (await batch(client, batch_id, operator))["counts"]["succeeded"] == 1


async def test_an_expired_job_is_not_delivered_and_a_late_report_is_refused(client, db_path, clock, operator):
    online, offline = await enroll_many(client, db_path, clock, 2)
    batch_id = await create_ok(client, operator, "self_test", {"room": "3B-12"}, expires_in_s=60)
    (fetched,) = await online.poll()  # fetched, never acknowledged
    clock.now += 60
    assert await offline.poll() == [] and await online.poll() == []
    late = await online.report(fetched.job_id, "received")
    assert late.status == 409 and (await late.json())["code"] == "expired"
    late = await online.report(fetched.job_id, "succeeded")
    assert late.status == 409
    view = await batch(client, batch_id, operator)
    assert [j["state"] for j in view["jobs"]] == ["expired", "expired"] and view["done"]
    expired = audit_rows(client, action="job.expired")
    assert sorted(r["target"] for r in expired) == sorted([online.id, offline.id])
    assert all(r["actor"] == "system" and r["details"]["batch_id"] == batch_id for r in expired)


async def test_a_job_received_in_time_may_report_after_expiry(client, device, clock, operator):
    await create_ok(client, operator, "self_test", {"device_ids": [device.id]}, expires_in_s=60)
    (job,) = await device.poll()
    assert (await device.report(job.job_id, "running")).status == 200
    clock.now += 300
    assert (await device.report(job.job_id, "succeeded")).status == 200


# ---- reports -------------------------------------------------------------------------------------------------


async def test_a_replayed_report_is_harmless_and_a_conflicting_one_refused(client, device, operator):
    await create_ok(client, operator, "self_test", {"device_ids": [device.id]})
    (job,) = await device.poll()
    for _ in range(2):
        resp = await device.report(job.job_id, "succeeded")
        assert resp.status == 200 and (await resp.json())["state"] == "succeeded"
    stale = await device.report(job.job_id, "running")
    assert stale.status == 200 and (await stale.json())["state"] == "succeeded"
    conflict = await device.report(job.job_id, "failed")
    assert conflict.status == 409 and (await conflict.json())["code"] == "finished"
    # The very same request again is a replayed proof.
    body = wire.JobReport(job_id=job.job_id, state="succeeded").model_dump_json().encode()
    proof = device.session.proof("POST", f"{JOBS}/{job.job_id}", body)
    once = await device.session.send("POST", f"{JOBS}/{job.job_id}", body, "application/json", proof=proof)
    again = await device.session.send("POST", f"{JOBS}/{job.job_id}", body, "application/json", proof=proof)
    assert once.status == 200 and again.status == 401 and (await again.json())["code"] == "replay"
    assert len(audit_rows(client, action="job.succeeded")) == 1


async def test_reports_only_for_the_devices_own_released_jobs(client, db_path, clock, operator):
    a, b = await enroll_many(client, db_path, clock, 2)
    await create_ok(client, operator, "self_test", {"device_ids": [a.id]})
    (job,) = await a.poll()
    assert (await b.report(job.job_id, "succeeded")).status == 404
    batch_id = await create_ok(client, operator, "self_test", {"room": "3B-12"}, rate_per_minute=1)
    queued = (await batch(client, batch_id, operator))["jobs"][1]
    owner = a if queued["device_id"] == a.id else b
    resp = await owner.report(queued["job_id"], "received")  # never released: it cannot know it
    assert resp.status == 409 and (await resp.json())["code"] == "not_sent"
    mismatch = await a.session.send(
        "POST",
        f"{JOBS}/{job.job_id}",
        wire.JobReport(job_id="job-" + "0" * 32, state="received").model_dump_json().encode(),
        "application/json",
    )
    assert mismatch.status == 400


async def test_diagnostics_must_be_printable_text(client, device, clock, operator):
    batch_id = await create_ok(client, operator, "collect_diagnostics", {"device_ids": [device.id]})
    (job,) = await device.poll()
    for bad in ("log line\x00with a NUL", "\x1b[2J", "\x89PNG\r\n\x1a\n", "x" * (256 * 1024 + 1)):
        body = json.dumps({"job_id": job.job_id, "state": "succeeded", "output": bad}).encode()
        resp = await device.report_raw(job.job_id, body)
        assert resp.status == 400, await resp.text()
    raw = b'{"job_id": "%s", "state": "succeeded", "output": "caf\xe9"}' % job.job_id.encode()  # not UTF-8
    assert (await device.report_raw(job.job_id, raw)).status == 400
    too_big = "é" * (200 * 1024)  # within the character limit, over 256 KiB as UTF-8
    assert (await device.report(job.job_id, "succeeded", output=too_big)).status == 400
    view = await batch(client, batch_id, operator)
    assert view["jobs"][0]["state"] == "released" and not view["jobs"][0]["has_output"]
    text = "".join(f"{i:06d} agent ok\tfps 15.0 température 41 °C\n" for i in range(5000))  # ~230 KiB
    assert (await device.report(job.job_id, "succeeded", output=text)).status == 200
    resp = await client.get(f"/api/v1/jobs/{batch_id}/devices/{device.id}/output", headers=operator)
    assert resp.status == 200 and (await resp.json())["output"] == text

    other = await create_ok(client, operator, "self_test", {"device_ids": [device.id]})
    (job,) = await device.poll()
    resp = await device.report(job.job_id, "succeeded", output="fine text")
    assert resp.status == 400 and "only collect_diagnostics" in (await resp.json())["error"]
    resp = await client.get(f"/api/v1/jobs/{other}/devices/{device.id}/output", headers=operator)
    assert resp.status == 404


# ---- key rotation --------------------------------------------------------------------------------------------


def possession(key, **claims):
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"typ": wire.ROTATE_TYP})


async def rotate(device, job_id, new_key, *, signer=None, **over):
    dev = device.session
    if dev.nonce is None:
        await dev.fetch_nonce()
    public = wire.encode_public_key(new_key.public_key())
    claims = {"device_id": device.id, "job_id": job_id, "public_key": public, "nonce": dev.nonce, **over}
    body = json.dumps({"job_id": job_id, "public_key": public, "possession": possession(signer or new_key, **claims)})
    return await dev.send("POST", ROTATE, body.encode(), "application/json")


async def test_rotate_key_end_to_end(client, db_path, clock, admin):
    device, neighbour = await enroll_many(client, db_path, clock, 2)
    old_key, old_credential = device.session.key, device.session.credential
    wrong_kind = await create_ok(client, admin, "self_test", {"device_ids": [device.id]})
    (self_test,) = await device.poll()
    new_key = wire.generate_key()
    resp = await rotate(device, self_test.job_id, new_key)
    assert resp.status == 409 and wrong_kind

    batch_id = await create_ok(client, admin, "rotate_key", {"device_ids": [device.id]})
    (job,) = [j for j in await device.poll() if j.kind == "rotate_key"]
    assert (await device.report(job.job_id, "received")).status == 200
    premature = await device.report(job.job_id, "succeeded")
    assert premature.status == 409 and (await premature.json())["code"] == "use_rotate_key"
    assert (await rotate(device, job.job_id, new_key, signer=old_key)).status == 401  # not proven by the new key
    assert (await rotate(device, job.job_id, new_key, nonce="A" * 32)).status == 400  # not bound to this request
    assert (await rotate(device, job.job_id, new_key, device_id=neighbour.id)).status == 400
    taken = await rotate(device, job.job_id, neighbour.session.key)  # someone else's key
    assert taken.status == 409
    assert live(client).get_device(device.id)["public_key"] == wire.encode_public_key(old_key.public_key())

    resp = await rotate(device, job.job_id, new_key)
    assert resp.status == 200, await resp.text()
    grant = wire.CredentialGrant.model_validate(await resp.json())
    # The old key and credential stop working at once.
    assert (await device.session.post_event(event_for(device.id))).status == 401
    device.session.key, device.session.credential = new_key, grant.credential
    assert (await device.session.post_event(event_for(device.id))).status == 201
    assert (await device.poll()) == [self_test]  # the new key polls; the rotation is done
    device.session.key, device.session.credential = old_key, old_credential
    assert (await device.poll_raw()).status == 401
    device.session.key, device.session.credential = new_key, grant.credential
    assert (await device.report(job.job_id, "succeeded")).status == 200  # agrees with what the server recorded
    again = await rotate(device, job.job_id, wire.generate_key())
    assert again.status == 409  # a job rotates once

    view = await batch(client, batch_id, admin)
    assert view["jobs"][0]["state"] == "succeeded"
    (rotated,) = audit_rows(client, action="device.rotate_key")
    assert rotated["target"] == device.id and rotated["details"]["new_key_thumbprint"] == wire.thumbprint(
        new_key.public_key()
    )
    assert [r["target"] for r in audit_rows(client, action="job.succeeded")] == [device.id]


# ---- cancel and the operator views ---------------------------------------------------------------------------


async def test_cancel_withdraws_what_was_not_acknowledged(client, db_path, clock, operator):
    fleet = await enroll_many(client, db_path, clock, 4)
    batch_id = await create_ok(client, operator, "restart_agent", {"room": "3B-12"}, rate_per_minute=2)
    clock.now += 30
    got = {d.id: await d.poll() for d in fleet}
    acked = [(d, got[d.id][0]) for d in fleet if got[d.id]]
    assert len(acked) == 2
    await acked[0][0].report(acked[0][1].job_id, "received")
    resp = await client.post(f"/api/v1/jobs/{batch_id}/cancel", headers=operator)
    assert resp.status == 200
    view = await resp.json()
    counts = {k: v for k, v in view["counts"].items() if v}
    assert view["status"] == "cancelled" and counts == {"received": 1, "cancelled": 3}
    clock.now += 300
    assert not any([await d.poll() for d in fleet])
    assert (await client.post(f"/api/v1/jobs/{batch_id}/cancel", headers=operator)).status == 409
    await acked[0][0].finish(acked[0][1])  # the one that had it runs on and is recorded
    (cancelled,) = audit_rows(client, action="job.batch_cancelled")
    assert cancelled["actor"].startswith("apitoken:") and cancelled["details"]["cancelled"] == 3
    assert len(audit_rows(client, action="job.cancelled")) == 3

    listing = await client.get("/api/v1/jobs", headers=operator)
    (summary,) = (await listing.json())["batches"]
    assert summary["batch_id"] == batch_id and summary["devices"] == 4 and "jobs" not in summary
    assert (await client.get("/api/v1/jobs/batch-0000000000000000", headers=operator)).status == 404


# ---- roles ---------------------------------------------------------------------------------------------------

# (method, path, least role, body, status for an allowed caller); rows for tests/test_operators.ROLE_MATRIX.
JOB_ROUTES = [
    ("GET", "/api/v1/jobs", "viewer", None, 200),
    ("POST", "/api/v1/jobs", "operator", {"kind": "self_test", "target": {"room": "3B-12"}, "expires_in_s": 600}, 201),
    ("POST", "/api/v1/jobs", "admin", {"kind": "reboot", "target": {"room": "3B-12"}, "expires_in_s": 600}, 201),
    ("GET", "/api/v1/jobs/{job_batch_id}", "viewer", None, 200),
    ("POST", "/api/v1/jobs/{job_batch_id}/cancel", "operator", None, 200),
    ("GET", "/api/v1/jobs/{job_batch_id}/devices/{job_device_id}/output", "operator", None, 200),
]


def fresh_batch(client):
    """A collect_diagnostics batch on a new active device in 3B-12 (what ROLE_MATRIX rows need)."""
    db, now = live(client).db, client.server.app[CLOCK_KEY]()
    device_id = f"dev-{len(list(db['devices'].rows)):016x}"
    insert_device(db, device_id, enrolled_at=now)
    batch_id = jobs.create_batch(
        db, kind="collect_diagnostics", device_ids=[device_id], created_by="test", now=now, expires_in_s=600
    )
    return {"job_batch_id": batch_id, "job_device_id": device_id}


async def caller_headers(client, caller, row):
    if caller == "anonymous":
        return {}
    kind, role = caller.split(":")
    if kind == "token":
        return api_headers(client, role, f"{role}-script")
    username = f"{role}-{row}"
    app = client.server.app
    operators.create_operator(live(client).db, username, PASSWORD, role, app[CLOCK_KEY](), app[CONFIG_KEY])
    resp = await client.post("/api/v1/session", json={"username": username, "password": PASSWORD})
    assert resp.status == 200
    return {
        "Cookie": f"{COOKIE_NAME}={resp.cookies[COOKIE_NAME].value}",
        CSRF_HEADER: (await resp.json())["csrf_token"],
    }


@pytest.mark.parametrize(
    "caller", ["anonymous", "token:viewer", "token:operator", "token:admin", "session:viewer", "session:admin"]
)
async def test_every_job_route_checks_the_role(client, caller):
    wrong = []
    for row, (method, path, role, body, ok) in enumerate(JOB_ROUTES):
        url = path.format(**fresh_batch(client))
        headers = await caller_headers(client, caller, row)
        resp = await client.request(method, url, json=body, headers=headers)
        have = None if caller == "anonymous" else caller.split(":")[1]
        expected = 401 if have is None else (ok if has_role(have, role) else 403)
        if resp.status != expected:
            wrong.append(f"{caller} {method} {url}: {resp.status} {await resp.text()} (expected {expected})")
    assert not wrong, "\n".join(wrong)


async def test_a_session_needs_the_csrf_token_to_create_jobs(client, device):
    headers = await caller_headers(client, "session:operator", 0)
    del headers[CSRF_HEADER]
    body = {"kind": "self_test", "target": {"device_ids": [device.id]}, "expires_in_s": 600}
    assert (await client.post("/api/v1/jobs", json=body, headers=headers)).status == 403
