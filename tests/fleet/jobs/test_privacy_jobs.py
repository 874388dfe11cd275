"""Privacy-reducing configuration jobs (issue 14, item 3): a ``push_config`` that removes, shrinks or moves a privacy
region or changes the camera source needs an admin and a second admin's approval (two-person rule); until then no
device sees it; the audit log says what it changes (region names and areas, source kinds), not only a hash; stream
URLs on metadata, link-local or loopback addresses are refused. Against the real app and simulated devices
(tests/fleet/jobs/test_jobs.py)."""

# ruff: noqa: F811  (the fixtures imported from test_jobs are parameters of the tests)
from __future__ import annotations

import json

import pytest

from fleet.jobs.privacy import stream_url_problem
from fleet.scene.store import SCENES_KEY, Layout
from tests.fleet.jobs.test_jobs import (  # noqa: F401
    admin,
    approve,
    audit_rows,
    batch,
    client,
    create,
    create_ok,
    device,
    live,
    operator,
    person_headers,
    second_admin,
)
from wardsight.privacy_changes import contains, polygon_area

DOOR = [[0.0, 0.0], [0.25, 0.0], [0.25, 0.5], [0.0, 0.5]]  # 12.5% of the frame
CAMERA = f"""\
server_url = "https://fleet.example.org"
[source]
kind = "stream"
url = "rtsp://viewer:s3cret@10.0.6.42/stream1"
[[privacy_regions]]
name = "bathroom door"
polygon = {json.dumps(DOOR)}
"""
WINDOW = '[[privacy_regions]]\nname = "window"\npolygon = [[0.8, 0.0], [1.0, 0.0], [1.0, 0.3]]\n'
NO_REGIONS = CAMERA.split("[[privacy_regions]]")[0]
SHRUNK = CAMERA.replace(json.dumps(DOOR), "[[0.0, 0.0], [0.1, 0.0], [0.1, 0.5], [0.0, 0.5]]")
MOVED = CAMERA.replace(json.dumps(DOOR), "[[0.5, 0.0], [0.75, 0.0], [0.75, 0.5], [0.5, 0.5]]")
GROWN = CAMERA.replace(json.dumps(DOOR), "[[0.0, 0.0], [0.3, 0.0], [0.3, 0.6], [0.0, 0.6]]")
OTHER_CAMERA = CAMERA.replace("10.0.6.42", "10.0.7.9")
NEW_PASSWORD = CAMERA.replace("s3cret", "n3w-s3cret")  # the same camera: not a source change
FILE_SOURCE = CAMERA.replace('kind = "stream"', 'kind = "file"')
REMOVE_DOOR = {"privacy_regions": {"remove": [{"polygon": DOOR}]}}


@pytest.fixture
def alice(client):
    return person_headers(client, "admin", "alice-script", "user:alice")


@pytest.fixture
def bob(client):
    return person_headers(client, "admin", "bob-script", "user:bob")


async def commission(client, device, alice, bob, config=CAMERA):
    """The device's first whole configuration (the server knows nothing of it yet: approved), applied."""
    batch_id = await create_ok(client, alice, "push_config", {"device_ids": [device.id]}, config=config)
    await approve(client, batch_id, bob)
    (job,) = await device.poll()
    await device.finish(job)


async def push(client, headers, device, config, **fields):
    return await create(client, headers, "push_config", {"device_ids": [device.id]}, config=config, **fields)


def zones_edit(edit):
    return {"params": {"merge": "zones"}}, json.dumps(edit)


# ---- the role and the two-person rule ---------------------------------------------------------------------------


async def test_an_operators_privacy_reducing_push_is_refused(client, device, operator, alice, bob):
    await commission(client, device, alice, bob)
    batches = live(client).db["job_batches"].count
    cases = [
        (NO_REGIONS, {}, "privacy region 'bathroom door' (12.5% of the frame) is removed"),
        (SHRUNK, {}, "privacy region 'bathroom door' shrinks or moves (12.5% of the frame before, 5.0% after)"),
        (MOVED, {}, "privacy region 'bathroom door' shrinks or moves"),
        (OTHER_CAMERA, {}, "the camera source changes to another stream URL"),
        (FILE_SOURCE, {}, "the camera source changes from stream to file"),
        (json.dumps(REMOVE_DOOR), {"params": {"merge": "zones"}}, "region 'bathroom door' (12.5% of the frame)"),
    ]
    for config, fields, why in cases:
        resp = await push(client, operator, device, config, **fields)
        assert resp.status == 403, (config, await resp.text())
        error = (await resp.json())["error"]
        assert why in error and "needs the admin role and a second admin's approval" in error, error
    assert live(client).db["job_batches"].count == batches and await device.poll() == []


