"""The zone editor's live view: the snapshot schema (bounded, numbers only, no room for pixels), building it from
the agent's scene (also on real footage through the real model), the server's routes and preview flag with a
hand-driven device, and the device's PreviewSender over real HTTP against the real app."""

import asyncio
import json

import numpy as np
import pytest
from pydantic import ValidationError

from accelerators.cpu import CpuPoseBackend
from accelerators.types import Person
from firmware.agent import Agent
from firmware.preview import (
    MAX_SCENE_BYTES,
    PREVIEW_HEADER,
    PreviewSender,
    SceneSnapshot,
    SceneTap,
    build_snapshot,
    encode,
)
from firmware.scene import Scene, ScenePerson
from firmware.sources import VideoFileSource
from firmware.tracking import TrackedPerson
from firmware.transport import CredentialFile, FleetClient
from fleet.audit import log as audit
from fleet.scene.store import SNAPSHOT_TTL_SECONDS, WATCH_SECONDS, latest_snapshot, preview_wanted
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from tests.fleet.helpers import Clock, api_headers, enroll_device, live_db
from tests.fleet.helpers import start_app as start
from wardsight import wire
from wardsight.device_config import PrivacyRegion, ZoneConfig
from wardsight.footage import DEMO_FOOTAGE

T0 = 1_800_000_000.0
ZONES = [
    ZoneConfig(name="door", kind="door", polygon=[(0.0, 0.0), (0.2, 0.0), (0.2, 1.0)]),
    ZoneConfig(name="bed-1", kind="bed", polygon=[(0.5, 0.5), (0.9, 0.5), (0.9, 0.9), (0.5, 0.9)]),
]
REGIONS = [PrivacyRegion(name="bathroom door (left)", polygon=[(0.0, 0.0), (0.1, 0.0), (0.1, 0.1)])]


def person_json(track_id=1, x=100.0, y=50.0, **over):
    body = {"track_id": track_id, "score": 0.9, "box": [x, y, x + 40.0, y + 120.0],
            "keypoints": [[x + 20.0, y + 10.0 + i, 0.8] for i in range(17)]}  # fmt: skip
    body.update(over)
    return body


def snapshot_json(**over):
    body = {"time": T0, "frame_width": 640, "frame_height": 480, "people": [person_json()]}
    body.update(over)
    return body


def parse(body):
    return SceneSnapshot.model_validate_json(json.dumps(body))


def tracked(track_id, box, score=0.8, keypoints=None):
    x1, y1, x2, y2 = box
    if keypoints is None:
        keypoints = np.array([[(x1 + x2) / 2, y1 + i * (y2 - y1) / 17, 0.7] for i in range(17)], dtype=np.float32)
    return ScenePerson(TrackedPerson(track_id, Person(box, score, keypoints), 3.0, 10), frozenset())


# ---- the schema ---------------------------------------------------------------------------------------------


