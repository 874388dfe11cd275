"""OTA model updates on the device, against the real fleet server (TLS, device auth, TUF repository, rollouts).

The hospital's side is played by :class:`Publisher`: offline root and targets keys made here, packages
published through the server's own repository code (``fleet.ota.library`` checks and stores the package,
``Repository.accept_targets`` checks the signed targets and signs snapshot and timestamp with the server's
online keys). Rollouts are created with ``fleet.ota.rollouts.service.create_rollout``. The device is enrolled with
the real bundle flow and talks to the server through ``FleetClient``; models are the real MoveNet (good)
and a truncated copy of it (bad), loaded by LiteRT.
"""

from __future__ import annotations

import hashlib
import http.server
import itertools
import shutil
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Metadata, Root, TargetFile, Targets

from accelerators.catalog import MOVENET_MULTIPOSE
from accelerators.cpu import CpuPoseBackend
from firmware.agent import Agent
from firmware.identity import IdentityStore, tls_context
from firmware.ota import selftest
from firmware.ota.boot import open_model, slot_backend
from firmware.ota.channel import FleetChannel
from firmware.ota.download import DownloadError, TargetDownloader
from firmware.ota.health import FrameCounts, HealthCheck
from firmware.ota.manager import OtaManager, OtaSettings
from firmware.ota.slots import SlotStore
from firmware.ota.slotstate import Choice
from firmware.ota.tufclient import TufClient, TufError
from firmware.sources import VideoFileSource
from firmware.transport import FleetClient
from fleet.cli import create_token
from fleet.config import ServerConfig
from fleet.ota.library import package as library
from fleet.ota.repository.files import open_repository
from fleet.ota.repository.keys import signer_for
from fleet.ota.rollouts import service as rollouts
from fleet.ota.rollouts import store as rollout_store
from fleet.ota.rollouts.bodies import NewRollout
from fleet.server import BackgroundServer
from fleet.store.db import FleetDB
from signing.metadata import target_info
from tests.device.helpers import make_package
from wardsight import modelpkg, wire
from wardsight.bundle import Bundle
from wardsight.footage import DEMO_FOOTAGE

MODEL = MOVENET_MULTIPOSE.name
_rooms = itertools.count(1)


# ---- the hospital's side and the server ------------------------------------------------------------------


