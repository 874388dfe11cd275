"""systemd notifications: the client against a real AF_UNIX datagram socket, and the agent on the demo clip
saying READY=1, pinging the watchdog from its frame loop (and not while its camera hangs) and STOPPING=1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from firmware.identity import IdentityStore
from firmware.runtime import DeviceRuntime
from firmware.sdnotify import Notifier, socket_address, watchdog_interval
from firmware.sources import CapturedFrame, FrameSource
from fleet.cli import create_token
from fleet.config import ServerConfig
from fleet.server import BackgroundServer
from wardsight.bundle import Bundle
from wardsight.device_config import DeviceConfig


class Listener:
    """What systemd does with $NOTIFY_SOCKET: a datagram socket that collects messages."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(10)

    def next(self) -> str:
        return self.sock.recv(4096).decode()

    def drain(self) -> list[str]:
        """Every message waiting now (none arrive while this runs in the tests that use it)."""
        self.sock.setblocking(False)
        out = []
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return out
        finally:
            self.sock.settimeout(10)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(tmp_path):
    path = tmp_path / "notify.sock"
    got = Listener(str(path))
    yield got, str(path)
    got.close()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_addresses_and_watchdog_settings():
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abstract") == "\0abstract"
    assert socket_address("") is None and socket_address("relative") is None and socket_address("@") is None
    assert socket_address("vsock:2:1234") is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 5) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "5"}, 5) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "6"}, 5) is None  # someone else's
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}, 5) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 5) is None
    assert watchdog_interval({}, 5) is None


def test_ready_status_and_stopping_reach_the_socket(listener):
    got, path = listener
    notify = Notifier({"NOTIFY_SOCKET": path})
    assert notify.enabled and notify.watchdog is None
    assert notify.ready("running movenet\non cpu")
    assert got.next() == "READY=1\nSTATUS=running movenet on cpu"  # a status is one line
    assert notify.status("busy")
    assert got.next() == "STATUS=busy"
    assert notify.stopping()
    assert got.next() == "STOPPING=1"
    notify.close()


def test_an_abstract_socket(tmp_path):
    name = f"wardsight-test-{uuid.uuid4().hex}"
    got = Listener("\0" + name)
    try:
        notify = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notify.ready()
        assert got.next() == "READY=1"
    finally:
        got.close()


def test_watchdog_pings_at_most_every_half_period(listener):
    got, path = listener
    clock = Clock()
    notify = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "42"}, pid=42, clock=clock)
    assert notify.watchdog == 5.0
    sent = []
    for step in (0.0, 1.0, 4.9, 5.0, 6.0, 9.9, 10.0):  # seconds after the first frame
        clock.now = 100.0 + step
        if notify.tick(lambda step=step: f"{step} s"):
            sent.append(step)
    assert sent == [0.0, 5.0, 10.0]
    assert got.drain() == ["WATCHDOG=1\nSTATUS=0.0 s", "WATCHDOG=1\nSTATUS=5.0 s", "WATCHDOG=1\nSTATUS=10.0 s"]


def test_a_watchdog_meant_for_another_process_is_not_pinged_but_status_still_goes(listener):
    got, path = listener
    clock = Clock()
    notify = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "7"}, pid=42, clock=clock)
    assert notify.watchdog is None
    assert notify.tick(lambda: "ok")
    clock.now += 29
    assert not notify.tick(lambda: "ok")  # status refreshes every 30 s without a watchdog
    clock.now += 1
    assert notify.tick(lambda: "ok")
    assert got.drain() == ["STATUS=ok", "STATUS=ok"]


def test_without_systemd_everything_is_a_no_op(tmp_path):
    notify = Notifier({})
    assert not notify.enabled
    assert not notify.ready("x") and not notify.tick(lambda: "x") and not notify.stopping()


def test_a_vanished_socket_is_reported_once_and_never_raises(tmp_path, caplog):
    path = tmp_path / "gone.sock"
    notify = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2"}, clock=Clock())
    for _ in range(5):
        assert notify.send("WATCHDOG=1") is False
    assert sum("cannot notify systemd" in r.getMessage() for r in caplog.records) == 1


# ---- the agent on the demo clip ---------------------------------------------------------------------------------


