"""System rollouts on the server (issue 19, item 2): the same staged machinery as models, with kind ``system``.

Through the real app (both database backends): a RAUC bundle published as a TUF target with its signed custom
metadata, a rollout of kind system that takes only devices reporting their system version, offers that reach only
polls saying ``?system=1`` (older agents never see one, and their model offers keep their old shape), a device's
system offer before its model offer, the ``rebooting`` step, reasons with the device's own words, and a roll back
that offers the previous system as an explicit rollback.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest
from tuf.api.metadata import Metadata, Root, TargetFile, Targets

from firmware.heartbeat import SystemReadings, build_health
from fleet.app import create_app
from fleet.ota.library import bundles
from fleet.ota.repository.files import REPOSITORY_KEY
from fleet.ota.repository.keys import signer_for
from fleet.ota.rollouts.decide import tick
from fleet.ota.rollouts.spec import ErrorThreshold, RolloutSpec
from fleet.ota.rollouts.state import Report, new_state
from fleet.web.appkeys import DB_KEY
from tests.device.fakes.rauc import make_bundle
from tests.fleet.helpers import agent_readings, api_headers
from tests.fleet.ota.test_rollouts import ROLLOUTS, UPDATE, config, enroll, store_package, view  # noqa: F401
from wardsight import wire

BOARD = "wardsight-rpi5"
SYSTEMS = ("1.0.0", "1.1.0")
MODELS = ("1.0", "2.0")
SYSTEM_POLL = f"{UPDATE}?{wire.SYSTEM_POLL_QUERY}"


def store_bundle(app, directory, version, compatible=BOARD) -> bundles.BundleInfo:
    """A (fake) signed RAUC bundle stored through the library's code, as an upload does."""
    repo = app[REPOSITORY_KEY]
    repo.incoming_dir.mkdir(parents=True, exist_ok=True)
    upload = make_bundle(repo.incoming_dir / f"{compatible}-{version}.raucb", compatible=compatible, version=version)
    info = bundles.inspect_bundle(upload, compatible, version)
    bundles.install_bundle(repo, upload, info)
    bundles.record_bundle(app[DB_KEY].db, info, "alice", 1_800_000_000.0, replaced=False)
    return info


def bundle_target(info: bundles.BundleInfo) -> TargetFile:
    target = TargetFile(info.length, {"sha256": info.sha256}, info.target)
    target.unrecognized_fields["custom"] = {"kind": "system", "compatible": info.compatible, "version": info.version}
    return target


def publish_all(app, clock, directory, staged=()):
    """Play the hospital: models and bundles stored, then root and targets listing them signed with offline keys
    made here (``staged``: bundle versions uploaded but not signed)."""
    repo, now = app[REPOSITORY_KEY], datetime.fromtimestamp(clock.now, UTC)
    directory.mkdir(exist_ok=True)
    listed = {}
    for version in MODELS:
        info = store_package(app, directory, version)
        listed[info.target] = TargetFile(info.length, {"sha256": info.sha256}, info.target)
    for version in SYSTEMS:
        listed[wire.system_target_path(BOARD, version)] = bundle_target(store_bundle(app, directory, version))
    for version in staged:
        store_bundle(app, directory, version)
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


@pytest.fixture
async def client(aiohttp_client, config, clock, tmp_path):  # noqa: F811
    client = await aiohttp_client(create_app(config, clock=clock))
    publish_all(client.server.app, clock, tmp_path / "packages")
    return client


async def heartbeat(device, clock, version, compatible=None):
    system = SystemReadings(
        system=None if version is None else wire.SystemVersion(slot="A", version=version, compatible=compatible)
    )
    health = build_health(device.device_id, agent_readings(), system, uptime_s=60.0, sent_at=clock.now)
    resp = await device.send("POST", wire.HEARTBEAT_PATH, health.model_dump_json().encode(), "application/json")
    assert resp.status == 200, await resp.text()


