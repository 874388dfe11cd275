"""Maintenance jobs end to end: the real fleet server (TLS, SQLite) and a real agent process on loopback.

The agent is ``python -m wardsight device run`` on the demo clip, kept running by a small supervisor in the
test that does what systemd's ``Restart=always`` with ``RestartPreventExitStatus=76`` does: whenever the
agent exits it is started again, unless it exited after a factory reset. Jobs are created through the
operator API with an admin token (configurations the server cannot show to keep privacy are approved with a
second admin's) and followed through ``GET /api/v1/jobs/{batch_id}``.

One story, in order: jobs made while the device is offline (one runs when it comes back, one expires first
and never runs), set_log_level, self_test, a pushed configuration refused by the device's dry run (the old
one kept), one applied (restart, reported after it), one that fails at start (rolled back at the next
start), restart_agent, reboot (a harmless command that kills the agent, as a reboot would), a replayed job
refused, rotate_key (the agent goes on with the new key) and factory_reset (the device is wiped).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from firmware.exitcodes import FACTORY_RESET_EXIT_CODE, RESTART_EXIT_CODE
from firmware.identity import IdentityStore
from fleet.accounts.service import create_api_token
from fleet.cli import create_token
from fleet.config import ServerConfig
from fleet.jobs.logic import output_problem
from fleet.server import BackgroundServer
from fleet.store.db import FleetDB
from wardsight import wire
from wardsight.bundle import Bundle

DEVICE_TOML = """\
threads = 1
heartbeat_seconds = 1.0
[source]
kind = "file"
realtime = false
loop = true
url = "rtsp://admin:hunter2@cam-3b12.local/live"
[occupancy]
stable_seconds = 0.2
"""


class ServerClock:
    """The server's clock: real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Supervisor:
    """Keeps the agent running like systemd would; each run's output goes to its own files."""

    def __init__(self, logs: Path, args: list[str]) -> None:
        self.logs, self.args = logs, args
        logs.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WARDSIGHT_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.exits: list[int] = []
        self.gave_up = False

    def start(self) -> None:
        self.runs += 1
        with self.err(self.runs).open("wb") as fe, (self.logs / f"agent-{self.runs}.out").open("wb") as fo:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wardsight", *self.args],
                stdout=fo,
                stderr=fe,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )

    def err(self, run: int) -> Path:
        return self.logs / f"agent-{run}.err"

    def check(self) -> None:
        if self.proc is None or self.gave_up:
            return
        code = self.proc.poll()
        if code is None:
            return
        self.exits.append(code)
        if code == 2:  # click's usage error: this agent does not take the options a job runner needs
            pytest.fail("the agent refused its command line (is run_device wired to firmware.jobs?)" + self.tails())
        if self.runs >= 12:
            pytest.fail(f"the agent keeps exiting ({self.exits})" + self.tails())
        if code == FACTORY_RESET_EXIT_CODE:
            self.gave_up = True
            return
        self.start()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stderr(self, run: int | None = None) -> str:
        return self.err(run or self.runs).read_text(errors="replace")

    def tails(self) -> str:
        return "".join(
            f"\n--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.logs.iterdir())
        )

    def stop(self) -> None:
        self.gave_up = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


class Operator:
    """The operator API over HTTPS with the fleet CA, as an admin."""

    def __init__(self, server: BackgroundServer, token: str) -> None:
        self.url, self.token = server.url, token
        self.context = ssl.create_default_context(cadata=server.ca_pem)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw or b"{}")
        except ValueError:
            return status, {"error": raw[:200].decode(errors="replace")}

    def create(self, device_id: str, kind: str, expires_in_s: int = 600, **body: Any) -> str:
        status, got = self.call(
            "POST",
            "/api/v1/jobs",
            {"kind": kind, "target": {"device_ids": [device_id]}, "expires_in_s": expires_in_s, **body},
        )
        assert status == 201, got
        return str(got["batch_id"])

    def approve(self, batch_id: str) -> str:
        """As a second admin: approve a privacy-reducing batch awaiting it (the two-person rule)."""
        status, got = self.call("POST", f"/api/v1/jobs/{batch_id}/approve", {})
        assert status == 200, got
        return batch_id

    def job(self, batch_id: str) -> dict[str, Any]:
        status, got = self.call("GET", f"/api/v1/jobs/{batch_id}")
        assert status == 200, got
        (job,) = got["jobs"]
        return job


