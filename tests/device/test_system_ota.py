"""System updates in the agent (firmware/ota/system_client.py, the OTA wiring of firmware/runtime.py): what the wire
carries of a system report, when a device says it takes system updates, the one update lock the model manager now
takes too, and the real agent finishing a trial boot on the fake RAUC (its self-test, its health check over real
frames, ``rauc status mark-good``) against a real fleet server.
"""

from __future__ import annotations

import threading
import time

import pytest

from firmware.identity import IdentityStore
from firmware.jobs.hooks import SelfTestOutcome
from firmware.ota.download import TargetDownloader
from firmware.ota.manager import OtaManager
from firmware.ota.rauc import Rauc
from firmware.ota.slots import SlotStore
from firmware.ota.slotstate import Choice
from firmware.ota.system_client import SystemAwareChannel, split_reason, system_updates_available, wire_report
from firmware.ota.system_state import SystemOffer, SystemReport, SystemState, SystemStateStore, system_dir, update_lock
from firmware.ota.system_update import SystemUpdater
from firmware.ota.tufclient import TufClient
from firmware.runtime import DeviceRuntime
from fleet.cli import create_token
from fleet.config import ServerConfig
from fleet.ota.repository.files import bundle_root
from fleet.server import BackgroundServer
from signing.client import Server
from signing.keys import generate_keys
from signing.metadata import init_repository
from tests.device.fakes.rauc import ENV, FakeRaucSystem, make_bundle
from tests.fleet.ota.test_ota_repository import admin_token
from wardsight import wire
from wardsight.bundle import Bundle
from wardsight.device_config import DeviceConfig

BOARD = "wardsight-rpi5"

# ---- the wire -------------------------------------------------------------------------------------------------


def test_system_reports_carry_a_reason_code_and_the_device_s_own_words():
    assert split_reason("self_test_failed: bad_output: scores outside [0, 1]") == (
        "self_test_failed", "bad_output: scores outside [0, 1]")  # fmt: skip
    assert split_reason("new_slot_did_not_boot") == ("new_slot_did_not_boot", None)
    assert split_reason("rauc_busy: Failed to contact rauc service:\nAlready processing") == (
        "rauc_busy", "Failed to contact rauc service: Already processing")  # fmt: skip
    assert split_reason("4 Starts") == ("r_4_starts", None)
    assert split_reason(None) == (None, None)
    long = split_reason("install_failed: " + "x" * 1000)[1]
    assert long is not None and len(long) == 256
    report = wire_report(SystemReport("ro-1", "trial", "1.1.0", "rootfs.1"), BOARD)
    assert (report.state, report.model, report.reason) == ("activated", BOARD, None), "the trial is the wire's"
    report = wire_report(SystemReport("ro-1", "rolled_back", "1.1.0", "rootfs.1", "health_check_failed: missed"), BOARD)
    assert (report.state, report.reason, report.detail) == ("rolled_back", "health_check_failed", "missed")
    for state in ("deferred", "downloaded", "rejected", "installed", "rebooting", "healthy", "failed"):
        assert wire_report(SystemReport("ro-1", state, "1.1.0"), BOARD).state == state  # type: ignore[arg-type]


def test_only_a_device_with_rauc_installed_and_configured_takes_system_updates(tmp_path):
    conf = tmp_path / "system.conf"
    assert not system_updates_available(lambda name: "/usr/bin/rauc", conf), "no system.conf: not an A/B image"
    conf.write_text("[system]\ncompatible=wardsight-rpi5\n")
    assert system_updates_available(lambda name: "/usr/bin/rauc", conf)
    assert not system_updates_available(lambda name: None, conf), "no rauc"


# ---- one update at a time ---------------------------------------------------------------------------------------


class Reports:
    def __init__(self) -> None:
        self.sent: list[wire.UpdateReport] = []

    def poll(self) -> wire.UpdateOffer | None:
        return None

    def report(self, report: wire.UpdateReport) -> bool:
        self.sent.append(report)
        return True