async def test_an_admins_privacy_reducing_push_waits_for_a_second_admin(client, device, operator, alice, bob, clock):
    await commission(client, device, alice, bob)
    resp = await push(client, alice, device, NO_REGIONS)
    assert resp.status == 201, await resp.text()
    made = await resp.json()
    assert made["status"] == "awaiting_approval" and made["privacy"]["reducing"]
    batch_id = made["batch_id"]
    view = await batch(client, batch_id, operator)
    assert view["status"] == "awaiting_approval" and view["counts"]["queued"] == 1
    assert view["approval"]["state"] == "awaiting" and view["approval"]["requested_by"].startswith("apitoken:")
    clock.now += 30
    assert await device.poll() == []  # no device sees it

    # Not the person who asked, not through another token of theirs, not an operator.
    alice_id = alice["Authorization"].split(".")[1]
    alice_again = person_headers(client, "admin", "alice-laptop", "user:alice")
    alice_minted = person_headers(client, "admin", "alice-minted", f"apitoken:{alice_id}")
    for headers, status, why in [
        (alice, 403, "the same person (two-person rule"),
        (alice_again, 403, "the same person"),
        (alice_minted, 403, "the same person"),
        (operator, 403, "this needs the admin role"),
    ]:
        refused = await client.post(f"/api/v1/jobs/{batch_id}/approve", json={}, headers=headers)
        assert refused.status == status and why in (await refused.json())["error"], await refused.text()
    assert await device.poll() == []

    approved = await approve(client, batch_id, bob)
    assert approved["status"] == "running" and approved["approval"]["state"] == "approved"
    (job,) = await device.poll()
    assert job.config == NO_REGIONS and job.privacy_approval is not None
    asked_by, approved_by = job.privacy_approval.approved_by
    assert asked_by == view["approval"]["requested_by"] != approved_by == approved["approval"]["decided_by"]
    again = await client.post(f"/api/v1/jobs/{batch_id}/approve", json={}, headers=bob)
    assert again.status == 409 and "not awaiting approval" in (await again.json())["error"]
    assert (await client.post("/api/v1/jobs/batch-0000000000000000/approve", json={}, headers=bob)).status == 404


async def test_the_audit_entries_say_what_changed(client, device, alice, bob):
    await commission(client, device, alice, bob, CAMERA + WINDOW)
    made = await (await push(client, alice, device, FILE_SOURCE.replace(json.dumps(DOOR), json.dumps(DOOR[:3])))).json()
    await approve(client, made["batch_id"], bob)
    created = audit_rows(client, action="job.create", target=made["batch_id"])[0]["details"]
    assert created["approval"] == "awaiting" and "config_sha256" in created
    (change,) = created["privacy"]["changes"]
    assert created["privacy"]["privacy_reducing"] and change["devices"] == [device.id]
    assert change["regions_before"] == [{"name": "bathroom door", "area": 0.125}, {"name": "window", "area": 0.03}]
    assert change["regions_after"] == [{"name": "bathroom door", "area": 0.0625}]
    assert change["source_before"] == {"kind": "stream", "host": "10.0.6.42"}
    assert change["source_after"] == {"kind": "file", "file": None}
    assert change["reasons"] == [
        "privacy region 'bathroom door' shrinks or moves (12.5% of the frame before, 6.2% after)",
        "privacy region 'window' (3.0% of the frame) is removed",
        "the camera source changes from stream to file",
    ]
    approved = audit_rows(client, action="job.approve")[-1]
    asked_by = audit_rows(client, action="job.create", target=made["batch_id"])[0]["actor"]
    assert approved["target"] == made["batch_id"] and approved["details"]["approved_by"] == approved["actor"]
    assert approved["details"]["requested_by"] == asked_by != approved["actor"]
    assert approved["details"]["changes"] == created["privacy"]["changes"]
    assert "s3cret" not in json.dumps(audit_rows(client))  # the camera's credentials never reach the log


async def test_a_zones_edit_removing_a_region_is_audited_by_name_and_area(client, device, operator, alice, bob):
    await commission(client, device, alice, bob)
    params, text = zones_edit(REMOVE_DOOR)
    made = await (await push(client, alice, device, text, **params)).json()
    assert made["status"] == "awaiting_approval"
    (change,) = audit_rows(client, action="job.create", target=made["batch_id"])[0]["details"]["privacy"]["changes"]
    assert change["regions_removed"] == [{"name": "bathroom door", "area": 0.125}]
    assert (change["regions_added"], change["regions_after"]) == ([], [])