@pytest.fixture
def story(tmp_path: Path, data_dir_with_models: Path):
    clock = ServerClock()
    config = ServerConfig(port=0, database=tmp_path / "server" / "fleet.db")
    server = BackgroundServer(config, app_clock=clock).start()
    db = FleetDB(config.database)
    try:
        token = create_api_token(db.db, "e2e", "admin", "test", clock())
        second_token = create_api_token(db.db, "e2e-second", "admin", "user:second-admin", clock())
    finally:
        db.close()
    data = data_dir_with_models
    ids = IdentityStore(data / "device")
    identity, status = ids.enroll(Bundle(server.url, create_token(config, "3B-12", 600), server.ca_pem), "cam-1")
    assert status == "active"
    (data / "device.toml").write_text(DEVICE_TOML)
    marker = tmp_path / "rebooted"
    reboot = f"sh -c 'echo rebooted >> {marker}; kill -TERM $PPID'"  # goes down like a reboot, harmlessly
    sup = Supervisor(tmp_path / "logs", ["--data-dir", str(data), "device", "run", "--reboot-command", reboot])
    try:
        op, second = Operator(server, token), Operator(server, second_token)
        yield clock, server, config, op, second, identity, data, sup, marker
    finally:
        sup.stop()
        server.stop()


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)


