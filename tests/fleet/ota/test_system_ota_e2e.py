"""A system update end to end (issue 19, item 2), on both database backends.

Real pieces: the fleet server (TLS, its own CA, the rollout ticker at its default pace), the hospital's offline keys
and the signing functions (``wardsight ota init``, ``publish-system``, ``rollout --system``), a device enrolled
from a bundle carrying the OTA root, speaking through its authenticated ``FleetClient``: one update poll
(:class:`firmware.ota.system_client.SystemAwareChannel`), TUF, the resumable download, then the
:class:`~firmware.ota.system_update.SystemUpdater` over the fake ``rauc`` (a real process: RAUC's command line, its
signature check, the inactive slot, set-primary arming a one-shot try). The reboot is the test's: it boots the fake
board the way the updater asked (a tryboot) and starts a new updater from the files on disk, as a new agent would.

An operator's rollback goes only as low as the hospital's signed floor (``wardsight ota system-floor``): at or above
it, as before; below it, refused by the device before anything is downloaded, and the server shows why.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.heartbeat import SystemReadings, build_health
from firmware.identity import IdentityStore, tls_context
from firmware.jobs.hooks import SelfTestOutcome
from firmware.ota.channel import FleetChannel
from firmware.ota.rauc import Rauc
from firmware.ota.system_client import SystemAwareChannel, SystemClient, bundle_downloader, poll_offer
from firmware.ota.system_update import SystemUpdater
from firmware.ota.tufclient import TufClient
from fleet.accounts import service as operators
from fleet.cli import create_token
from fleet.config import ServerConfig
from fleet.ota.repository.files import bundle_root
from fleet.server import BackgroundServer
from fleet.store.db import FleetDB
from signing.bundles import publish_bundle, read_manifest, sha256_file
from signing.client import Server, start_rollout
from signing.floors import set_floor
from signing.keys import generate_keys
from signing.metadata import init_repository
from tests.device.fakes.rauc import ENV, FakeRaucSystem, make_bundle
from tests.fleet.helpers import agent_readings
from wardsight import wire
from wardsight.bundle import Bundle

BOARD = "wardsight-rpi5"
ROOM = "3B-12"


class Hospital:
    """The fleet server, an admin API token, and the offline keys that signed the repository's root."""

    def __init__(self, work: Path) -> None:
        self.config = ServerConfig(port=0, database=work / "server" / "fleet.db")
        self.server = BackgroundServer(self.config).start()
        db = FleetDB(self.config.database)  # type: ignore[arg-type]
        try:
            token = operators.create_api_token(db.db, "hospital-it", "admin", "alice", time.time())
        finally:
            db.close()
        self.api = Server(self.server.url, token, self.server.ca_pem)
        self.keys = work / "keys"
        generate_keys(self.keys)
        init_repository(self.keys, self.api)

    def rollout(self, rollout_id: str) -> dict[str, Any]:
        return self.api.get_json(f"/api/v1/rollouts/{rollout_id}")  # type: ignore[no-any-return]

    def wait_for(self, what: Callable[[], Any], label: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := what():
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {label}")


class Board:
    """The device: its data directory, its client to the fleet, and the fake RAUC system it runs on."""

    def __init__(self, work: Path, hospital: Hospital, fake: FakeRaucSystem) -> None:
        self.fake, self.dir = fake, work / "device"
        bundle = Bundle(hospital.server.url, create_token(hospital.config, ROOM, 600), hospital.server.ca_pem,
                        tuf_root=bundle_root(hospital.config))  # fmt: skip
        store = IdentityStore(self.dir)
        self.identity, _ = store.enroll(bundle, "cam-1")
        assert (self.dir / "ota" / "root.json").is_file(), "enrollment keeps the OTA root"
        _, self.client = store.client(timeout=10.0)
        self.context = tls_context(self.identity.server_url, store.ca_pem())
        self.reboots: list[str] = []
        self.health: str | None = None  # the trial's health check: undecided until the test says

    def agent(self) -> tuple[SystemClient, SystemAwareChannel]:
        """What an agent start makes: the updater (from its state on disk), the system client, the one poll."""
        updater = SystemUpdater(self.dir, Rauc(self.fake.command), reboot=self.reboots.append,
                                self_test=lambda: SelfTestOutcome(True, "ok", "1 person, 40 ms"),
                                health=lambda: self.health, boot_id=self.fake.boot_id,
                                running_version=self.fake.release_version)  # fmt: skip
        client = self.client
        tuf = TufClient(self.dir / "ota", self.identity.server_url, self.context, reference_time=client.server_now)
        system = SystemClient(updater, FleetChannel(client), tuf, bundle_downloader(self.dir, self.context),
                              server_now=client.server_now)  # fmt: skip
        return system, SystemAwareChannel(client, system)

    def heartbeat(self) -> None:
        """A heartbeat saying which slot booted and the version its image says it is."""
        slot = self.fake.read()["slots"][self.fake.booted]["bootname"]
        system = wire.SystemVersion(slot=slot, version=self.fake.release_version())
        health = build_health(self.identity.device_id, agent_readings(), SystemReadings(system=system), uptime_s=5.0,
                              sent_at=time.time())  # fmt: skip
        assert self.client.heartbeat(health).status == 200


@pytest.fixture
def hospital(tmp_path: Path) -> Iterator[Hospital]:
    running = Hospital(tmp_path)
    try:
        yield running
    finally:
        running.server.stop()


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeRaucSystem:
    system = FakeRaucSystem(tmp_path / "rauc", compatible=BOARD, factory_version="1.0.0")
    monkeypatch.setenv(ENV, str(system.path))
    return system


def systems_running(hospital: Hospital) -> dict[str, int]:
    (entry,) = hospital.api.get_json("/api/v1/models")["systems"]
    return {v["version"]: v["devices"] for v in entry["versions"]}


def test_a_system_update_reaches_a_device_end_to_end(hospital, fake, tmp_path, caplog):
    board = Board(tmp_path, hospital, fake)
    board.heartbeat()  # it runs system 1.0.0 from slot A

    # The hospital publishes 1.1.0 with the offline targets key, its compatible and version read by rauc info.
    bundle = make_bundle(tmp_path / "wardsight-1.1.0.raucb", compatible=BOARD, version="1.1.0",
                         payload=b"the 1.1.0 root filesystem " * 8192)  # fmt: skip
    read = functools.partial(read_manifest, rauc=fake.command)
    published = publish_bundle(bundle, hospital.keys, hospital.api, read=read)
    assert published["target"] == f"system/{BOARD}/1.1.0.raucb"
    view = start_rollout(hospital.api, BOARD, "1.1.0", {"room": ROOM}, kind="system")
    assert view["kind"] == "system" and [d["device_id"] for d in view["devices"]] == [board.identity.device_id]

    # An earlier agent was killed half-way through the download: the partial file is resumed, not fetched again.
    partial = board.dir / "ota" / "system" / "partial" / f"{sha256_file(bundle)}.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])

    signing_calls = len(fake.calls())  # the signing machine's rauc info (the same fake, for brevity)
    system, channel = board.agent()
    assert channel.poll() is None, "the system offer goes to the system client, not to the model manager"
    with caplog.at_level(logging.INFO, "wardsight.device.ota"):
        assert system.step() == "installing"
    assert f"resuming the download of system/{BOARD}/1.1.0.raucb at {bundle.stat().st_size // 2}" in caplog.text
    assert board.reboots == ["tryboot"], "installed in the inactive slot, then a reboot that tries it once"
    assert fake.primary == "rootfs.0"
    assert [c[0] for c in fake.calls()[signing_calls:] if c[0] != "status"] == ["info", "install"]
    assert not list((board.dir / "ota" / "system" / "verified").iterdir()), "the slot holds it now"
    rebooting = hospital.wait_for(lambda: (d := hospital.rollout(view["id"])["devices"][0])["status"] == "rebooting"
                                  and d, "the server to show the device rebooting")  # fmt: skip
    assert rebooting["explain"] == "rebooting into the new system (booted once, kept only if healthy)"

    # The board reboots into slot B once; the new agent finds its trial, self-tests, checks its health, confirms.
    assert fake.boot("tryboot") == "rootfs.1"
    system, channel = board.agent()
    assert system.step() == "trial"
    board.health = "ok"
    assert system.step() == "idle"
    assert fake.calls("mark-good") == [["status", "mark-good", "booted"]] and fake.primary == "rootfs.1"
    done = hospital.wait_for(lambda: (r := hospital.rollout(view["id"]))["status"] == "completed" and r,
                             "the rollout to complete")  # fmt: skip
    assert done["devices"][0]["explain"] == "healthy on system 1.1.0"
    states = ["downloading", "downloaded", "installed", "rebooting", "activated", "healthy"]
    assert report_states(hospital, view["id"]) == states

    # Its next heartbeat says it runs 1.1.0 from slot B, and the server shows it there.
    assert systems_running(hospital) == {"1.1.0": 0}
    board.heartbeat()
    assert systems_running(hospital) == {"1.1.0": 1}
    assert channel.poll() is None and system.step() == "idle", "nothing more to do"


def report_states(hospital: Hospital, rollout_id: str) -> list[str]:
    db = FleetDB(hospital.config.database)  # type: ignore[arg-type]
    try:
        rows = db.db.query("SELECT state FROM rollout_reports WHERE rollout_id = ? ORDER BY id", [rollout_id])
        return [r["state"] for r in rows]
    finally:
        db.close()


def test_a_failed_trial_boots_back_and_the_server_shows_why(hospital, fake, tmp_path):
    board = Board(tmp_path, hospital, fake)
    board.heartbeat()
    bundle = make_bundle(tmp_path / "wardsight-1.1.0.raucb", compatible=BOARD, version="1.1.0")
    publish_bundle(bundle, hospital.keys, hospital.api, read=functools.partial(read_manifest, rauc=fake.command))
    view = start_rollout(hospital.api, BOARD, "1.1.0", {"room": ROOM}, kind="system")
    system, channel = board.agent()
    channel.poll()
    assert system.step() == "installing"
    fake.boot("tryboot")
    system, _ = board.agent()
    board.health = "health_check_missed"  # the new system's agent processes no frames
    assert system.step() == "reverting" and board.reboots[-1] == "normal"
    assert fake.boot("normal") == "rootfs.0", "marked bad: the normal reboot boots the previous system"
    system, _ = board.agent()
    assert system.step() == "idle"
    # Until the server's next tick it may offer the same update again: it is not installed a second time.
    again = wire.UpdateOffer(rollout_id=view["id"], model=BOARD, version="1.1.0", kind="system",
                             target=f"system/{BOARD}/1.1.0.raucb")  # fmt: skip
    assert system.handle(again) == "ended" and len(fake.calls("install")) == 1
    stopped = hospital.wait_for(lambda: (r := hospital.rollout(view["id"]))["status"] == "stopped" and r,
                                "the rollout to stop at its error threshold")  # fmt: skip
    device = stopped["devices"][0]
    assert (device["status"], device["reason"], device["detail"]) == ("rolled_back", "health_check_failed",
                                                                      "health_check_missed")  # fmt: skip
    assert device["explain"] == ("booted back into its previous system: the new system failed its health check"
                                 " (health_check_missed)")  # fmt: skip
    board.heartbeat()
    assert systems_running(hospital) == {"1.1.0": 0}
    assert fake.release_version() == "1.0.0"


def test_the_client_needs_no_model_manager_to_poll(hospital, fake, tmp_path):
    """A device whose model runs in the AI Camera's sensor takes no model updates, but still system updates."""
    board = Board(tmp_path, hospital, fake)
    board.heartbeat()
    bundle = make_bundle(tmp_path / "wardsight-1.1.0.raucb", compatible=BOARD, version="1.1.0")
    publish_bundle(bundle, hospital.keys, hospital.api, read=functools.partial(read_manifest, rauc=fake.command))
    start_rollout(hospital.api, BOARD, "1.1.0", {"room": ROOM}, kind="system")
    system, channel = board.agent()
    system.own_poll = functools.partial(poll_offer, channel.client)
    assert system.step() == "installing" and board.reboots == ["tryboot"]



def test_a_bundle_is_fetched_at_once_and_installed_only_inside_the_maintenance_window(hospital, fake, tmp_path):
    board = Board(tmp_path, hospital, fake)
    board.heartbeat()
    bundle = make_bundle(tmp_path / "wardsight-1.1.0.raucb", compatible=BOARD, version="1.1.0")
    publish_bundle(bundle, hospital.keys, hospital.api, read=functools.partial(read_manifest, rauc=fake.command))
    now = [1_800_000_000.0]
    system, _ = board.agent()
    system.server_now = lambda: now[0]
    offer = wire.UpdateOffer(rollout_id="ro-window", model=BOARD, version="1.1.0", kind="system",
                             target=f"system/{BOARD}/1.1.0.raucb", window_start=now[0] + 3600,
                             window_end=now[0] + 7200)  # fmt: skip
    assert system.handle(offer) == "waiting"
    verified = board.dir / "ota" / "system" / "verified" / f"{sha256_file(bundle)}.raucb"
    assert verified.is_file() and fake.calls("install") == [] and system.updater.state.phase == "idle"
    now[0] += 3600  # the window opens: the verified bundle is installed, not downloaded again
    assert system.handle(offer) == "installing" and board.reboots == ["tryboot"]
    assert len(fake.calls("install")) == 1 and not verified.exists()


def healthy_on_1_1(hospital: Hospital, fake: FakeRaucSystem, tmp_path: Path) -> tuple[Board, str]:
    """A board that ran 1.0.0 and is healthy on 1.1.0 through a rollout (both published): the board, the rollout."""
    board = Board(tmp_path, hospital, fake)
    board.heartbeat()
    read = functools.partial(read_manifest, rauc=fake.command)
    for version in ("1.0.0", "1.1.0"):
        bundle = make_bundle(tmp_path / f"wardsight-{version}.raucb", compatible=BOARD, version=version,
                             payload=f"the {version} root filesystem ".encode() * 4096)  # fmt: skip
        publish_bundle(bundle, hospital.keys, hospital.api, read=read)
    view = start_rollout(hospital.api, BOARD, "1.1.0", {"room": ROOM}, kind="system")
    system, channel = board.agent()
    channel.poll()
    assert system.step() == "installing" and fake.boot("tryboot") == "rootfs.1"
    system, _ = board.agent()
    assert system.step() == "trial"
    board.health = "ok"
    assert system.step() == "idle" and fake.release_version() == "1.1.0"
    hospital.wait_for(lambda: hospital.rollout(view["id"])["status"] == "completed", "the rollout to complete")
    board.health = None  # the next trial's health check: undecided until the test says
    return board, view["id"]


def roll_back(hospital: Hospital, rollout_id: str) -> None:
    view = hospital.api.post_json(f"/api/v1/rollouts/{rollout_id}/rollback", {"reason": "CVE found in 1.1.0"})
    assert view["status"] == "rolling_back"


def test_a_rollback_at_or_above_the_signed_floor_goes_back_end_to_end(hospital, fake, tmp_path):
    board, rollout_id = healthy_on_1_1(hospital, fake, tmp_path)
    set_floor(BOARD, "1.0.0", hospital.keys, hospital.api)  # 1.0.0 is the floor itself: allowed
    roll_back(hospital, rollout_id)

    system, channel = board.agent()
    assert channel.poll() is None and system.step() == "installing", "the offer of 1.0.0, marked a rollback"
    assert board.reboots[-1] == "tryboot" and fake.boot("tryboot") == "rootfs.0"
    system, _ = board.agent()
    assert system.step() == "trial"
    board.health = "ok"
    assert system.step() == "idle"
    assert fake.release_version() == "1.0.0" and len(fake.calls("install")) == 2
    done = hospital.wait_for(lambda: (r := hospital.rollout(rollout_id))["status"] == "rolled_back" and r,
                             "the rollback to finish")  # fmt: skip
    assert done["devices"][0]["explain"] == "rolled back to 1.0.0"


def test_a_rollback_below_the_signed_floor_is_refused_before_download(hospital, fake, tmp_path):
    board, rollout_id = healthy_on_1_1(hospital, fake, tmp_path)
    set_floor(BOARD, "1.1.0", hospital.keys, hospital.api)  # 1.0.0 is known bad: nothing below 1.1.0 any more
    roll_back(hospital, rollout_id)

    system, channel = board.agent()
    assert channel.poll() is None and system.step() == "rejected"
    system_dir = board.dir / "ota" / "system"
    assert not any(p.suffix in (".part", ".raucb") for p in system_dir.rglob("*")), "nothing downloaded"
    assert len(fake.calls("install")) == 1 and board.reboots == ["tryboot"] and fake.release_version() == "1.1.0"
    assert system.step() == "idle", "and not taken again"
    device = hospital.wait_for(lambda: (d := hospital.rollout(rollout_id)["devices"][0])["status"] == "failed" and d,
                               "the server to show the refusal")  # fmt: skip
    assert (device["reason"], device["detail"]) == ("below_signed_floor", "a rollback to 1.0.0 is below 1.1.0, the"
                                                    " lowest wardsight-rpi5 version the hospital signed")  # fmt: skip
    assert device["explain"] == (
        "failed: the version is below the hospital's signed floor for this board (a rollback"
        " to 1.0.0 is below 1.1.0, the lowest wardsight-rpi5 version the hospital signed)"
    )