class StallAfter(FrameSource):
    """The real source for ``frames`` frames, then a camera that hangs in read() until released."""

    def __init__(self, inner: FrameSource, frames: int) -> None:
        super().__init__()
        self.inner, self.left = inner, frames
        self.stats = inner.stats
        self.stalled, self.release = threading.Event(), threading.Event()

    def _capture(self) -> CapturedFrame | None:
        raise AssertionError("read() is overridden")

    def read(self) -> CapturedFrame | None:
        if self.left == 0:
            self.stalled.set()
            self.release.wait(120)
            return None  # then the source ends
        self.left -= 1
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    config = ServerConfig(port=0, database=tmp_path_factory.mktemp("fleet") / "fleet.db")
    server = BackgroundServer(config).start()
    yield server, config
    server.stop()


def test_the_agent_is_ready_pings_from_its_frame_loop_and_stops_pinging_when_the_camera_hangs(
    fleet, data_dir_with_models: Path, listener
):
    server, config = fleet
    got, path = listener
    data = data_dir_with_models
    IdentityStore(data / "device").enroll(
        Bundle(server.url, create_token(config, "3B-12", 600), server.ca_pem), "cam-1"
    )
    device = DeviceConfig.model_validate(
        {
            "threads": 1,
            "heartbeat_seconds": 0.2,
            "source": {"kind": "file", "realtime": False, "loop": True},
            "reboot_command": ["sh", "-c", "exit 3"],
        }
    )
    # A watchdog of 1 microsecond: every frame through the loop is due a ping, so pings count frames.
    environ = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1", "WATCHDOG_PID": str(os.getpid())}
    runtime = DeviceRuntime(device, data, environ=environ)
    assert runtime.reboot_command == ("sh", "-c", "exit 3")  # the configuration's, without a command-line override
    stall = StallAfter(runtime.source, 4)
    runtime.source = runtime.agent.source = stall
    runtime.start()
    results = []
    thread = threading.Thread(target=lambda: results.append(runtime.run()), daemon=True)
    thread.start()
    try:
        assert stall.stalled.wait(120), "the agent never read five frames"
        beats = runtime.services[0]
        before = beats.sent
        deadline = time.monotonic() + 60  # the agent's other threads go on while the camera hangs
        while beats.sent < before + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert beats.sent >= before + 2, "no heartbeats while the camera hung"
        messages = got.drain()
    finally:
        stall.release.set()
        thread.join(60)
    assert messages[0].startswith("READY=1\nSTATUS=running movenet-multipose")
    pings = [m for m in messages if m.startswith("WATCHDOG=1")]
    assert len(pings) == 4  # one per frame, none while the camera hangs
    assert all("frames processed" in p for p in pings)
    assert len(messages) == 5
    assert results and results[0].agent.processed + results[0].agent.failed == 4
    after = got.drain()
    assert after == ["STOPPING=1\nSTATUS=stopping"]


def test_the_agent_process_under_a_notify_socket_is_ready_pings_and_stops_on_sigterm(
    fleet, data_dir_with_models: Path, listener
):
    """``wardsight device run`` as systemd runs it: the environment's socket, SIGTERM to stop."""
    server, config = fleet
    got, path = listener
    data = data_dir_with_models
    token = create_token(config, "3B-12", 600)
    IdentityStore(data / "device").enroll(Bundle(server.url, token, server.ca_pem), "cam-1")
    (data / "device.toml").write_text('threads = 1\n[source]\nkind = "file"\nrealtime = false\nloop = true\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARDSIGHT_", "NOTIFY_", "WATCHDOG_"))}
    env.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "wardsight", "--data-dir", str(data), "device", "run"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        got.sock.settimeout(120)
        assert got.next().startswith("READY=1\nSTATUS=running")
        assert got.next().startswith("WATCHDOG=1\nSTATUS=")  # from the frame loop
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGTERM, err.decode()[-2000:]  # stopped cleanly, then died of the signal
    rest = got.drain()
    assert rest[-1] == "STOPPING=1\nSTATUS=stopping"  # a clean stop: the services and the camera closed first
    assert all(m.startswith("WATCHDOG=1") for m in rest[:-1])
    assert b"frames:" in out
