"""Device heartbeats: readings from /proc and /sys, the pure report builder, and delivery to a real server."""

import time

from firmware.heartbeat import AgentReadings, HeartbeatLoop, SystemReadings, build_health, read_system
from firmware.identity import IdentityStore
from fleet.cli import create_token
from fleet.config import ServerConfig
from fleet.health.store import device_health
from fleet.server import BackgroundServer
from fleet.store.db import FleetDB
from wardsight.bundle import Bundle


def readings(**over):
    fields = dict(
        frames_processed=900,
        frames_dropped=3,
        fps=14.9,
        stage_ms={"inference": 19.6, "Face Mask": 12.0},
        accelerator="cpu",
        accelerator_configured=None,
        accelerator_temp_c=None,
        models={"movenet-multipose": "lightning-fp16-1"},
        outbox_pending=2,
    )
    fields.update(over)
    return AgentReadings(**fields)


def test_read_system_parses_a_pi_style_proc_and_sys(tmp_path):
    (tmp_path / "proc").mkdir()
    meminfo = "MemTotal:        8000000 kB\nMemFree: 100 kB\nMemAvailable:    6000000 kB\n"
    (tmp_path / "proc" / "meminfo").write_text(meminfo)
    zone = tmp_path / "sys" / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("61234\n")
    got = read_system(tmp_path / "proc", tmp_path / "sys")
    assert got.cpu_temp_c == 61.234
    assert (got.mem_total_mb, got.mem_used_mb) == (7812.5, 1953.125)
    assert read_system(tmp_path / "nothing", tmp_path / "nothing") == SystemReadings()  # unreadable: None, no crash


def test_build_health_makes_a_closed_wire_report():
    report = build_health("dev-1", readings(), SystemReadings(55.0, 900.0, 3900.0), uptime_s=12.5, sent_at=1.8e9)
    assert report.stage_ms == {"inference": 19.6, "face_mask": 12.0}  # names made into wire keys
    assert report.models == {"movenet_multipose": "lightning-fp16-1"}
    assert report.warnings == [] and report.accelerator_configured is None
    lost = build_health("dev-1", readings(accelerator="cpu", accelerator_configured="coral"), SystemReadings(),
                        uptime_s=1, sent_at=1.8e9)  # fmt: skip
    assert lost.warnings == ["accelerator_fallback"]


def test_heartbeats_reach_the_server_over_tls(tmp_path):
    config = ServerConfig(port=0, database=tmp_path / "fleet.db")
    server = BackgroundServer(config).start()
    try:
        store = IdentityStore(tmp_path / "device")
        identity, _ = store.enroll(Bundle(server.url, create_token(config, "3B-12", 600), server.ca_pem), "cam-1")
        _, client = store.client(timeout=5.0)
        report = lambda: build_health(  # noqa: E731
            identity.device_id, readings(), SystemReadings(48.5), uptime_s=3.0, sent_at=time.time() - 3600
        )
        loop = HeartbeatLoop(client, report, interval=0.05).start()
        deadline = time.monotonic() + 10
        while loop.sent < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        loop.stop()
        assert loop.sent >= 2
        db = FleetDB(config.database)
        try:
            latest = device_health(db.db, identity.device_id)
        finally:
            db.close()
        assert latest["frames_processed"] == 900 and latest["cpu_temp_c"] == 48.5
        assert -3700 < latest["clock_skew_s"] < -3500  # the device's clock is an hour behind: the server sees it
    finally:
        server.stop()