# ---- what goes through as before ----------------------------------------------------------------------------------


async def test_a_push_that_keeps_privacy_goes_through_without_approval(client, device, operator, alice, bob):
    await commission(client, device, alice, bob)
    grow = {
        "privacy_regions": {
            "remove": [{"polygon": DOOR}],
            "add": [{"name": "bathroom door", "polygon": [[0.0, 0.0], [0.3, 0.0], [0.3, 0.6], [0.0, 0.6]]}],
        }
    }
    zones = {"zones": {"add": [{"name": "bed", "kind": "bed", "polygon": [[0.3, 0.3], [0.7, 0.3], [0.7, 0.9]]}]}}
    cases = [
        (CAMERA + WINDOW, {}),  # a region added
        (GROWN, {}),  # a region grown
        (NEW_PASSWORD, {}),  # the camera's password rotated
        (CAMERA.replace('server_url = "https://fleet.example.org"', "threads = 3"), {}),  # nothing about privacy
        (json.dumps(zones), {"params": {"merge": "zones"}}),  # zones only
        (json.dumps(grow), {"params": {"merge": "zones"}}),  # a region replaced by a larger one
    ]
    for config, fields in cases:
        resp = await push(client, operator, device, config, **fields)
        assert resp.status == 201, (config, await resp.text())
        made = await resp.json()
        assert (made["status"], made["privacy"]) == ("running", {"reducing": False, "reasons": []}), config
        (job,) = await device.poll()
        assert job.config == config and job.privacy_approval is None
        await device.finish(job, "refused", reason="test")  # not applied: the server's baseline stays CAMERA
    assert live(client).db["job_approvals"].count == 1  # only the commissioning push


async def test_an_approved_zones_edit_is_part_of_what_the_server_knows(client, device, operator, alice, bob):
    await commission(client, device, alice, bob, CAMERA + WINDOW)
    params, text = zones_edit({"privacy_regions": {"remove": [{"polygon": [[0.8, 0.0], [1.0, 0.0], [1.0, 0.3]]}]}})
    await approve(client, await create_ok(client, alice, "push_config", {"device_ids": [device.id]}, config=text,
                                          **params), bob)  # fmt: skip
    (job,) = await device.poll()
    await device.finish(job)
    resp = await push(client, operator, device, CAMERA)  # without the window, which the device no longer has
    assert resp.status == 201 and (await resp.json())["status"] == "running", await resp.text()


async def test_regions_the_device_reports_count_when_they_are_newer(client, device, operator, alice, bob, clock):
    await commission(client, device, alice, bob)
    clock.now += 60  # later, the device reports a second region (added on the device itself)
    window = [[0.8, 0.0], [1.0, 0.0], [1.0, 0.3]]
    layout = Layout(privacy_regions=[{"polygon": DOOR}, {"polygon": window}], received_at=clock())
    client.server.app[SCENES_KEY].layout[device.id] = layout
    resp = await push(client, operator, device, GROWN)
    assert resp.status == 403
    error = (await resp.json())["error"]
    assert "privacy region #2 (as the device reported it) (3.0% of the frame) is removed" in error
    assert (await push(client, operator, device, GROWN + WINDOW)).status == 201


async def test_a_whole_file_for_a_device_the_server_knows_nothing_of_needs_approval(client, device, operator):
    resp = await push(client, operator, device, CAMERA)
    assert resp.status == 403
    error = (await resp.json())["error"]
    assert "does not know this device's current privacy regions" in error and "current camera source" in error
    door = {"name": "d", "kind": "door", "polygon": [[0, 0], [0.2, 0], [0, 0.2]]}
    params, text = zones_edit({"zones": {"add": [door]}})
    assert (await push(client, operator, device, text, **params)).status == 201  # an edit says what it changes