def test_the_model_manager_defers_its_offer_while_a_system_update_runs(tmp_path):
    device = tmp_path / "device"
    slots = SlotStore(device / "models" / "slots")
    reports = Reports()
    nowhere = "http://127.0.0.1:9"  # nothing listens: a model offer that gets past the lock fails to fetch
    tuf = TufClient(device / "ota", nowhere, None, timeout=1.0)
    manager = OtaManager(slots, reports, tuf, TargetDownloader(device / "ota", None), running=Choice(None),
                         restart=lambda why: None)  # fmt: skip
    model = wire.UpdateOffer(rollout_id="ro-m", model="movenet-multipose", version="1.1",
                             target="models/movenet-multipose/1.1.wsm")  # fmt: skip

    # A system update downloading holds the lock.
    with update_lock(device, "system") as lock:
        assert lock is not None
        assert manager.handle(model) == "waiting"
    assert [(r.state, r.reason) for r in reports.sent] == [("deferred", "system_update_in_progress")]

    # A system update past idle (rebooting, on trial) keeps model updates out across restarts, lock or not.
    offer = SystemOffer(rollout_id="ro-s", version="1.1.0", compatible=BOARD)
    SystemStateStore(system_dir(device)).save(SystemState(phase="rebooting", offer=offer))
    assert manager.handle(model.model_copy(update={"version": "1.2"})) == "waiting"
    assert (reports.sent[-1].state, reports.sent[-1].reason) == ("deferred", "system_update_in_progress")

    SystemStateStore(system_dir(device)).save(SystemState())
    assert manager.handle(model.model_copy(update={"version": "1.3"})) == "retry", "idle: the offer goes ahead"


# ---- the real agent on the fake RAUC ----------------------------------------------------------------------------


@pytest.fixture
def fleet(tmp_path):
    config = ServerConfig(port=0, database=tmp_path / "server" / "fleet.db")
    server = BackgroundServer(config).start()
    api = Server(server.url, admin_token(config), server.ca_pem)
    generate_keys(tmp_path / "keys")
    init_repository(tmp_path / "keys", api)
    yield server, config
    server.stop()


def test_the_agent_finishes_a_trial_boot_and_confirms_the_new_system(
    fleet, data_dir_with_models, tmp_path, monkeypatch
):
    server, config = fleet
    data = data_dir_with_models
    bundle = Bundle(server.url, create_token(config, "3B-12", 600), server.ca_pem, tuf_root=bundle_root(config))
    IdentityStore(data / "device").enroll(bundle, "cam-1")
    fake = FakeRaucSystem(tmp_path / "rauc", compatible=BOARD)
    monkeypatch.setenv(ENV, str(fake.path))
    reboots: list[str] = []

    # The previous agent installed 1.1.0 and asked for the tryboot; the board booted the new slot.
    before = SystemUpdater(data / "device", Rauc(fake.command), reboot=reboots.append,
                           self_test=lambda: SelfTestOutcome(True, "ok", ""), health=lambda: None,
                           boot_id=fake.boot_id, running_version=fake.release_version)  # fmt: skip
    made = make_bundle(tmp_path / "1.1.0.raucb", compatible=BOARD, version="1.1.0")
    before.stage(made, SystemOffer(rollout_id="ro-1", version="1.1.0", compatible=BOARD))
    before.step()
    assert reboots == ["tryboot"] and fake.boot("tryboot") == "rootfs.1"

    device = DeviceConfig.model_validate({"threads": 1, "source": {"kind": "file", "realtime": False, "loop": True}})
    runtime = DeviceRuntime(device, data, rauc=Rauc(fake.command), system_reboot=reboots.append)
    runtime.start()
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        assert runtime.system is not None and isinstance(runtime.manager.channel, SystemAwareChannel)  # type: ignore[union-attr]
        deadline = time.monotonic() + 120
        while fake.calls("mark-good") == [] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert fake.calls("mark-good") == [["status", "mark-good", "booted"]], "self-test and health check passed"
        assert fake.primary == "rootfs.1" and reboots == ["tryboot"]
        assert runtime.agent.stats.processed >= 30, "confirmed by real frames through the new system's agent"
    finally:
        runtime.stop_event.set()
        thread.join(60)
    assert SystemStateStore.read(system_dir(data / "device")).phase == "idle"