def test_a_valid_snapshot_parses_and_zone_layout_is_optional():
    snap = parse(snapshot_json(zones=[{"name": "bed-1", "kind": "bed", "polygon": [[0, 0], [1, 0], [1, 1]]}]))
    assert snap.people[0].keypoints[16] == (120.0, 76.0, 0.8) and snap.zones[0].name == "bed-1"
    assert snap.privacy_regions is None and parse(snapshot_json(people=[])).people == ()
    assert parse(snapshot_json(time=T0 + 1)).v == 1


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"image": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAA"}, "an extra field"),
        ({"people": [person_json(pixels=[[0, 0, 0]])]}, "an extra field on a person"),
        ({"people": [person_json()] * 17}, "more than 16 people"),
        ({"people": [person_json(keypoints=[[1.0, 1.0, 0.5]] * 18)]}, "18 keypoints"),
        ({"people": [person_json(keypoints=[[1.0, 1.0, 0.5]] * 16)]}, "16 keypoints"),
        ({"people": [person_json(keypoints=[[1.0, 1.0, 0.5, 7.0]] * 17)]}, "a fourth number per keypoint"),
        ({"people": [person_json(score="0.9")]}, "a number as a string"),
        ({"people": [person_json(box=["100", 50.0, 140.0, 170.0])]}, "a coordinate as a string"),
        ({"people": [person_json(track_id=True)]}, "a bool as a number"),
        ({"people": [person_json(keypoints="AAECAwQFBgcICQ==")]}, "bytes as text"),
        ({"people": [person_json(x=630.0)]}, "a box beyond the frame's width"),
        ({"people": [person_json(box=[140.0, 50.0, 100.0, 170.0])]}, "an inverted box"),
        ({"people": [person_json(score=1.5)]}, "a score above 1"),
        ({"frame_width": 9000}, "a frame wider than 8192"),
        ({"frame_width": "640"}, "a frame size as a string"),
        ({"zones": [{"name": "a/b+c=", "kind": "bed", "polygon": [[0, 0], [1, 0], [1, 1]]}]}, "free text as a name"),
        ({"zones": [{"name": "x" * 65, "kind": "bed", "polygon": [[0, 0], [1, 0], [1, 1]]}]}, "a long name"),
        ({"zones": [{"name": "bed", "kind": "sofa", "polygon": [[0, 0], [1, 0], [1, 1]]}]}, "an unknown zone kind"),
        ({"zones": [{"name": "bed", "kind": "bed", "polygon": [[0, 0], [2, 0], [1, 1]]}]}, "a point beyond the frame"),
        ({"zones": [{"name": "bed", "kind": "bed", "polygon": [[0.5, 0.5]] * 65}]}, "a polygon of 65 points"),
        ({"zones": [{"name": f"z{i}", "kind": "bed", "polygon": [[0, 0], [1, 0], [1, 1]]} for i in range(17)]},
         "17 zones"),
        ({"privacy_regions": [{"name": "bathroom", "polygon": [[0, 0], [1, 0], [1, 1]]}]}, "a region's name"),
    ],
)  # fmt: skip
def test_the_schema_refuses_anything_that_could_carry_more_than_geometry(change, why):
    with pytest.raises(ValidationError):
        parse(snapshot_json(**change))


def test_non_finite_numbers_are_refused():
    text = json.dumps(snapshot_json()).replace('"time": 1800000000.0', '"time": NaN')
    with pytest.raises(ValidationError):
        SceneSnapshot.model_validate_json(text)


# ---- building and encoding ------------------------------------------------------------------------------------


def test_build_snapshot_keeps_the_16_most_confident_clips_to_the_frame_and_adds_the_layout():
    people = [tracked(i, (10.0 * i, 10.0, 10.0 * i + 30, 200.0), score=0.3 + i / 100) for i in range(20)]
    wild = np.array([[-5.0, 700.0, 0.9]] * 17, dtype=np.float32)  # a keypoint predicted off the frame
    people.append(tracked(99, (600.0, -3.0, 700.0, 400.0), score=0.99, keypoints=wild))
    scene = Scene(time=12.5, frame_size=(640, 480), people=tuple(people))
    snap = build_snapshot(scene, zones=ZONES, privacy_regions=REGIONS, to_wall=lambda t: T0 + t)
    assert snap.time == T0 + 12.5 and (snap.frame_width, snap.frame_height) == (640, 480)
    assert len(snap.people) == 16 and snap.people[0].track_id == 99
    assert {p.track_id for p in snap.people[1:]} == set(range(5, 20))
    assert snap.people[0].box == (600.0, 0.0, 640.0, 400.0) and snap.people[0].keypoints[0] == (0.0, 480.0, 0.9)
    assert [(z.name, z.kind) for z in snap.zones] == [("door", "door"), ("bed-1", "bed")]
    assert snap.privacy_regions[0].polygon == ((0.0, 0.0), (0.1, 0.0), (0.1, 0.1))
    assert "bathroom" not in snap.model_dump_json()  # a region's free-text name stays on the device
    assert SceneSnapshot.model_validate_json(encode(snap)) == snap


def test_encode_drops_the_layout_then_people_to_fit():
    people = tuple(tracked(i, (1.0 + i, 1.0, 2.0 + i, 3.0)) for i in range(16))
    big_zone = [ZoneConfig(name=f"z{i}", kind="floor", polygon=[(0.123456, 0.654321)] * 64) for i in range(16)]
    snap = build_snapshot(Scene(0.0, (640, 480), people), zones=big_zone, privacy_regions=[], to_wall=lambda t: T0)
    assert len(snap.model_dump_json()) > MAX_SCENE_BYTES
    body = encode(snap)
    assert len(body) <= MAX_SCENE_BYTES
    decoded = SceneSnapshot.model_validate_json(body)
    assert decoded.zones is None and decoded.privacy_regions is None and len(decoded.people) == 16
    smaller = SceneSnapshot.model_validate_json(encode(snap, max_bytes=2000))
    assert 0 < len(smaller.people) < 16 and len(encode(snap, max_bytes=2000)) <= 2000