async def test_a_rejected_or_cancelled_batch_never_reaches_the_device(client, device, operator, alice, bob):
    await commission(client, device, alice, bob)
    rejected = (await (await push(client, alice, device, NO_REGIONS)).json())["batch_id"]
    assert (await client.post(f"/api/v1/jobs/{rejected}/reject", json={}, headers=operator)).status == 403
    resp = await client.post(f"/api/v1/jobs/{rejected}/reject", json={}, headers=bob)
    assert resp.status == 200, await resp.text()
    view = await resp.json()
    assert (view["status"], view["end_reason"], view["approval"]["state"]) == ("cancelled", "rejected", "rejected")
    late = await client.post(f"/api/v1/jobs/{rejected}/approve", json={}, headers=bob)
    assert late.status == 409 and "approval rejected by apitoken:" in (await late.json())["error"]
    withdrawn = (await (await push(client, alice, device, SHRUNK)).json())["batch_id"]
    assert (await client.post(f"/api/v1/jobs/{withdrawn}/cancel", json={}, headers=operator)).status == 200
    assert (await batch(client, withdrawn, operator))["approval"]["state"] == "cancelled"
    assert await device.poll() == []
    assert [r["details"]["requested_by"] for r in audit_rows(client, action="job.reject")] == [
        view["approval"]["requested_by"]
    ]


async def test_an_approval_after_the_batch_expired_is_refused(client, device, alice, bob, clock):
    await commission(client, device, alice, bob)
    made = await (await push(client, alice, device, NO_REGIONS, expires_in_s=600)).json()
    clock.now += 601
    late = await client.post(f"/api/v1/jobs/{made['batch_id']}/approve", json={}, headers=bob)
    assert late.status == 409 and "expired before it was approved" in (await late.json())["error"]
    assert await device.poll() == []


# ---- camera URLs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("rtsp://169.254.169.254/latest/meta-data", "a cloud metadata address"),
        ("http://metadata.google.internal/computeMetadata/v1/", "a cloud metadata service"),
        ("rtsp://100.100.100.200/", "a cloud metadata address"),
        ("rtsp://[fd00:ec2::254]/", "a cloud metadata address"),
        ("rtsp://169.254.10.1:554/stream", "a link-local address"),
        ("rtsp://[fe80::1]/", "a link-local address"),
        ("rtsp://[::ffff:169.254.169.254]/", "a cloud metadata address"),
        ("rtsp://2852039166/", "a cloud metadata address"),  # 169.254.169.254 as one number
        ("rtsp://127.0.0.1:8554/cam", "a loopback or unspecified address"),
        ("rtsp://0.0.0.0/cam", "a loopback or unspecified address"),
        ("rtsp://localhost/cam", "the device itself"),
        ("rtsp://224.0.0.1/cam", "a multicast address"),
        ("ftp://10.0.6.42/cam", "must be an rtsp://"),
    ],
)
async def test_a_stream_url_on_a_metadata_link_local_or_loopback_address_is_refused(client, device, alice, url, why):
    config = CAMERA.replace("rtsp://viewer:s3cret@10.0.6.42/stream1", url)
    resp = await push(client, alice, device, config)
    assert resp.status == 400, await resp.text()
    assert why in (await resp.json())["error"] and "source.url" in (await resp.json())["error"]
    assert live(client).db["job_batches"].count == 0


def test_cameras_on_the_hospital_lan_are_allowed():
    for url in (
        "rtsp://viewer:s3cret@10.0.6.42/stream1",
        "rtsps://192.168.1.20:322/live",
        "http://172.20.0.5/mjpeg",
        "rtsp://cam-3b12.ward6.hospital.local/live",
        "rtsp://[fd12:3456::42]/live",
        "rtsp://100.64.3.2/live",
    ):
        assert stream_url_problem(url) is None, url


# ---- geometry ------------------------------------------------------------------------------------------------------


def test_containment_and_areas():
    square = [(0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5)]
    assert polygon_area(square) == 0.25
    assert contains(square, square) and contains(square, [(0.1, 0.1), (0.2, 0.1), (0.2, 0.2)])
    assert contains(square, [(0.00004, 0.0), (0.5, 0.00003), (0.49996, 0.5), (0.0, 0.5)])  # as reported: rounded
    assert not contains(square, [(0.0, 0.0), (0.6, 0.0), (0.6, 0.5), (0.0, 0.5)])  # sticks out
    assert not contains([(0.1, 0.1), (0.2, 0.1), (0.2, 0.2)], square)  # shrunk
    u_shape = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.6, 1.0), (0.6, 0.3), (0.4, 0.3), (0.4, 1.0), (0.0, 1.0)]
    assert contains(u_shape, [(0.1, 0.1), (0.9, 0.1), (0.9, 0.2), (0.1, 0.2)])
    assert not contains(u_shape, [(0.1, 0.5), (0.9, 0.5), (0.9, 0.6), (0.1, 0.6)])  # across the notch
    assert not contains(u_shape, [(0.3, 0.2), (0.7, 0.2), (0.7, 0.5), (0.3, 0.5)])  # corners in, its middle not
