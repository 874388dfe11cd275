"""Issue 15 item 11 on the server: the versions the system itself uses are not refused by a pattern (the agent's
built-in model reports "lightning-fp16-1", and a rollout or a roll back to it sends devices back to the built-in
model, with no package to fetch), a version that is only staged (uploaded, not signed) is refused with
the command that signs it, and each device's step comes with its reason in words (a deferral too)."""

import pytest

from accelerators.catalog import MOVENET_MULTIPOSE
from fleet.app import create_app
from fleet.config import ServerConfig
from fleet.ota.library.store import record_upload
from fleet.ota.repository.files import REPOSITORY_KEY
from fleet.web.appkeys import DB_KEY
from tests.fleet.helpers import api_headers
from tests.fleet.ota.test_rollouts import (
    PUBLISHED,
    ROLLOUTS,
    create,
    enroll,
    groups_of,
    heartbeat,
    poll,
    publish,
    report,
    rollout_body,
    store_package,
    tick,
    update,
    view,
)
from wardsight import wire

BUILT_IN = MOVENET_MULTIPOSE.version  # what a device on its factory model reports: "lightning-fp16-1"


@pytest.fixture
async def ota(aiohttp_client, db_path, clock, tmp_path):
    """The fleet app with the model library holding published movenet 1.0, 1.1, 2.0 and 2.1."""
    client = await aiohttp_client(create_app(ServerConfig(database=db_path), clock=clock))
    publish(client.server.app, clock, tmp_path / "packages", PUBLISHED)
    return client


def stage(app, clock, directory, version, model="movenet"):
    """Upload a package as POST /api/v1/models does (stored and recorded in the library), without signing it."""
    info = store_package(app, directory, version, model)
    record_upload(app[DB_KEY].db, info, "user:olga", clock.now, replaced=False)


async def test_rolling_back_to_the_built_in_model_offers_it_without_a_package(ota, db_path, clock):
    assert BUILT_IN == "lightning-fp16-1"
    devices = await enroll(ota, db_path, clock, {"3B-01": "3B", "3B-02": "3B"})
    operator = api_headers(ota, "operator")
    for device in devices.values():
        await heartbeat(device, clock, {"movenet": BUILT_IN})
    rollout = await create(ota, operator, version="1.1", previous_version=BUILT_IN, groups=[{"percent": 100}])
    assert rollout["previous_version"] == BUILT_IN and rollout["devices_total"] == 2

    # The most common roll back of all: from the first package back to the model built into the agent.
    first, second = groups_of(rollout, devices)[1]
    await update(first)
    clock.now += 10
    tick(ota)
    resp = await ota.post(f"{ROLLOUTS}/{rollout['id']}/rollback", headers=operator)
    assert resp.status == 200, await resp.text()
    assert (await poll(second)) is None  # never switched: its offer is withdrawn
    offer = await poll(first)
    assert offer is not None
    assert (offer.version, offer.target) == (BUILT_IN, wire.BUILTIN_TARGET)  # nothing to fetch over TUF
    got = {d["device_id"]: d for d in (await view(ota, operator, rollout["id"]))["devices"]}
    assert got[first.device_id]["version"] == BUILT_IN
    assert got[first.device_id]["explain"].startswith(f"back to the built-in model {BUILT_IN}: offered"), got

    for state in ("activated", "healthy"):  # what the agent reports after its restart into the factory model
        assert (await report(first, offer, state)).status == 202
    tick(ota)
    seen = await view(ota, operator, rollout["id"])
    got = {d["device_id"]: d for d in seen["devices"]}
    assert got[first.device_id]["explain"] == f"rolled back to the built-in model {BUILT_IN}"
    assert seen["status"] == "rolled_back"


async def test_a_rollout_to_the_built_in_model_is_allowed_and_carries_no_package(ota, db_path, clock):
    devices = await enroll(ota, db_path, clock, {"3B-01": "3B"})
    operator = api_headers(ota, "operator")
    resp = await ota.post(ROLLOUTS, json=rollout_body(version=BUILT_IN), headers=operator)
    assert resp.status == 400  # no device reports running it yet: the server knows built-in versions from them
    assert "(no device reports one)" in (await resp.json())["error"]
    await heartbeat(devices["3B-01"], clock, {"movenet": BUILT_IN})
    rollout = await create(ota, operator, version=BUILT_IN, previous_version="1.0", groups=[{"percent": 100}])
    assert rollout["target"] == wire.BUILTIN_TARGET
    device = devices["3B-01"]
    offer = await update(device, ())
    assert (offer.version, offer.target) == (BUILT_IN, wire.BUILTIN_TARGET)
    got = (await view(ota, operator, rollout["id"]))["devices"][0]
    assert got["explain"].startswith(f"back to the built-in model {BUILT_IN}: offered"), got
    for state in ("activated", "healthy"):
        assert (await report(device, offer, state)).status == 202
    tick(ota)
    got = (await view(ota, operator, rollout["id"]))["devices"][0]
    assert got["explain"] == f"healthy, back to the built-in model {BUILT_IN}"
    resp = await ota.post(ROLLOUTS, json=rollout_body(version="latest"), headers=operator)  # no such model
    error = (await resp.json())["error"]
    assert resp.status == 400
    assert error.startswith("version 'latest' of movenet is neither a model package version"), error
    assert f"nor the model built into the agent (devices report {BUILT_IN})" in error and "pattern" not in error
    resp = await ota.post(ROLLOUTS, json=rollout_body(version="no spaces"), headers=operator)
    assert resp.status == 400 and "version" in (await resp.json())["error"]