def truncated_copy(model: Path, dest: Path) -> Path:
    dest.write_bytes(model.read_bytes()[: model.stat().st_size // 3])
    return dest


class Publisher:
    """Offline root and targets keys; publishes through the server's repository and model library code."""

    def __init__(self, config: ServerConfig) -> None:
        self.repo = open_repository(config)
        self.root_key = signer_for(wire.generate_key())
        self.targets_key = signer_for(wire.generate_key())
        self.targets_version = 0
        self.listed: dict[str, TargetFile] = {}
        root = Root(expires=self.now() + timedelta(days=365), consistent_snapshot=False)
        for role, signer in (
            ("root", self.root_key),
            ("targets", self.targets_key),
            ("snapshot", self.repo.keys.snapshot),
            ("timestamp", self.repo.keys.timestamp),
        ):
            root.add_key(signer.public_key, role)
        md = Metadata(root)
        md.sign(self.root_key)
        self.repo.accept_root(md.to_bytes(), self._signed_targets(), self.now())

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    @property
    def root_text(self) -> str:
        data = self.repo.root_bytes()
        assert data is not None
        return data.decode()

    def _signed_targets(self) -> bytes:
        self.targets_version += 1
        targets = Targets(version=self.targets_version, expires=self.now() + timedelta(days=30))
        targets.targets = dict(self.listed)
        md = Metadata(targets)
        md.sign(self.targets_key)
        return md.to_bytes()

    def publish(self, package: Path) -> str:
        """Upload (as the library stores it) and sign into the targets; returns the TUF target path."""
        incoming = self.repo.directory / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        tmp = incoming / f"upload-{package.name}"
        shutil.copyfile(package, tmp)
        info = library.inspect_package(tmp)
        library.install_package(self.repo, tmp, info)
        signed = target_info(package)  # as 'wardsight ota publish' signs it: with the custom list of builds
        assert signed.path == info.target and signed.length == info.length
        self.listed[info.target] = signed
        self.repo.accept_targets(self._signed_targets(), self.now())
        return info.target


@dataclass
class Device:
    dir: Path
    device_id: str
    room: str
    client: FleetClient
    server_url: str
    context: Any

    @property
    def ota_dir(self) -> Path:
        return self.dir / "ota"

    def slots(self, max_trial_boots: int = 2) -> SlotStore:
        return SlotStore(self.dir / "models" / "slots", max_trial_boots=max_trial_boots)

    def tuf(self, reference_time: Callable[[], float] | None = None) -> TufClient:
        return TufClient(self.ota_dir, self.server_url, self.context, timeout=10.0, reference_time=reference_time)

    def downloader(self, chunk_size: int = 64 * 1024) -> TargetDownloader:
        return TargetDownloader(self.ota_dir, self.context, timeout=10.0, chunk_size=chunk_size)


class Fleet:
    def __init__(self, root: Path) -> None:
        self.config = ServerConfig(port=0, database=root / "server" / "fleet.db")
        self.server = BackgroundServer(self.config).start()
        self.publisher = Publisher(self.config)

    def stop(self) -> None:
        self.server.stop()

    def enroll(self, directory: Path) -> Device:
        room = f"room-{next(_rooms)}"
        bundle = Bundle(
            self.server.url,
            create_token(self.config, room, 600),
            self.server.ca_pem,
            tuf_root=self.publisher.root_text,
        )
        store = IdentityStore(directory)
        identity, _ = store.enroll(bundle, "cam-1")
        # What enrollment must do with the bundle's TUF root (not yet in IdentityStore.enroll).
        (directory / "ota").mkdir(parents=True, exist_ok=True)
        assert bundle.tuf_root is not None
        (directory / "ota" / "root.json").write_text(bundle.tuf_root)
        _, client = store.client(timeout=10.0)
        context = tls_context(identity.server_url, store.ca_pem())
        return Device(directory, identity.device_id, room, client, identity.server_url, context)

    def rollout(
        self, device: Device, version: str, window: dict[str, str] | None = None, previous: str | None = None
    ) -> str:
        body = NewRollout.model_validate(
            {
                "model": MODEL,
                "version": version,
                "selector": {"room": device.room},
                "groups": [{"count": 1}],
                "success_threshold": 1.0,
                "error_threshold": {"count": 0},
                "in_progress_timeout_s": 3600,
                "window": window,
                "previous_version": previous,
            }
        )
        db = FleetDB(self.config.database)
        try:
            view = rollouts.create_rollout(db.db, body, actor="test", now=time.time())
        finally:
            db.close()
        return str(view["id"])

    def command(self, rollout_id: str, command: str) -> str:
        db = FleetDB(self.config.database)
        try:
            view = rollouts.apply_command(db.db, rollout_id, command, actor="test", now=time.time())  # type: ignore[arg-type]
        finally:
            db.close()
        return str(view["status"])

    def reports(self, rollout_id: str) -> list[tuple[str, str | None]]:
        db = FleetDB(self.config.database)
        try:
            rows = db.db.query(
                "SELECT state, reason FROM rollout_reports WHERE rollout_id = ? ORDER BY id", [rollout_id]
            )
            return [(r["state"], r["reason"]) for r in rows]
        finally:
            db.close()

    def versions(self, rollout_id: str) -> list[tuple[str, str]]:
        db = FleetDB(self.config.database)
        try:
            rows = db.db.query(
                "SELECT state, version FROM rollout_reports WHERE rollout_id = ? ORDER BY id", [rollout_id]
            )
            return [(r["state"], r["version"]) for r in rows]
        finally:
            db.close()

    def command_status(self, rollout_id: str) -> str:
        db = FleetDB(self.config.database)
        try:
            rollouts.tick_all(db, time.time())
            row = rollout_store.load(db.db, rollout_id)
            assert row is not None
            return rollout_store.decode(row)[1].status
        finally:
            db.close()

    def device_status(self, rollout_id: str, device: Device) -> tuple[str, str | None]:
        db = FleetDB(self.config.database)
        try:
            rollouts.tick_all(db, time.time())
            row = rollout_store.load(db.db, rollout_id)
            assert row is not None
            _, state = rollout_store.decode(row)
        finally:
            db.close()
        dev = state.devices[device.device_id]
        return dev.status, dev.reason


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("ota-fleet"))
    try:
        yield fleet
    finally:
        fleet.stop()


def no_restart(reason: str) -> None:
    raise AssertionError(f"unexpected restart request: {reason}")


def manager_for(
    device: Device,
    slots: SlotStore,
    running: Choice,
    *,
    restart: Callable[[str], None] = no_restart,
    frames: Callable[[], FrameCounts] | None = None,
    server_now: Callable[[], float] | None = None,
    **settings: Any,
) -> OtaManager:
    return OtaManager(
        slots,
        FleetChannel(device.client),
        device.tuf(reference_time=device.client.server_now),
        device.downloader(),
        running=running,
        restart=restart,
        frames=frames,
        server_now=server_now or device.client.server_now,
        settings=OtaSettings(threads=1, **settings),
    )


# ---- self-test -------------------------------------------------------------------------------------------


def test_selftest_passes_the_real_model_and_fails_broken_ones(movenet_path, tmp_path):
    build = selftest.factory_build()
    good = selftest.run_selftest(movenet_path, build, timeout=60)  # in its own process, as the manager runs it
    assert good.ok and good.reason == "ok", good
    truncated = truncated_copy(movenet_path, tmp_path / "truncated.tflite")
    bad = selftest.check_model(truncated, build)
    assert (bad.ok, bad.reason) == (False, "load_failed")
    (tmp_path / "noise.tflite").write_bytes(hashlib.sha256(b"x").digest() * 4096)
    assert selftest.check_model(tmp_path / "noise.tflite", build).ok is False
    hailo = build.model_copy(update={"backend": "hailo", "runtime": "hailort"})
    assert selftest.check_model(movenet_path, hailo).reason == "unsupported"
    # The time bound: an inference slower than the limit fails (the limit is absurdly low here).
    slow = selftest.check_model(movenet_path, build, max_invoke_seconds=1e-6)
    assert (slow.ok, slow.reason) == (False, "too_slow")
    # A self-test that does not finish in time is killed and fails.
    hung = selftest.run_selftest(movenet_path, build, timeout=0.05)
    assert (hung.ok, hung.reason) == (False, "timeout")


# ---- TUF and the resumable download ------------------------------------------------------------------------


class Interrupted(Exception):
    pass


def test_download_resumes_from_the_partial_file_and_verifies_by_tuf(fleet, movenet_path, tmp_path):
    package = make_package(tmp_path / "pkg", "1.1", movenet_path)
    target = fleet.publisher.publish(package)
    device = fleet.enroll(tmp_path / "device")
    info, url = device.tuf().targetinfo(target)
    assert (info.length, info.hashes["sha256"]) == (package.stat().st_size, modelpkg.describe_file(package)[0])
    assert url == f"{device.server_url}/tuf/targets/{target}"
    # Refreshing twice uses the cached metadata and a fresh Updater each time.
    assert device.tuf().targetinfo(target)[0] == info

    downloader = device.downloader()

    def cut_at_half(done: int, total: int) -> None:
        if done >= total // 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        downloader.download(info, url, cut_at_half)
    part, final = downloader.paths(info)
    have = part.stat().st_size
    assert info.length // 2 <= have < info.length and not final.exists()
    assert part.read_bytes() == package.read_bytes()[:have]
    part_path, resumed_from, fetched = downloader.download(info, url)
    assert (resumed_from, fetched) == (have, info.length - have)  # a Range request: only the rest came
    done = downloader.verify(info, part_path)
    assert done == final and done.read_bytes() == package.read_bytes() and not part.exists()
    assert downloader.verified(info) == final

    # A partial file that went bad (flipped byte) is caught by TUF's hashes, deleted, and downloaded afresh.
    downloader.discard(info)
    with pytest.raises(Interrupted):
        downloader.download(info, url, cut_at_half)
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    downloader.download(info, url)
    with pytest.raises(DownloadError) as err:
        downloader.verify(info, part)
    assert err.value.code == "hash_mismatch" and not part.exists()
    assert downloader.fetch(info, url).resumed_from == 0
    assert downloader.verified(info) == final


def test_tuf_refuses_what_the_trusted_root_does_not_sign(fleet, movenet_path, tmp_path):
    target = fleet.publisher.publish(make_package(tmp_path / "pkg", "1.2", movenet_path))
    device = fleet.enroll(tmp_path / "device")
    with pytest.raises(TufError) as err:
        device.tuf().targetinfo("models/movenet-multipose/9.9.wsm")
    assert err.value.code == "target_unknown"
    # Metadata judged by a clock 400 days on: the timestamp, snapshot and targets have expired.
    with pytest.raises(TufError) as err:
        device.tuf(reference_time=lambda: time.time() + 400 * 86400).targetinfo(target)
    assert err.value.code == "tuf_error" and "Expired" in str(err.value)
    # A device that trusts another repository's root refuses this server's metadata.
    other = tmp_path / "other"
    stranger = Root(expires=datetime.now(UTC) + timedelta(days=30), consistent_snapshot=False)
    key = signer_for(wire.generate_key())
    for role in ("root", "targets", "snapshot", "timestamp"):
        stranger.add_key(key.public_key, role)
    md = Metadata(stranger)
    md.sign(key)
    other.mkdir()
    (other / "root.json").write_bytes(md.to_bytes())
    foreign = TufClient(other, device.server_url, device.context, timeout=10.0)
    with pytest.raises(TufError) as err:
        foreign.targetinfo(target)
    assert err.value.code == "tuf_error"
    # No root at all: the enrollment bundle carried none.
    with pytest.raises(TufError) as err:
        TufClient(tmp_path / "empty", device.server_url, device.context).targetinfo(target)
    assert err.value.code == "no_tuf_root"


class _OddServer(http.server.BaseHTTPRequestHandler):
    """/endless: 200 with bytes for ever; /norange: ignores Range; /badrange: a Content-Range from 0."""

    body = bytes(range(256)) * 64  # 16 KiB

    def do_GET(self) -> None:
        if self.path == "/endless":
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(self.body)
            except (BrokenPipeError, ConnectionResetError):
                return
        if self.path == "/badrange":
            self.send_response(206)
            self.send_header("Content-Range", f"bytes 0-{len(self.body) - 1}/{len(self.body)}")
            self.end_headers()
            self.wfile.write(self.body)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def odd_server() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _OddServer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_download_never_reads_past_the_signed_length_and_checks_ranges(odd_server, tmp_path):
    body = _OddServer.body
    downloader = TargetDownloader(tmp_path / "ota", None, timeout=5.0, chunk_size=4096)
    info = TargetFile(5000, {"sha256": hashlib.sha256(body[:5000]).hexdigest()}, "models/x/1.wsm")
    got = downloader.fetch(info, odd_server + "/endless")  # endless data: exactly the signed length is read
    assert got.fetched == 5000 and got.path.read_bytes() == body[:5000]

    whole = TargetFile(len(body), {"sha256": hashlib.sha256(body).hexdigest()}, "models/x/2.wsm")
    part, _ = downloader.paths(whole)
    part.write_bytes(body[:1000])
    got = downloader.fetch(whole, odd_server + "/norange")  # a server that ignores Range: start over
    assert (got.resumed_from, got.fetched) == (1000, len(body)) and got.path.read_bytes() == body

    third = TargetFile(len(body), {"sha256": hashlib.sha256(body).hexdigest()}, "models/x/3.wsm")
    downloader.discard()
    part, _ = downloader.paths(third)
    part.write_bytes(body[:1000])
    with pytest.raises(DownloadError, match="Content-Range"):
        downloader.fetch(third, odd_server + "/badrange")
    assert part.read_bytes() == body[:1000]  # nothing appended from the wrong offset


# ---- the manager, end to end -------------------------------------------------------------------------------


class RunningAgent:
    """The real agent loop on the demo clip with the backend a start opened; its counts feed the health check."""

    def __init__(self, backend: CpuPoseBackend, clip: Path) -> None:
        self.source = VideoFileSource(clip, realtime=False, loop=True)
        self.agent = Agent(self.source, backend, [], lambda event: None)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.agent.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def counts(self) -> FrameCounts:
        return FrameCounts(self.source.stats.captured, self.agent.stats.processed, self.agent.stats.failed)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.source.close()


def start(device: Device, movenet_path: Path, **kw: Any) -> tuple[CpuPoseBackend, Choice, SlotStore]:
    """What the agent does at start: choose and open its model (slot, else the factory MoveNet)."""
    slots = device.slots(**kw)
    backend, choice = open_model(
        slots, lambda c: slot_backend(c, threads=1), lambda: CpuPoseBackend(movenet_path, num_threads=1)
    )
    return backend, choice, slots


def run_until(manager: OtaManager, done: set[str], timeout: float = 60.0) -> list[str]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = manager.step()
        seen.append(status)
        if status in done:
            return seen
        time.sleep(0.05)
    pytest.fail(f"manager never reached {done}: {seen[-10:]}")


def test_a_good_model_is_installed_switched_to_and_confirmed(fleet, movenet_path, model_store, tmp_path):
    target = fleet.publisher.publish(make_package(tmp_path / "pkg", "2.0", movenet_path))
    device = fleet.enroll(tmp_path / "device")
    rollout = fleet.rollout(device, "2.0")
    backend, choice, slots = start(device, movenet_path)
    assert choice.slot is None  # the factory model
    restarts: list[str] = []
    manager = manager_for(device, slots, choice, restart=restarts.append)
    assert manager.step() == "activating" and restarts == ["activate"]
    backend.close()
    assert fleet.reports(rollout) == [("downloading", None), ("downloaded", None), ("installed", None)]
    state = slots.state
    assert state.trial is not None and state.active is None and state.slots["a"] is not None
    assert state.slots["a"].version == "2.0"
    assert not any((device.ota_dir / "verified").iterdir())  # the package is gone once installed
    assert target.endswith("/2.0.wsm")

    # The restart: the new model on trial, run by the real agent on the demo clip until it is healthy.
    backend, choice, slots = start(device, movenet_path)
    assert (choice.slot, choice.version, choice.trial) == ("a", "2.0", True)
    agent = RunningAgent(backend, model_store.path(DEMO_FOOTAGE))
    try:
        manager = manager_for(device, slots, choice, frames=agent.counts, health_frames=5, health_seconds=60)
        assert run_until(manager, {"confirmed", "rolled_back"})[-1] == "confirmed"
    finally:
        agent.close()
    assert agent.agent.stats.processed >= 5 and agent.agent.stats.failed == 0
    assert (slots.state.active, slots.state.previous, slots.state.trial) == ("a", None, None)
    assert fleet.reports(rollout)[-2:] == [("activated", None), ("healthy", None)]
    assert fleet.device_status(rollout, device) == ("healthy", None)
    assert manager.step() in ("idle", "current")  # nothing more to do
    backend, choice, _ = start(device, movenet_path)
    assert (choice.slot, choice.trial) == ("a", False)
    backend.close()


def test_a_model_that_fails_its_self_test_is_never_activated(fleet, movenet_path, tmp_path):
    bad = truncated_copy(movenet_path, tmp_path / "bad.tflite")
    fleet.publisher.publish(make_package(tmp_path / "pkg", "3.0", bad))
    device = fleet.enroll(tmp_path / "device")
    rollout = fleet.rollout(device, "3.0")
    backend, choice, slots = start(device, movenet_path)
    manager = manager_for(device, slots, choice)
    assert manager.step() == "rejected"
    state = slots.state
    assert state.trial is None and state.active is None and state.slots == {"a": None, "b": None}
    assert not any((slots.root / "a").iterdir())  # the failed build was not kept
    assert state.last_failure is not None and state.last_failure.reason == "self_test_failed"
    assert fleet.reports(rollout)[-1] == ("rejected", "self_test_failed")
    assert slots.pending_reports() == []
    assert fleet.device_status(rollout, device) == ("rejected", "self_test_failed")
    assert manager.step() in ("idle", "rejected")  # not tried again
    # The agent never left the factory model; it still runs.
    assert backend.detect(selftest.test_frame()) is not None
    backend.close()
    assert start(device, movenet_path)[1].slot is None


def test_a_missed_health_check_switches_back_and_is_reported(fleet, movenet_path, model_store, tmp_path):
    fleet.publisher.publish(make_package(tmp_path / "pkg", "4.0", movenet_path))
    device = fleet.enroll(tmp_path / "device")
    rollout = fleet.rollout(device, "4.0")
    backend, choice, slots = start(device, movenet_path)
    manager_for(device, slots, choice, restart=lambda reason: None).step()
    backend.close()
    backend, choice, slots = start(device, movenet_path)
    assert choice.trial
    agent = RunningAgent(backend, model_store.path(DEMO_FOOTAGE))
    restarts: list[str] = []
    try:
        # The health check asks for more frames than the agent can process in its time bound.
        manager = manager_for(
            device, slots, choice, restart=restarts.append, frames=agent.counts, health_frames=10**6, health_seconds=1
        )
        assert run_until(manager, {"confirmed", "rolled_back"})[-1] == "rolled_back"
    finally:
        agent.close()
        backend.close()
    assert restarts == ["rollback"] and agent.agent.stats.processed > 0
    assert fleet.reports(rollout)[-2:] == [("activated", None), ("rolled_back", "health_check_missed")]
    assert fleet.device_status(rollout, device) == ("rolled_back", "health_check_missed")
    backend, choice, _ = start(device, movenet_path)
    assert choice.slot is None and not choice.trial  # the model it ran before: the factory one
    backend.close()


def test_activation_waits_for_the_maintenance_window(fleet, movenet_path, tmp_path):
    fleet.publisher.publish(make_package(tmp_path / "pkg", "5.0", movenet_path))
    device = fleet.enroll(tmp_path / "device")
    now = datetime.now(UTC)
    opens, closes = now + timedelta(hours=2), now + timedelta(hours=3)
    rollout = fleet.rollout(device, "5.0", {"start": opens.strftime("%H:%M"), "end": closes.strftime("%H:%M")})
    backend, choice, slots = start(device, movenet_path)
    restarts: list[str] = []
    clock = {"offset": 0.0}
    manager = manager_for(
        device, slots, choice, restart=restarts.append, server_now=lambda: device.client.server_now() + clock["offset"]
    )
    assert manager.step() == "waiting"  # downloaded, installed and self-tested now; not switched
    assert slots.state.trial is None and slots.state.slots["a"] is not None and restarts == []
    assert manager.last_download is not None
    assert fleet.reports(rollout)[-2:] == [("installed", None), ("deferred", "outside_window")]
    assert manager.step() == "waiting"
    clock["offset"] = 2.5 * 3600  # inside the window by the server's clock
    manager.last_download = None
    assert manager.step() == "activating" and restarts == ["activate"]
    assert manager.last_download is None  # nothing fetched again
    assert slots.state.trial is not None and slots.state.trial.slot == "a"
    backend.close()


# ---- starting the agent's model, and the health check ------------------------------------------------------


def test_a_slot_that_fails_to_load_at_start_falls_back_and_is_reported(movenet_path, tmp_path):
    """The self-test normally stops such a model; if the runtime still refuses it at start, the start goes on."""
    bad = truncated_copy(movenet_path, tmp_path / "bad.tflite")
    package = make_package(tmp_path / "pkg", "7.0", bad)
    manifest = modelpkg.read_manifest(package)
    build = manifest.build_for("cpu")
    slots = SlotStore(tmp_path / "slots")
    slots.prepare("a")
    slots.write("a", package, manifest, build)
    slots.commit("a", manifest, build, "ro-x")
    slots.begin_trial("a", "ro-x")
    backend, choice = open_model(
        SlotStore(tmp_path / "slots"),
        lambda c: slot_backend(c, threads=1),
        lambda: CpuPoseBackend(movenet_path, num_threads=1),
    )
    assert choice.slot is None and backend.detect(selftest.test_frame()) is not None
    backend.close()
    state = SlotStore(tmp_path / "slots").state
    assert state.trial is None
    assert [(r.state, r.reason) for r in state.reports] == [("activated", None), ("rolled_back", "load_failed")]


def test_health_check_verdicts():
    now = {"t": 0.0}
    counts = {"c": FrameCounts(100, 90, 1)}  # what the agent did before the trial's check started

    def check(**kw: Any) -> HealthCheck:
        health = HealthCheck(lambda: counts["c"], need=10, within=30.0, max_failed=2, clock=lambda: now["t"], **kw)
        health.start()
        return health

    health = check()
    assert health.verdict() is None
    counts["c"] = FrameCounts(110, 99, 1)
    now["t"] = 29.0
    assert health.verdict() is None  # 9 of 10 frames, within the bound
    counts["c"] = FrameCounts(111, 100, 1)
    assert health.verdict() == "ok"

    health = check()
    counts["c"] = FrameCounts(120, 100, 4)
    assert health.verdict() == "inference_failed"  # 3 failed inferences > 2

    now["t"], counts["c"] = 0.0, FrameCounts(0, 0, 0)
    health = check()
    now["t"] = 31.0
    assert health.verdict() is None  # the camera gave nothing: not the model's fault, yet
    counts["c"] = FrameCounts(1, 0, 0)
    assert health.verdict() == "health_check_missed"  # a frame came and the model never finished it
    counts["c"] = FrameCounts(0, 0, 0)
    now["t"] = 301.0
    assert health.verdict() == "health_check_missed"  # no frames at all for 10x the bound


def test_an_offer_whose_target_is_not_signed_is_retried_then_reported(fleet, movenet_path, tmp_path):
    device = fleet.enroll(tmp_path / "device")
    rollout = fleet.rollout(device, "8.0")  # no package 8.0 was ever published
    backend, choice, slots = start(device, movenet_path)
    backend.close()
    manager = manager_for(device, slots, choice, max_attempts=2)
    assert manager.step() == "retry"
    assert fleet.reports(rollout) == []  # nothing final said about one failure
    assert manager.step() == "rejected"
    assert fleet.reports(rollout) == [("failed", "target_unknown")]
    assert slots.state.trial is None and slots.state.slots == {"a": None, "b": None}


# ---- the backend the device actually runs --------------------------------------------------------------------


def test_a_device_on_an_accelerator_rejects_a_package_without_its_build_once(fleet, movenet_path, tmp_path):
    fleet.publisher.publish(make_package(tmp_path / "pkg", "4.0", movenet_path))  # a CPU build only
    device = fleet.enroll(tmp_path / "device")
    rollout = fleet.rollout(device, "4.0")
    backend, choice, slots = start(device, movenet_path)
    backend.close()
    manager = manager_for(device, slots, choice, backend="hailo", hardware="hailo8l")
    assert manager.step() == "rejected"
    assert manager.step() == "rejected"  # not tried again, not reported again
    assert fleet.reports(rollout) == [("rejected", "no_build_for_backend")]
    assert not list(device.ota_dir.rglob("*.wsm*"))  # known from the signed metadata: nothing was downloaded
    assert slots.state.slots == {"a": None, "b": None}


def test_a_default_device_boots_its_trial_on_the_cpu(fleet, movenet_path, model_store, tmp_path):
    """accelerator.kind = auto with no accelerator present runs the CPU, so the slot on trial is what starts."""
    from firmware.assembly import open_pose_model
    from wardsight.device_config import DeviceConfig

    fleet.publisher.publish(make_package(tmp_path / "pkg", "4.1", movenet_path))
    device = fleet.enroll(tmp_path / "device")
    fleet.rollout(device, "4.1")
    backend, choice, slots = start(device, movenet_path)
    backend.close()
    restarts: list[str] = []
    assert manager_for(device, slots, choice, restart=restarts.append).step() == "activating"
    config = DeviceConfig()
    assert config.accelerator.kind == "auto"
    pose = open_pose_model(config, model_store, slots, ota_root=True)
    try:
        assert (pose.kind, pose.updates, pose.choice.trial, pose.choice.version) == ("cpu", "ready", True, "4.1")
    finally:
        pose.backend.close()


def test_a_trial_this_start_did_not_boot_is_ended_once_not_begun_again(fleet, movenet_path, tmp_path):
    """The bug from the field: a start that ran the factory model while a slot was on trial, after which the
    manager failed every minute with "slot a is already on trial"."""
    fleet.publisher.publish(make_package(tmp_path / "pkg", "4.2", movenet_path))
    device = fleet.enroll(tmp_path / "device")
    rollout = fleet.rollout(device, "4.2")
    backend, choice, slots = start(device, movenet_path)
    backend.close()
    assert manager_for(device, slots, choice, restart=lambda reason: None).step() == "activating"
    assert slots.state.trial is not None
    again = manager_for(device, slots, Choice(None))  # the factory model ran: the trial was not booted
    assert again.step() == "rejected"
    assert again.step() == "rejected"  # once: the offer is not tried again, nothing raises
    assert slots.state.trial is None
    assert fleet.reports(rollout)[-1] == ("rolled_back", "not_booted")


class BrokenChannel:
    """An update channel (the UpdateChannel interface) whose every poll fails the same unexpected way."""

    def __init__(self, stop_after: int, manager_stop: Callable[[], None]) -> None:
        self.polls, self.stop_after, self.manager_stop = 0, stop_after, manager_stop

    def poll(self) -> wire.UpdateOffer | None:
        self.polls += 1
        if self.polls >= self.stop_after:
            self.manager_stop()
        raise RuntimeError("the card is read-only")

    def report(self, report: wire.UpdateReport) -> bool:
        return True


def test_the_same_failure_is_logged_once_and_backed_off(fleet, movenet_path, tmp_path, caplog):
    device = fleet.enroll(tmp_path / "device")
    backend, choice, slots = start(device, movenet_path)
    backend.close()
    manager = manager_for(device, slots, choice, retry_seconds=0.01, max_retry_seconds=0.05)
    manager.channel = BrokenChannel(4, manager._stop.set)
    with caplog.at_level("WARNING", logger="wardsight.device.ota"):
        manager.run()
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "4 times in a row" in caplog.text


# ---- back to the model built into the agent ------------------------------------------------------------------


def test_a_roll_back_takes_the_device_back_to_its_built_in_model(fleet, movenet_path, model_store, tmp_path):
    """The most common roll back of all: the first package rolled out, then back to the factory model, which no
    package holds (the offer's target is ``wire.BUILTIN_TARGET``: nothing is fetched)."""
    built_in = MOVENET_MULTIPOSE.version
    fleet.publisher.publish(make_package(tmp_path / "pkg", "6.1", movenet_path))
    device = fleet.enroll(tmp_path / "device")
    rollout = fleet.rollout(device, "6.1", previous=built_in)
    backend, choice, slots = start(device, movenet_path)
    restarts: list[str] = []
    assert manager_for(device, slots, choice, restart=restarts.append).step() == "activating"
    backend.close()
    backend, choice, slots = start(device, movenet_path)
    agent = RunningAgent(backend, model_store.path(DEMO_FOOTAGE))
    try:
        manager = manager_for(device, slots, choice, restart=restarts.append, frames=agent.counts, health_frames=3,
                              health_seconds=60)  # fmt: skip
        assert run_until(manager, {"confirmed", "rolled_back"})[-1] == "confirmed"
        assert fleet.device_status(rollout, device) == ("healthy", None)

        # The operator rolls back: the device switches to its factory model and restarts, as for an activation.
        assert fleet.command(rollout, "rollback") == "rolling_back"
        restarts.clear()
        assert manager.step() == "activating" and restarts == ["activate"]
    finally:
        agent.close()
        backend.close()
    state = slots.state
    assert (state.active, state.previous, state.trial) == (None, "a", None)  # the slot is kept, not active
    assert state.slots["a"] is not None and state.slots["a"].version == "6.1"
    assert not (device.ota_dir / "verified").exists() or not any((device.ota_dir / "verified").iterdir())

    # The restart runs the factory model (not the previous slot) and reports it activated, then healthy.
    backend, choice, slots = start(device, movenet_path)
    try:
        assert choice == Choice(None)
        manager = manager_for(device, slots, choice)
        assert manager.step() in ("idle", "current")
    finally:
        backend.close()
    assert fleet.reports(rollout)[-2:] == [("activated", None), ("healthy", None)]
    assert [v for _, v in fleet.versions(rollout)[-2:]] == [built_in, built_in]
    assert fleet.device_status(rollout, device) == ("rolled_back", None)
    assert fleet.command_status(rollout) == "rolled_back"
    assert slots.state.factory_switch is None and slots.state.completed == rollout
    backend, choice, slots = start(device, movenet_path)  # and every start after it stays there
    backend.close()
    assert choice == Choice(None) and slots.pending_reports() == []


def test_an_agent_from_before_the_marker_finds_no_such_target(fleet, tmp_path):
    """An older agent looks the built-in offer's target up over TUF: not signed, so it reports ``failed``
    (``target_unknown``) after its attempts, as for any unsigned target; it never crashes on it."""
    device = fleet.enroll(tmp_path / "device")
    with pytest.raises(TufError) as caught:
        device.tuf(reference_time=device.client.server_now).targetinfo(wire.BUILTIN_TARGET)
    assert caught.value.code == "target_unknown"


def test_an_offer_of_another_built_in_version_is_rejected(fleet, movenet_path, tmp_path):
    device = fleet.enroll(tmp_path / "device")
    fleet.publisher.publish(make_package(tmp_path / "pkg", "6.2", movenet_path))
    rollout = fleet.rollout(device, "6.2")
    backend, choice, slots = start(device, movenet_path)
    backend.close()
    manager = manager_for(device, slots, choice)
    manager.factory_version = "lightning-fp16-0"  # an agent whose built-in model is not the one offered
    offer = wire.UpdateOffer(rollout_id=rollout, model=MODEL, version="lightning-fp16-1", target=wire.BUILTIN_TARGET)
    assert manager.handle(offer) == "rejected"
    assert slots.state.last_failure is not None and slots.state.last_failure.reason == "builtin_version_unknown"
    assert slots.state.factory_switch is None