def body(kind="system", **over):
    out = {
        "kind": kind,
        "model": BOARD if kind == "system" else "movenet",
        "version": "1.1.0" if kind == "system" else "2.0",
        "previous_version": "1.0.0" if kind == "system" else "1.0",
        "selector": {"ward": "3B"},
        "groups": [{"percent": 100}],
        "success_threshold": 1.0,
        "error_threshold": {"count": 1},
        "in_progress_timeout_s": 600,
    }
    return {**out, **over}


async def raw_poll(device, path=UPDATE):
    resp = await device.send("GET", path)
    if resp.status == 204:
        return None
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def send(device, offer, state, reason=None, detail=None):
    report = wire.UpdateReport(rollout_id=offer["rollout_id"], model=offer["model"], version=offer["version"],
                               state=state, reason=reason, detail=detail)  # fmt: skip
    resp = await device.send("POST", UPDATE, report.model_dump_json(exclude_none=True).encode(), "application/json")
    assert resp.status == 202, await resp.text()


def tick_now(client):
    from fleet.ota.rollouts.service import tick_all
    from fleet.web.appkeys import CLOCK_KEY

    return tick_all(client.server.app, client.server.app[CLOCK_KEY]())


def row_of(shown, device):
    return next(d for d in shown["devices"] if d["device_id"] == device.device_id)


# ---- offers --------------------------------------------------------------------------------------------------


async def test_system_offers_reach_only_agents_that_ask_and_come_before_models(client, db_path, clock):
    devices = await enroll(client, db_path, clock, {"3B-12": "3B", "3B-14": "3B", "3B-15": "3B"})
    new, old, plain = devices["3B-12"], devices["3B-14"], devices["3B-15"]
    for device, version in ((new, "1.0.0"), (old, "1.0.0"), (plain, None)):
        await heartbeat(device, clock, version)
    operator = api_headers(client, "operator")
    models = await (await client.post(ROLLOUTS, json=body("model"), headers=operator)).json()
    resp = await client.post(ROLLOUTS, json=body(), headers=operator)
    assert resp.status == 201, await resp.text()
    system = await resp.json()
    assert system["kind"] == "system" and models["kind"] == "model"
    assert system["target"] == f"system/{BOARD}/1.1.0.raucb" and system["target_checked"] is True
    # Only devices that report a system version: an agent on an image without one cannot take it.
    assert {d["device_id"] for d in system["devices"]} == {new.device_id, old.device_id}

    # The agent that takes system updates is offered its system update first, though the model rollout is older.
    offer = await raw_poll(new, SYSTEM_POLL)
    assert offer == {"rollout_id": system["id"], "model": BOARD, "version": "1.1.0", "kind": "system",
                     "target": f"system/{BOARD}/1.1.0.raucb", "window_start": None, "window_end": None,
                     "rollback": False}  # fmt: skip
    # An older agent (a poll without ?system=1) sees only its model offer, in the shape it has always had.
    for device in (old, plain, new):
        offer_json = await raw_poll(device)
        assert offer_json is not None and offer_json["rollout_id"] == models["id"]
        assert "kind" not in offer_json and "rollback" not in offer_json
        wire.UpdateOffer.model_validate(offer_json)
    # The jobs long poll names both offers, so any agent is woken for either.
    hint = await (await new.send("GET", "/api/v1/device/jobs?wait=0")).json()
    assert hint["update"] == f"{system['id']}/1.1.0,{models['id']}/2.0"

    # Until the system update is done the model offer waits; then it comes.
    offer = await raw_poll(new, SYSTEM_POLL)
    for state in ("downloading", "downloaded", "installed", "rebooting"):
        await send(new, offer, state)
    tick_now(client)
    shown = await view(client, operator, system["id"])
    assert row_of(shown, new)["explain"] == "rebooting into the new system (booted once, kept only if healthy)"
    assert row_of(shown, old)["explain"].startswith("cannot take system updates"), row_of(shown, old)
    assert (await raw_poll(new, SYSTEM_POLL))["kind"] == "system"
    await send(new, offer, "installed")  # a late report of an earlier step changes nothing
    await send(new, offer, "activated")
    await send(new, offer, "healthy")
    tick_now(client)
    assert row_of(await view(client, operator, system["id"]), new)["explain"] == "healthy on system 1.1.0"
    assert (await raw_poll(new, SYSTEM_POLL))["rollout_id"] == models["id"]