def test_an_offer_of_the_built_in_model_names_no_target_an_old_agent_could_fetch():
    assert wire.offer_target("movenet", "1.1") == "models/movenet/1.1.wsm"
    assert wire.offer_target("movenet", BUILT_IN) == wire.BUILTIN_TARGET
    assert not wire.TARGET_PATH.match(wire.BUILTIN_TARGET)  # an old agent's TUF lookup finds no such target
    offer = wire.UpdateOffer(rollout_id="ro-1", model="movenet", version=BUILT_IN, target=wire.BUILTIN_TARGET)
    assert wire.UpdateOffer.model_validate_json(offer.model_dump_json()) == offer  # old agents parse it too
    with pytest.raises(ValueError):
        wire.target_path("movenet", BUILT_IN)


async def test_a_staged_version_is_refused_with_the_command_that_signs_it(ota, db_path, clock, tmp_path):
    await enroll(ota, db_path, clock, {"3B-01": "3B"})
    stage(ota.server.app, clock, tmp_path / "staged", "3.0")
    operator = api_headers(ota, "operator")
    resp = await ota.post(ROLLOUTS, json=rollout_body(version="3.0", groups=[{"percent": 100}]), headers=operator)
    error = (await resp.json())["error"]
    assert resp.status == 400, error
    assert error.startswith("movenet 3.0 is staged: uploaded but not signed"), error
    assert "wardsight ota publish <the movenet 3.0 .wsm file> --keys <the offline keys directory>" in error
    listed = await (await ota.get("/api/v1/models", headers=operator)).json()
    versions = {v["version"]: v["status"] for m in listed["models"] for v in m["versions"]}
    assert versions == {"3.0": "staged"}
    assert ota.server.app[REPOSITORY_KEY].published().get("models/movenet/3.0.wsm") is None


async def test_each_devices_reason_and_deferral_come_in_words(ota, db_path, clock):
    devices = await enroll(ota, db_path, clock, {"3B-01": "3B", "3B-02": "3B", "3B-03": "3B"})
    operator = api_headers(ota, "operator")
    rollout = await create(ota, operator, groups=[{"percent": 100}], error_threshold={"count": 2})
    waiting, failing, rejecting = devices["3B-01"], devices["3B-02"], devices["3B-03"]
    offer = await update(waiting, ("downloading", "downloaded", "installed"))
    assert (await report(waiting, offer, "deferred", "outside_window")).status == 202
    await update(failing, ("downloading", "downloaded", "installed", "activated"))
    assert (await report(failing, offer, "rolled_back", "health_check_missed")).status == 202
    await update(rejecting, ("downloading",))
    assert (await report(rejecting, offer, "rejected", "no_build_for_backend")).status == 202
    clock.now += 5
    tick(ota)
    got = {d["device_id"]: d for d in (await view(ota, operator, rollout["id"]))["devices"]}
    assert got[waiting.device_id]["status"] == "installed"
    assert got[waiting.device_id]["deferred"] == "waiting for the maintenance window"
    assert got[waiting.device_id]["explain"] == (
        "installed, waiting for restart; deferred: waiting for the maintenance window"
    )
    assert got[failing.device_id]["reason_text"] == "too few frames processed on the new model in time"
    assert got[failing.device_id]["deferred"] is None
    assert got[rejecting.device_id]["reason_text"] == (
        "this device runs another backend; the package has no build for it"
    )

    # Moving on clears the deferral.
    offer = await poll(waiting)
    assert (await report(waiting, offer, "activated")).status == 202
    tick(ota)
    got = {d["device_id"]: d for d in (await view(ota, operator, rollout["id"]))["devices"]}
    assert got[waiting.device_id]["deferred"] is None
    assert got[waiting.device_id]["explain"] == "on trial: restarted into the new model, health check running"