def test_the_scene_tap_sees_real_people_on_real_footage_through_the_agent(model_store, movenet_path):
    source = VideoFileSource(model_store.path(DEMO_FOOTAGE), realtime=False)
    tap = SceneTap(ZONES, REGIONS)
    agent = Agent(source, CpuPoseBackend(movenet_path), [tap], emit=lambda e: None)
    assert tap.snapshot() is None
    snaps = []
    for _ in range(40):
        assert agent.step()
        snaps.append(tap.snapshot())
    source.close()
    snap = max(snaps, key=lambda s: len(s.people))
    assert snap.people, "the demo clip has people in it"
    assert (snap.frame_width, snap.frame_height) == source.frame_size
    for p in snap.people:
        assert len(p.keypoints) == 17 and all(0 <= x <= snap.frame_width and 0 <= y <= snap.frame_height
                                              for x, y, _ in p.keypoints)  # fmt: skip
    body = encode(snap)
    assert len(body) < 8 * 1024 and SceneSnapshot.model_validate_json(body) == snap


# ---- the server routes and the preview flag, with a hand-driven device ----------------------------------------


@pytest.fixture
def clock():
    return Clock(T0)


@pytest.fixture
async def client(aiohttp_client, tmp_path, clock):
    return await start(aiohttp_client, tmp_path, clock)


def heartbeat_body(device_id):
    return wire.Health(device_id=device_id, sent_at=T0, uptime_s=5.0, agent_version="0.1.0",
                       accelerator="cpu").model_dump_json().encode()  # fmt: skip


async def post_scene(device, body):
    return await device.send("POST", "/api/v1/device/scene", json.dumps(body).encode(), "application/json")


async def heartbeat(device):
    resp = await device.send("POST", "/api/v1/device/heartbeat", heartbeat_body(device.device_id), "application/json")
    assert resp.status == 200, await resp.text()
    return resp


async def test_the_preview_flag_follows_the_console_and_the_latest_snapshot_is_served(client, tmp_path, clock):
    app = client.server.app
    device = await enroll_device(client, tmp_path / "fleet.db", clock)
    other = await enroll_device(client, tmp_path / "fleet.db", clock, name="cam-2")
    operator = api_headers(client, "operator")

    assert PREVIEW_HEADER not in (await heartbeat(device)).headers  # nobody watching
    door = ZONES[0].model_dump(include={"name", "kind", "polygon"})
    first = await post_scene(device, snapshot_json(zones=[door]))
    assert first.status == 200 and PREVIEW_HEADER not in first.headers and not (await first.json())["preview"]

    resp = await client.get(f"/api/v1/devices/{device.device_id}/scene", headers=operator)
    assert resp.status == 200
    view = await resp.json()
    assert view["live"] and view["people"][0]["track_id"] == 1 and view["people"][0]["keypoints"][0] == [120, 60, 0.8]
    assert (view["time"], view["frame_size"], view["frame_width"], view["frame_height"]) == (T0, [640, 480], 640, 480)
    assert view["zones"][0]["name"] == "door" and view["privacy_regions"] is None and view["age_seconds"] == 0
    assert preview_wanted(app, device.device_id) and not preview_wanted(app, other.device_id)

    assert (await heartbeat(device)).headers[PREVIEW_HEADER] == "1"
    assert PREVIEW_HEADER not in (await heartbeat(other)).headers  # only the watched device is asked
    clock.now += 2
    moved = await post_scene(device, snapshot_json(time=T0 + 2, people=[person_json(track_id=7)]))
    assert moved.headers[PREVIEW_HEADER] == "1" and (await moved.json())["preview"]
    view = await (await client.get(f"/api/v1/devices/{device.device_id}/scene", headers=operator)).json()
    assert [p["track_id"] for p in view["people"]] == [7]  # overwritten, not appended
    assert view["zones"][0]["name"] == "door"  # kept: this snapshot carried no layout

    clock.now += WATCH_SECONDS + 0.1  # the console stopped asking
    assert PREVIEW_HEADER not in (await heartbeat(device)).headers
    late = await post_scene(device, snapshot_json())
    assert late.status == 200 and PREVIEW_HEADER not in late.headers
    watches = audit.query(live_db(client), action="device.scene.watch")
    assert [(e["target"], e["details"]) for e in watches] == [(device.device_id, {"room": "3B-12"})]

    clock.now += SNAPSHOT_TTL_SECONDS + 1
    stale = await (await client.get(f"/api/v1/devices/{device.device_id}/scene", headers=operator)).json()
    assert not stale["live"] and stale["people"] == [] and stale["time"] is None and stale["zones"][0]["name"] == "door"
    assert len(audit.query(live_db(client), action="device.scene.watch")) == 2  # a new watching period


