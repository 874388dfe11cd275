"""Device heartbeats: readings from /proc and /sys, the pure report builder, and delivery to a real server."""

import logging
import time

import pytest

from firmware import system_version
from firmware.heartbeat import AgentReadings, HeartbeatLoop, SystemReadings, build_health, read_system
from firmware.identity import IdentityStore
from fleet.cli import create_token
from fleet.config import ServerConfig
from fleet.health.store import device_health
from fleet.server import BackgroundServer
from fleet.store.db import FleetDB
from wardsight import wire
from wardsight.bundle import Bundle

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
PI_CMDLINE = "coherent_pool=1M console=tty1 root=/dev/mmcblk0p5 rootfstype=erofs ro rauc.slot=B rootwait\n"


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
    nothing = tmp_path / "nothing"
    assert read_system(nothing, nothing, nothing) == SystemReadings()  # unreadable: None, no crash


def test_build_health_makes_a_closed_wire_report():
    report = build_health("dev-1", readings(), SystemReadings(55.0, 900.0, 3900.0), uptime_s=12.5, sent_at=1.8e9)
    assert report.stage_ms == {"inference": 19.6, "face_mask": 12.0}  # names made into wire keys
    assert report.models == {"movenet_multipose": "lightning-fp16-1"}
    assert report.warnings == [] and report.accelerator_configured is None
    lost = build_health("dev-1", readings(accelerator="cpu", accelerator_configured="coral"), SystemReadings(),
                        uptime_s=1, sent_at=1.8e9)  # fmt: skip
    assert lost.warnings == ["accelerator_fallback"]


@pytest.fixture(autouse=True)
def _fresh_system_version():
    system_version.read_system_version.cache_clear()  # read once per process and paths: each test its own
    yield
    system_version.read_system_version.cache_clear()


def image(tmp_path, release: str | None, cmdline: str | None = PI_CMDLINE):
    """A device's /proc and /etc/wardsight/system-release as an image and its boot leave them."""
    (tmp_path / "proc").mkdir(exist_ok=True)
    if cmdline is not None:
        (tmp_path / "proc" / "cmdline").write_text(cmdline)
    if release is not None:
        (tmp_path / "system-release").write_text(release)
    return tmp_path / "proc", tmp_path / "system-release"


def test_the_heartbeat_says_which_slot_booted_and_what_the_image_is(tmp_path):
    proc, release = image(tmp_path, f"# written by the image build\nVERSION=2026.12.1\nSBOM_SHA256={SHA}\n")
    got = read_system(proc, tmp_path / "sys", release)
    assert got.system == wire.SystemVersion(slot="B", version="2026.12.1", sbom_sha256=SHA)
    report = build_health("dev-1", readings(), got, uptime_s=1.0, sent_at=1.8e9)
    assert report.system == got.system
    assert wire.Health.model_validate_json(report.model_dump_json()).system == got.system


@pytest.mark.parametrize(
    ("release", "cmdline", "expected"),
    [
        # os-release style: quotes, spaces round the value, other keys ignored, the later key wins, upper-case hex
        (f'NAME="WardSight"\nVERSION="2026.12.1"\n SBOM_SHA256 = {SHA.upper()}\n', PI_CMDLINE, ("B", "2026.12.1", SHA)),
        ("VERSION=1.0\nVERSION=1.1\n", "root=/dev/vda ro rauc.slot=A", ("A", "1.1", None)),
        # no rauc.slot= (the amd64 twin, a plain image) or booted from outside every slot: no slot, the version stays
        ("VERSION=1.0\n", "root=/dev/vda ro quiet", (None, "1.0", None)),
        ("VERSION=1.0\n", "rauc.external rauc.slot=A", (None, "1.0", None)),
        ("VERSION=1.0\n", None, (None, "1.0", None)),  # no /proc/cmdline to read
        ("VERSION=1.0\n", "rauc.slot=A rauc.slot=B", ("A", "1.0", None)),  # the first, as RAUC reads it
        ("VERSION=1.0\n", "rauc.slot= root=/dev/vda", (None, "1.0", None)),
        ("VERSION=1.0\n", "rauc.slot=_external_", (None, "1.0", None)),  # not a slot name
        # no rauc.slot=: the root RAUC would match to a slot's device (image-rota's GPT labels)
        ("VERSION=1.0\n", "console=tty1 root=PARTLABEL=system_b rootfstype=erofs ro", ("B", "1.0", None)),
        ("VERSION=1.0\n", "root=PARTLABEL=system_a rauc.slot=B", ("B", "1.0", None)),  # rauc.slot= first
        ("VERSION=1.0\n", "root=PARTLABEL=persistent", (None, "1.0", None)),
        ("VERSION=1.0\n", "root=PARTLABEL=system_ab", (None, "1.0", None)),
        ("VERSION=1.0\n", "root=/dev/mmcblk0p4", (None, "1.0", None)),  # a device path: not resolved here
        # a digest that is not one is left out, the version kept
        ("VERSION=1.0\nSBOM_SHA256=abc\n", PI_CMDLINE, ("B", "1.0", None)),
        (f"VERSION=1.0\nSBOM_SHA256={SHA}0\n", PI_CMDLINE, ("B", "1.0", None)),
    ],
)
def test_the_release_file_and_the_command_line_are_read_as_the_image_writes_them(tmp_path, release, cmdline, expected):
    proc, path = image(tmp_path, release, cmdline)
    got = read_system(proc, tmp_path / "sys", path).system
    assert got is not None and (got.slot, got.version, got.sbom_sha256) == expected


