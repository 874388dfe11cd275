"""Issue 15 item 11 on the server: the versions the system itself uses are not refused by a pattern (the agent's
built-in model reports "lightning-fp16-1"), a version that is only staged (uploaded, not signed) is refused with
the command that signs it, and each device's step comes with its reason in words (a deferral too)."""

import os
import shutil

import pytest

from accelerators.catalog import MOVENET_MULTIPOSE
from fleet.app import create_app
from fleet.config import ServerConfig
from fleet.ota.library import package as library
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
    tick,
    update,
    view,
)
from wardsight import modelpkg

BUILT_IN = MOVENET_MULTIPOSE.version  # what a device on its factory model reports: "lightning-fp16-1"


@pytest.fixture
async def ota(aiohttp_client, db_path, clock, tmp_path):
    """The fleet app with the model library holding published movenet 1.0, 1.1, 2.0 and 2.1."""
    client = await aiohttp_client(create_app(ServerConfig(database=db_path), clock=clock))
    publish(client.server.app, clock, tmp_path / "packages", PUBLISHED)
    return client


def stage(app, clock, directory, version, model="movenet"):
    """Upload a package as POST /api/v1/models does (stored and recorded in the library), without signing it."""
    directory.mkdir(exist_ok=True)
    model_file = directory / f"{model}-{version}.tflite"
    model_file.write_bytes(os.urandom(1024))
    digest, size = modelpkg.describe_file(model_file)
    build = modelpkg.Build(backend="cpu", runtime="litert", file="model.tflite", sha256=digest, size=size,
                           decoder="movenet_multipose")  # fmt: skip
    manifest = modelpkg.Manifest(name=model, version=version, task="pose", license="Apache-2.0", builds=[build])
    package = directory / f"{model}-{version}.wsm"
    modelpkg.write_package(package, manifest, {"model.tflite": model_file})
    repo = app[REPOSITORY_KEY]
    repo.incoming_dir.mkdir(parents=True, exist_ok=True)
    upload = repo.incoming_dir / package.name
    shutil.copyfile(package, upload)
    info = library.inspect_package(upload)
    library.install_package(repo, upload, info)
    record_upload(app[DB_KEY].db, info, "user:olga", clock.now, replaced=False)


async def test_the_built_in_models_version_is_accepted_as_the_previous_version(ota, db_path, clock):
    assert BUILT_IN == "lightning-fp16-1"
    devices = await enroll(ota, db_path, clock, {"3B-01": "3B", "3B-02": "3B"})
    operator = api_headers(ota, "operator")
    for device in devices.values():
        await heartbeat(device, clock, {"movenet": BUILT_IN})
    rollout = await create(ota, operator, version="1.1", previous_version=BUILT_IN, groups=[{"percent": 100}])
    assert rollout["previous_version"] == BUILT_IN and rollout["devices_total"] == 2

    # Rolling back would send the devices to a version that is no package: refused in words, nothing offered.
    first = groups_of(rollout, devices)[1][0]
    await update(first)
    clock.now += 10
    tick(ota)
    resp = await ota.post(f"{ROLLOUTS}/{rollout['id']}/rollback", headers=operator)
    error = (await resp.json())["error"]
    assert resp.status == 409, error
    assert f"would go back to movenet {BUILT_IN}, which is not a model package" in error
    assert (await view(ota, operator, rollout["id"]))["status"] == "running"


async def test_a_version_that_is_no_package_is_refused_in_words_not_by_a_pattern(ota, db_path, clock):
    await enroll(ota, db_path, clock, {"3B-01": "3B"})
    operator = api_headers(ota, "operator")
    resp = await ota.post(ROLLOUTS, json=rollout_body(version=BUILT_IN, previous_version="1.0"), headers=operator)
    error = (await resp.json())["error"]
    assert resp.status == 400
    assert error.startswith(f"version '{BUILT_IN}' of movenet is not a model package version"), error
    assert "pattern" not in error
    resp = await ota.post(ROLLOUTS, json=rollout_body(version="no spaces"), headers=operator)
    assert resp.status == 400 and "version" in (await resp.json())["error"]


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