async def test_the_device_s_reason_and_its_own_words_reach_the_view(client, db_path, clock):
    devices = await enroll(client, db_path, clock, {"3B-12": "3B", "3B-14": "3B"})
    for device in devices.values():
        await heartbeat(device, clock, "1.0.0")
    operator = api_headers(client, "operator")
    system = await (await client.post(ROLLOUTS, json=body(error_threshold={"count": 5}), headers=operator)).json()
    refusing, reverting = devices["3B-12"], devices["3B-14"]
    offer = await raw_poll(refusing, SYSTEM_POLL)
    await send(refusing, offer, "rejected", "incompatible", "the bundle is signed for 'wardsight-rpi4', this system"
               " is 'wardsight-rpi5'")  # fmt: skip
    offer = await raw_poll(reverting, SYSTEM_POLL)
    for state in ("downloading", "downloaded", "installed", "rebooting", "activated"):
        await send(reverting, offer, state)
    await send(reverting, offer, "rolled_back", "self_test_failed", "load_failed: no model")
    tick_now(client)
    shown = await view(client, operator, system["id"])
    row = row_of(shown, refusing)
    assert (row["status"], row["reason"]) == ("rejected", "incompatible")
    assert row["detail"] == "the bundle is signed for 'wardsight-rpi4', this system is 'wardsight-rpi5'"
    assert row["explain"] == ("rejected by the device: the bundle is for another board (the bundle is signed for"
                              " 'wardsight-rpi4', this system is 'wardsight-rpi5'); it still runs its previous system")
    row = row_of(shown, reverting)
    assert row["explain"] == ("booted back into its previous system: the new system's agent failed its self-test"
                              " (load_failed: no model)")  # fmt: skip
    assert shown["failures"] == 2 and shown["status"] == "paused"


async def test_rolling_back_offers_the_previous_system_as_an_explicit_rollback(client, db_path, clock):
    devices = await enroll(client, db_path, clock, {"3B-12": "3B", "3B-14": "3B", "3B-15": "3B"})
    for device in devices.values():
        await heartbeat(device, clock, "1.0.0")
    operator = api_headers(client, "operator")
    system = await (await client.post(ROLLOUTS, json=body(), headers=operator)).json()
    done, booting, waiting = devices["3B-12"], devices["3B-14"], devices["3B-15"]
    for device, states in ((done, ("installed", "rebooting", "activated", "healthy")), (booting, ("rebooting",)),
                           (waiting, ("downloaded",))):  # fmt: skip
        offer = await raw_poll(device, SYSTEM_POLL)
        for state in states:
            await send(device, offer, state)
    tick_now(client)
    resp = await client.post(f"{ROLLOUTS}/{system['id']}/rollback", json={"reason": "CVE found"}, headers=operator)
    assert resp.status == 200, await resp.text()
    # The devices that installed it (booting counts: its slot is armed) are offered 1.0.0, marked a rollback.
    for device in (done, booting):
        offer = await raw_poll(device, SYSTEM_POLL)
        assert (offer["version"], offer["rollback"], offer["target"]) == (
            "1.0.0", True, f"system/{BOARD}/1.0.0.raucb")  # fmt: skip
        assert offer["window_start"] is None
    assert await raw_poll(waiting, SYSTEM_POLL) is None, "a device that had not installed it is withdrawn"
    for device in (done, booting):
        offer = await raw_poll(device, SYSTEM_POLL)
        for state in ("downloading", "installed", "rebooting", "activated", "healthy"):
            await send(device, offer, state)
    tick_now(client)
    shown = await view(client, operator, system["id"])
    assert shown["status"] == "rolled_back"
    assert row_of(shown, done)["explain"] == "rolled back to 1.0.0"