@pytest.mark.parametrize(
    "release",
    [
        None,  # no release file: an image from before it, or a development machine
        "",
        "SBOM_SHA256=" + SHA,  # no VERSION
        "VERSION=\n",
        "VERSION=1.0 beta\n",  # not a version
        "VERSION=" + "1" * 33,
        "version=1.0\n",  # keys are upper case
        "VERSION=1.0\n" + "# padding\n" * 500,  # over 4 KiB: not ours
    ],
)
def test_without_a_readable_version_the_heartbeat_leaves_the_system_out(tmp_path, release):
    proc, path = image(tmp_path, release)
    got = read_system(proc, tmp_path / "sys", path)
    assert got.system is None
    report = build_health("dev-1", readings(), got, uptime_s=1.0, sent_at=1.8e9)
    assert "system" in report.model_dump() and report.system is None


def test_a_release_file_that_is_not_text_or_not_a_file_is_left_out(tmp_path):
    proc, path = image(tmp_path, None)
    path.write_bytes(b"VERSION=1.0\n\xff\xfe")
    assert read_system(proc, tmp_path / "sys", path).system is None
    system_version.read_system_version.cache_clear()
    path.unlink()
    path.mkdir()  # a directory where the file should be
    assert read_system(proc, tmp_path / "sys", path).system is None


def test_the_files_are_read_once_and_a_broken_one_is_logged_once(tmp_path, caplog):
    proc, path = image(tmp_path, "VERSION=1.0 beta\n")
    with caplog.at_level(logging.WARNING, logger="wardsight.device.system_version"):
        for _ in range(3):
            assert read_system(proc, tmp_path / "sys", path).system is None
    assert [r.getMessage() for r in caplog.records] == [
        "the system release file has no valid VERSION; the heartbeat leaves the system out"
    ]
    path.write_text("VERSION=2.0\n")  # cannot happen on the read-only root: the reading is the boot's
    assert read_system(proc, tmp_path / "sys", path).system is None
    system_version.read_system_version.cache_clear()
    assert read_system(proc, tmp_path / "sys", path).system == wire.SystemVersion(slot="B", version="2.0")


def test_heartbeats_reach_the_server_over_tls(tmp_path):
    config = ServerConfig(port=0, database=tmp_path / "fleet.db")
    server = BackgroundServer(config).start()
    try:
        store = IdentityStore(tmp_path / "device")
        identity, _ = store.enroll(Bundle(server.url, create_token(config, "3B-12", 600), server.ca_pem), "cam-1")
        _, client = store.client(timeout=5.0)
        system = wire.SystemVersion(slot="A", version="2026.12.1", sbom_sha256=SHA)
        system_readings = SystemReadings(48.5, system=system)
        report = lambda: build_health(  # noqa: E731
            identity.device_id, readings(), system_readings, uptime_s=3.0, sent_at=time.time() - 3600
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
        got = (latest["system_slot"], latest["system_version"], latest["system_sbom_sha256"])
        assert got == ("A", "2026.12.1", SHA)
        assert -3700 < latest["clock_skew_s"] < -3500  # the device's clock is an hour behind: the server sees it
    finally:
        server.stop()


def test_the_slot_comes_from_the_firmware_when_the_command_line_names_none(tmp_path):
    release = tmp_path / "system-release"
    release.write_text("VERSION=2026.12.1\n")
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=serial0,115200 root=/dev/disk/by-slot/active/system ro rootwait\n")  # image-rota's
    dt = tmp_path / "bootloader"
    dt.mkdir()
    (dt / "partition").write_bytes((3).to_bytes(4, "big"))  # boot_b
    system_version.read_system_version.cache_clear()
    assert system_version.read_system_version(release, cmdline, dt) == wire.SystemVersion(slot="B", version="2026.12.1")
    (dt / "partition").write_bytes((2).to_bytes(4, "big"))
    system_version.read_system_version.cache_clear()
    assert system_version.read_system_version(release, cmdline, dt).slot == "A"
    cmdline.write_text("root=PARTLABEL=system_b rauc.slot=B\n")  # the command line, when it says, wins
    system_version.read_system_version.cache_clear()
    assert system_version.read_system_version(release, cmdline, dt).slot == "B"
    (dt / "partition").unlink()
    cmdline.write_text("root=/dev/vda ro\n")  # not a Pi: no slot, the version still reported
    system_version.read_system_version.cache_clear()
    assert system_version.read_system_version(release, cmdline, dt) == wire.SystemVersion(version="2026.12.1")
    system_version.read_system_version.cache_clear()


def test_the_board_comes_from_rauc_s_system_conf(tmp_path):
    release = tmp_path / "system-release"
    release.write_text("VERSION=2026.12.1\n")
    conf = tmp_path / "system.conf"
    conf.write_text("[system]\ncompatible=wardsight-rpi5\nbootloader=custom\n\n[slot.rootfs.0]\ndevice=/dev/x\n")
    missing = tmp_path / "none"
    system_version.read_system_version.cache_clear()
    assert system_version.read_system_version(release, missing, missing, conf).compatible == "wardsight-rpi5"
    conf.write_text("[system]\ncompatible=Not A Board!\n")
    system_version.read_system_version.cache_clear()
    assert system_version.read_system_version(release, missing, missing, conf).compatible is None
    system_version.read_system_version.cache_clear()
    assert system_version.read_system_version(release, missing, missing, missing).compatible is None  # no RAUC
    system_version.read_system_version.cache_clear()