@pytest.mark.sqlite_only  # replays a job by editing the SQLite file directly
def test_every_job_kind_end_to_end(story):
    clock, server, config, op, second, identity, data, sup, marker = story
    device_id = identity.device_id
    device_toml = data / "device.toml"
    previous_toml = data / "device.toml.previous"

    def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sup.check()
            if predicate():
                return
            time.sleep(0.05)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}" + sup.tails())

    def finished(batch_id: str, timeout: float = 30.0) -> dict[str, Any]:
        final = {"succeeded", "failed", "refused", "expired", "cancelled"}
        wait_for(lambda: op.job(batch_id)["state"] in final, timeout, f"job batch {batch_id} to finish")
        return op.job(batch_id)

    def executed_ids() -> set[str]:
        db = read_only(data / "device" / "jobs.db")
        try:
            return {row[0] for row in db.execute("SELECT job_id FROM jobs")}
        finally:
            db.close()

    def events_on_server() -> int:
        db = read_only(config.database)
        try:
            return int(db.execute("SELECT count(*) FROM events WHERE device_id = ?", (device_id,)).fetchone()[0])
        finally:
            db.close()

    # 1. Offline: two jobs wait for the device; one expires (by the server's clock) before it comes back.
    diagnostics = op.create(device_id, "collect_diagnostics")
    too_late = op.create(device_id, "set_log_level", expires_in_s=60, params={"level": "debug", "duration_s": 60})
    clock.offset += 90
    assert finished(too_late, 5)["state"] == "expired"
    sup.start()
    job = finished(diagnostics, 60)
    assert job["state"] == "succeeded" and job["has_output"], job
    status, got = op.call("GET", f"/api/v1/jobs/{diagnostics}/devices/{device_id}/output")
    assert status == 200
    output = got["output"]
    assert output_problem(output) is None and len(output.encode()) <= 256 * 1024
    assert f"device_id = {device_id}" in output and "== versions ==" in output and "== health ==" in output
    assert "hunter2" not in output and "rtsp://***@cam-3b12.local/live" in output
    assert all(32 <= ord(c) < 127 or c == "\n" for c in output)
    assert op.job(too_late)["state"] == "expired" and op.job(too_late)["job_id"] not in executed_ids()

    # 2. set_log_level: the agent runs at WARNING; for a while it logs its events at INFO too.
    first_pid = sup.pid
    assert "occupancy/" not in sup.stderr()
    job = finished(op.create(device_id, "set_log_level", params={"level": "info", "duration_s": 60}))
    assert job["state"] == "succeeded", job
    wait_for(lambda: "occupancy/" in sup.stderr(), 30, "INFO event lines after set_log_level")

    # 3. self_test: the pose model loads and runs on the built-in frame in time.
    job = finished(op.create(device_id, "self_test"), 90)
    assert job["state"] == "succeeded", job

    # 4. A configuration the server accepts (schema) but the device's dry run refuses: the old one stays. The server
    # has not seen this device's file (it was written on the device), so a whole file needs a second admin's approval.
    bad = DEVICE_TOML + "[bed_exit]\nenabled = true\n"  # no zone of kind "bed": the agent would not start
    job = finished(second.approve(op.create(device_id, "push_config", config=bad)))
    assert (job["state"], job["reason"]) == ("refused", "config_would_not_start"), job
    assert device_toml.read_text() == DEVICE_TOML and not previous_toml.exists()
    assert sup.pid == first_pid and sup.exits == []

    # 5. A good configuration: applied, the agent restarts with it and reports after the restart.
    good = DEVICE_TOML.replace("heartbeat_seconds = 1.0", "heartbeat_seconds = 0.5")
    job = finished(second.approve(op.create(device_id, "push_config", config=good)), 60)
    assert job["state"] == "succeeded", job
    assert sup.exits == [RESTART_EXIT_CODE]
    assert device_toml.read_text() == good and previous_toml.read_text() == DEVICE_TOML

    # 6. A configuration that passes the dry run but cannot start here (no Pi camera): rolled back. Another camera
    # source: applied only with the approval the signed job carries.
    no_camera = good.replace('kind = "file"', 'kind = "picamera"')
    job = finished(second.approve(op.create(device_id, "push_config", config=no_camera)), 90)
    assert (job["state"], job["reason"]) == ("failed", "config_failed_at_start"), job
    assert sup.exits == [RESTART_EXIT_CODE, RESTART_EXIT_CODE, 1]
    assert "picamera2 is not installed" in sup.stderr(sup.runs - 1)
    assert device_toml.read_text() == good

    # 7. restart_agent: the agent exits for its supervisor and reports once it is back.
    restart = op.create(device_id, "restart_agent")
    job = finished(restart, 60)
    assert job["state"] == "succeeded", job
    assert sup.exits[-1] == RESTART_EXIT_CODE and len(sup.exits) == 4

    # 8. reboot: the configured command runs (here it kills the agent, as a reboot would).
    job = finished(op.create(device_id, "reboot"), 60)
    assert job["state"] == "succeeded", job
    assert marker.read_text() == "rebooted\n"
    assert sup.exits[-1] == -signal.SIGTERM and len(sup.exits) == 5

    # 9. A replay: the restart job comes again (its row put back to "released", as a replayed response would).
    restart_job = op.job(restart)["job_id"]
    db = sqlite3.connect(config.database, timeout=10.0)
    with db:
        db.execute("UPDATE jobs SET state = 'released', finished_at = NULL, reason = NULL WHERE id = ?", (restart_job,))
    db.close()
    pid = sup.pid
    wake = op.create(device_id, "set_log_level", params={"level": "warning", "duration_s": 60})  # wakes the poll
    assert finished(wake)["state"] == "succeeded"
    job = finished(restart)
    assert (job["state"], job["reason"]) == ("refused", "replayed"), job
    assert sup.pid == pid and len(sup.exits) == 5  # not restarted again

    # 10. rotate_key: a new key (0600) replaces the old one on disk; the agent goes on signing with it.
    key_path = data / "device" / "key.pem"
    old_public = wire.encode_public_key(wire.load_private_key(key_path).public_key())
    job = finished(op.create(device_id, "rotate_key"), 60)
    assert job["state"] == "succeeded", job
    wait_for(lambda: "device key rotated" in sup.stderr(), 10, "the rotation to be logged")
    new_public = wire.encode_public_key(wire.load_private_key(key_path).public_key())
    assert new_public != old_public and key_path.stat().st_mode & 0o777 == 0o600
    assert not (data / "device" / "key.pem.next").exists()
    db = read_only(config.database)
    try:
        assert db.execute("SELECT public_key FROM devices WHERE id = ?", (device_id,)).fetchone()[0] == new_public
    finally:
        db.close()
    before = events_on_server()
    wait_for(lambda: events_on_server() >= before + 3, 60, "events signed with the new key")
    assert sup.stderr().count("server refused an event") <= 1  # at most one signed just before the switch
    assert sup.pid == pid

    # 11. factory_reset: identity, keys, credential, outbox, jobs and configuration are gone; models stay.
    job = finished(op.create(device_id, "factory_reset"), 60)
    assert job["state"] == "succeeded", job
    wait_for(lambda: sup.gave_up, 30, "the agent to exit after the factory reset")
    assert sup.exits[-1] == FACTORY_RESET_EXIT_CODE
    assert not (data / "device").exists() and not device_toml.exists() and not previous_toml.exists()
    assert (data / "models").is_dir()
    db = read_only(config.database)
    try:
        assert db.execute("SELECT status FROM devices WHERE id = ?", (device_id,)).fetchone()[0] == "revoked"
    finally:
        db.close()

    for run in range(1, sup.runs + 1):
        assert "Traceback" not in sup.stderr(run), sup.tails()
