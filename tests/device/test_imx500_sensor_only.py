"""Sensor-only mode (``[source] kind = "imx500"``, ``host_frames = false``): configuration that refuses what needs
pixels on the host, and a whole device agent run on the fake AI Camera that never touches an image buffer while
its events and heartbeats reach a real fleet server."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from accelerators import registry

registry.entries()

from firmware.apps.hygiene import HandHygieneApp  # noqa: E402
from firmware.assembly import build_apps, privacy_mode  # noqa: E402
from firmware.identity import IdentityStore  # noqa: E402
from firmware.runtime import DeviceRuntime  # noqa: E402
from fleet.cli import create_token  # noqa: E402
from fleet.config import ServerConfig  # noqa: E402
from fleet.health.store import privacy_mode as fleet_privacy_mode  # noqa: E402
from fleet.server import BackgroundServer  # noqa: E402
from fleet.store.db import FleetDB  # noqa: E402
from tests.device.fakes.picamera2.devices.imx500 import imx500 as fake_imx500  # noqa: E402
from wardsight.bundle import Bundle  # noqa: E402
from wardsight.device_config import DeviceConfig  # noqa: E402
from wardsight.errors import ConfigError  # noqa: E402

ZONES = [
    {"name": "door", "kind": "door", "polygon": [[0, 0], [0.2, 0], [0.2, 1], [0, 1]]},
    {"name": "gel", "kind": "dispenser", "polygon": [[0.2, 0], [0.3, 0], [0.3, 0.5], [0.2, 0.5]]},
    {"name": "bed", "kind": "bed", "polygon": [[0.6, 0.3], [1, 0.3], [1, 1], [0.6, 1]]},
]


def sensor_only(**extra) -> DeviceConfig:
    return DeviceConfig.model_validate({"source": {"kind": "imx500", "host_frames": False}, **extra})


def test_sensor_only_needs_the_ai_camera():
    with pytest.raises(ValueError, match="host_frames = false .* needs kind = imx500"):
        DeviceConfig.model_validate({"source": {"kind": "picamera", "host_frames": False}})
    assert privacy_mode(sensor_only()) == "sensor-only"
    assert privacy_mode(DeviceConfig.model_validate({"source": {"kind": "imx500"}})) == "blackout-at-capture"
    assert privacy_mode(DeviceConfig()) == "blackout-at-capture"


def test_apps_that_need_pixels_are_refused_with_the_reason():
    with pytest.raises(ConfigError, match="mask app looks at faces in the image, which never arrives"):
        build_apps(sensor_only(mask={"enabled": True}))
    with pytest.raises(ConfigError, match="rub detection finds hands in the image"):
        build_apps(sensor_only(zones=ZONES, hand_hygiene={"enabled": True, "use_hands": True}))


def test_hand_hygiene_falls_back_to_the_wrists_dwell_at_the_dispenser():
    apps = build_apps(sensor_only(zones=ZONES, hand_hygiene={"enabled": True}))
    hygiene = next(a for a in apps if isinstance(a, HandHygieneApp))
    assert hygiene.needs == frozenset() and not hygiene.config.use_hands and not hygiene.config.require_rub
    with_frames = build_apps(
        DeviceConfig.model_validate({"source": {"kind": "imx500"}, "zones": ZONES, "hand_hygiene": {"enabled": True}})
    )
    hygiene = next(a for a in with_frames if isinstance(a, HandHygieneApp))
    assert hygiene.needs == {"hands"} and hygiene.config.require_rub


def scenes() -> list[np.ndarray]:
    """A person (a bright blob, which the fake pose network reads as a standing skeleton) walks in and out."""
    out = []
    for i in range(40):
        img = np.full((600, 800, 3), 30, np.uint8)
        if 10 <= i < 30:
            x = 300 + 10 * (i - 10)
            img[120:540, x : x + 90] = 240
        out.append(img)
    return out


def test_a_sensor_only_agent_touches_no_image_and_its_events_reach_the_fleet(fake, tmp_path):
    config = ServerConfig(port=0, database=tmp_path / "fleet.db")
    server = BackgroundServer(config).start()
    try:
        data = tmp_path / "data"
        IdentityStore(data / "device").enroll(
            Bundle(server.url, create_token(config, "3B-12", 600), server.ca_pem), "cam-1"
        )
        network = tmp_path / "imx500_network_yolov8n_pose.rpk"
        network.write_bytes(b"fake rpk")
        sensor = fake.add_camera(scenes(), model="imx500", pixel_array=(4056, 3040), camera_id="/base/imx500@1a")
        sensor.network = fake_imx500.FakePoseNetwork()
        device = DeviceConfig.model_validate(
            {
                "threads": 1,
                "heartbeat_seconds": 0.2,
                "source": {"kind": "imx500", "host_frames": False, "size": [640, 480]},
                "accelerator": {"imx500_network": str(network)},
                "privacy_regions": [{"name": "bathroom", "polygon": [[0, 0], [0.1, 0], [0.1, 1], [0, 1]]}],
                "occupancy": {"stable_seconds": 0.1},
            }
        )
        runtime = DeviceRuntime(device, data, store=None)
        assert runtime.agent.analyzers == []
        runtime.start()
        thread = threading.Thread(target=runtime.run, daemon=True)
        thread.start()
        db = FleetDB(config.database)
        device_id = runtime.identity.device_id

        def arrived() -> bool:
            heard = fleet_privacy_mode(db.db, device_id) is not None
            return heard and any(e["app"] == "occupancy" for e in db.recent_events())

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not arrived():
            time.sleep(0.1)
        runtime.stop_event.set()
        thread.join(30)
        events = db.recent_events()
        assert any(e["app"] == "occupancy" and e["type"] == "count_changed" for e in events), events
        assert runtime.agent.stats.processed >= 10
        assert sensor.pixels_handed_out == 0, sensor.pixel_handouts
        assert fleet_privacy_mode(db.db, device_id) == "sensor-only"  # from its heartbeats, as the console shows it
    finally:
        server.stop()