async def test_system_rollouts_that_cannot_be_are_refused_in_words(aiohttp_client, config, clock, db_path, tmp_path):  # noqa: F811
    client = await aiohttp_client(create_app(config, clock=clock))
    publish_all(client.server.app, clock, tmp_path / "packages", staged=("1.2.0",))
    devices = await enroll(client, db_path, clock, {"3B-12": "3B"})
    operator = api_headers(client, "operator")
    resp = await client.post(ROLLOUTS, json=body(), headers=operator)
    assert (resp.status, (await resp.json())["error"]) == (
        400, "no active device matches the selector and reports its system version")  # fmt: skip
    await heartbeat(devices["3B-12"], clock, "1.0.0")
    resp = await client.post(ROLLOUTS, json=body(version="1.2.0"), headers=operator)
    error = (await resp.json())["error"]
    assert resp.status == 400 and error.startswith(f"system 1.2.0 for {BOARD} is staged: uploaded but not signed")
    assert "wardsight ota publish-system" in error
    resp = await client.post(ROLLOUTS, json=body(version="1.3.0"), headers=operator)
    assert "the system bundle library has no system 1.3.0" in (await resp.json())["error"]
    for bad in ({"version": "lightning-fp16-1"}, {"model": "Wardsight+rpi5"}):
        resp = await client.post(ROLLOUTS, json=body(**bad), headers=operator)
        assert resp.status == 400, bad
    assert (await (await client.get(ROLLOUTS, headers=operator)).json())["rollouts"] == []


# ---- pure ------------------------------------------------------------------------------------------------------


def test_rebooting_is_a_step_between_installed_and_activated_and_a_device_stuck_in_it_times_out():
    spec = RolloutSpec("ro-s", BOARD, "1.1.0", (("a", "b"),), 1.0, ErrorThreshold(count=5), 600.0, kind="system")
    state, _ = tick(spec, new_state(spec, 0.0), [], 0.0)
    reports = [Report("a", "1.1.0", "installed", 1.0), Report("a", "1.1.0", "rebooting", 2.0),
               Report("a", "1.1.0", "installed", 3.0), Report("b", "1.1.0", "rebooting", 2.0)]  # fmt: skip
    state, _ = tick(spec, state, reports, 10.0)
    assert state.devices["a"].status == "rebooting" and state.devices["a"].reached == "rebooting"
    state, decisions = tick(spec, state, [Report("a", "1.1.0", "activated", 100.0)], 603.0)
    assert state.devices["a"].status == "activated"
    assert (state.devices["b"].status, state.devices["b"].reason) == ("failed", "timeout"), "it never came back"
    assert [d.kind for d in decisions] == ["timed_out", "paused"]  # the group can no longer be all healthy
    offer = wire.UpdateOffer(rollout_id="ro-s", model=BOARD, version="1.1.0", target=spec.target, kind="system")
    assert offer.target == "system/wardsight-rpi5/1.1.0.raucb"