async def test_scene_routes_refuse_what_they_must(client, tmp_path, clock):
    device = await enroll_device(client, tmp_path / "fleet.db", clock)
    assert (await client.get(f"/api/v1/devices/{device.device_id}/scene")).status == 401
    viewer = await client.get(f"/api/v1/devices/{device.device_id}/scene", headers=api_headers(client, "viewer"))
    assert viewer.status == 403 and not preview_wanted(client.server.app, device.device_id)
    assert (await client.get("/api/v1/devices/dev-nope/scene", headers=api_headers(client, "operator"))).status == 404

    pixels = await post_scene(device, snapshot_json(image="/9j/4AAQSkZJRgABAQ"))
    assert pixels.status == 400 and "image" in (await pixels.json())["error"]
    too_big = await post_scene(device, snapshot_json(padding="x" * MAX_SCENE_BYTES))
    assert too_big.status == 413
    unsigned = await client.post("/api/v1/device/scene", json=snapshot_json())
    assert unsigned.status == 401
    as_text = await device.send("POST", "/api/v1/device/scene", json.dumps(snapshot_json()).encode(), "text/plain")
    assert as_text.status == 415
    assert latest_snapshot(client.server.app, device.device_id) is None


# ---- the device's PreviewSender over real HTTP ----------------------------------------------------------------


async def wait_until(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_the_preview_sender_posts_only_while_the_console_watches(client, tmp_path, clock):
    app = client.server.app
    device = await enroll_device(client, tmp_path / "fleet.db", clock, credential=False)
    fleet = FleetClient(str(client.make_url("")), device.device_id, device.key,
                        CredentialFile(tmp_path / "credential.json"), context=None, timeout=5.0)  # fmt: skip
    tap = SceneTap(ZONES, REGIONS)
    tap.update(Scene(1.0, (640, 480), (tracked(4, (100.0, 100.0, 150.0, 300.0)),)))
    sender = PreviewSender(fleet, tap.snapshot, interval=0.05).start()
    report = wire.Health(device_id=device.device_id, sent_at=T0, uptime_s=5.0, agent_version="0.1.0",
                         accelerator="cpu")  # fmt: skip
    try:
        sender.observe(await asyncio.to_thread(fleet.heartbeat, report))
        await asyncio.sleep(0.3)
        assert not sender.wanted and sender.sent == 0 and latest_snapshot(app, device.device_id) is None

        view = await client.get(f"/api/v1/devices/{device.device_id}/scene", headers=api_headers(client, "operator"))
        assert (await view.json())["people"] == []
        sender.observe(await asyncio.to_thread(fleet.heartbeat, report))  # this reply says "1"
        await wait_until(lambda: sender.sent >= 3)
        snapshot, _ = latest_snapshot(app, device.device_id)
        assert snapshot.people[0].track_id == 4 and [z.name for z in snapshot.zones] == ["door", "bed-1"]
        url = f"/api/v1/devices/{device.device_id}/scene"
        view = await (await client.get(url, headers=api_headers(client, "operator"))).json()
        assert view["people"][0]["track_id"] == 4 and len(view["privacy_regions"]) == 1

        app[CLOCK_KEY].now += WATCH_SECONDS + 1  # the console closed: the next reply has no "1"
        await wait_until(lambda: not sender.wanted)
        sent = sender.sent
        await asyncio.sleep(0.3)
        assert sender.sent == sent  # stopped, until a reply asks again
    finally:
        await asyncio.to_thread(sender.stop)
    assert app[DB_KEY].get_device(device.device_id)["status"] == "active"