def test_bundle_files_are_checked_for_a_signature_before_they_are_stored(tmp_path):
    good = make_bundle(tmp_path / "good.raucb", compatible=BOARD, version="1.1.0")
    info = bundles.inspect_bundle(good, BOARD, "1.1.0")
    assert (info.target, info.length) == (f"system/{BOARD}/1.1.0.raucb", good.stat().st_size)
    unsigned = make_bundle(tmp_path / "unsigned.raucb", compatible=BOARD, version="1.1.0", key=None)
    with pytest.raises(bundles.BundleError, match="it is not signed"):
        bundles.inspect_bundle(unsigned, BOARD, "1.1.0")
    shutil.copyfile(good, tmp_path / "x")
    with pytest.raises(bundles.BundleError, match="not a RAUC compatible"):
        bundles.inspect_bundle(tmp_path / "x", "Not A Board", "1.1.0")
    with pytest.raises(bundles.BundleError, match=r"system versions carry no '\+build' metadata"):
        bundles.inspect_bundle(tmp_path / "x", BOARD, "1.1.0+b7")
    with pytest.raises(bundles.BundleError, match=r"has the number '01'.*starts with 0"):
        bundles.inspect_bundle(tmp_path / "x", BOARD, "1.01.0")


async def test_a_running_version_no_bundle_can_name_is_no_rollback_target_and_polls_keep_working(
    client, db_path, clock
):
    [device] = (await enroll(client, db_path, clock, {"3B-12": "3B"})).values()
    await heartbeat(device, clock, "1.0.0+b1")  # a version the image may report but no bundle target can name
    operator = api_headers(client, "operator")
    system = await (await client.post(ROLLOUTS, json=body(), headers=operator)).json()
    offer = await raw_poll(device, SYSTEM_POLL)
    for state in ("installed", "rebooting", "activated", "healthy"):
        await send(device, offer, state)
    tick_now(client)
    resp = await client.post(f"{ROLLOUTS}/{system['id']}/rollback", json={"reason": "CVE found"}, headers=operator)
    assert resp.status == 200, await resp.text()
    offer = await raw_poll(device, SYSTEM_POLL)  # the rollout's previous version, not the one the device reported
    assert (offer["version"], offer["target"], offer["rollback"]) == ("1.0.0", f"system/{BOARD}/1.0.0.raucb", True)
    jobs = await device.send("GET", "/api/v1/device/jobs")
    assert jobs.status == 200, await jobs.text()


async def test_a_system_rollout_takes_only_the_devices_of_its_bundle_s_board(client, db_path, clock):
    devices = await enroll(client, db_path, clock, {"3B-12": "3B", "3B-14": "3B", "3B-15": "3B"})
    pi5, pi4, unknown = devices["3B-12"], devices["3B-14"], devices["3B-15"]
    await heartbeat(pi5, clock, "1.0.0", compatible=BOARD)
    await heartbeat(pi4, clock, "1.0.0", compatible="wardsight-rpi4")
    await heartbeat(unknown, clock, "1.0.0")  # an agent that does not say its board: offered, RAUC judges
    operator = api_headers(client, "operator")
    resp = await client.post(ROLLOUTS, json=body(), headers=operator)
    assert resp.status == 201, await resp.text()
    shown = await view(client, operator, (await resp.json())["id"])
    assert {row["device_id"] for row in shown["devices"]} == {pi5.device_id, unknown.device_id}
    assert await raw_poll(pi4, SYSTEM_POLL) is None


async def test_the_library_counts_a_version_s_devices_per_board(client, db_path, clock):
    devices = await enroll(client, db_path, clock, {"3B-12": "3B", "3B-14": "3B", "3B-15": "3B"})
    pi5, pi4, unknown = devices["3B-12"], devices["3B-14"], devices["3B-15"]
    await heartbeat(pi5, clock, "1.0.0", compatible=BOARD)
    await heartbeat(pi4, clock, "1.0.0", compatible="wardsight-rpi4")
    await heartbeat(unknown, clock, "1.0.0")  # says no board: counted for every board with 1.0.0
    resp = await client.get("/api/v1/models", headers=api_headers(client, "viewer"))
    assert resp.status == 200, await resp.text()
    (entry,) = [s for s in (await resp.json())["systems"] if s["compatible"] == BOARD]
    version = next(v for v in entry["versions"] if v["version"] == "1.0.0")
    assert version["devices"] == 2 and set(version["device_ids"]) == {pi5.device_id, unknown.device_id}
