"""A model update end to end, the way a hospital runs it, on a device with the default configuration.

Real pieces only: the fleet server (TLS, its own CA), the hospital's offline keys and signing functions
(``wardsight ota keys/init/package/publish/rollout``), an enrollment bundle carrying the OTA root, and the
real agent (``wardsight device run --video ... --loop`` with no device.toml, so ``accelerator.kind = auto``)
in its own process under a small supervisor that starts it again whenever it exits, as systemd's
``Restart=always`` does on a device. Nothing is shortened: the agent's poll interval, health check and the
rollout ticker are the defaults; the offer reaches the device through its jobs long poll.

1. movenet-multipose 1.1 (the real MoveNet, repackaged) rolled out to the device's room: the rollout completes
   (all groups healthy) and the device's heartbeat says it runs 1.1. The time it took is printed.
2. 1.2, a truncated model that fails its self-test: the device rejects it before running it, the rollout
   shows it ``rejected`` with the reason in words, and the device still runs 1.1.
3. 1.3 (good), with the agent killed the moment it starts the new model on trial: the next start boots the
   same trial (start 2 of 2) and passes its health check; the package was downloaded and installed once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from accelerators.catalog import MOVENET_MULTIPOSE
from fleet.accounts import service as operators
from fleet.cli import create_token
from fleet.config import ServerConfig
from fleet.ota.repository.files import bundle_root
from fleet.server import BackgroundServer
from fleet.store.db import FleetDB
from signing.client import Server, start_rollout
from signing.keys import generate_keys
from signing.metadata import init_repository, publish
from tests.conftest import ROOT
from wardsight import wire
from wardsight.bundle import Bundle
from wardsight.footage import DEMO_FOOTAGE
from wardsight_cli.main import cli as wardsight_cli

MODEL = MOVENET_MULTIPOSE.name
ROOM = "3B-12"


class Supervisor:
    """Runs ``argv`` and starts it again whenever it exits (systemd ``Restart=always``), until :meth:`stop`."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv, self.env = argv, env
        self.lines: list[str] = []
        self.exits: list[int] = []
        self.starts = 0
        self._kill_on: str | None = None
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def kill_when(self, text: str) -> None:
        """SIGKILL the agent (a power cut) the moment a line with ``text`` appears."""
        self._kill_on = text

    def _run(self) -> None:
        while not self._stopping.is_set():
            proc = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env, cwd=ROOT
            )
            with self._lock:
                self._proc = proc
                self.starts += 1
            assert proc.stdout is not None
            for line in proc.stdout:
                with self._lock:
                    self.lines.append(line)
                if self._kill_on is not None and self._kill_on in line:
                    self._kill_on = None
                    proc.kill()
            self.exits.append(proc.wait())
            time.sleep(0.2)  # RestartSec

    def text(self) -> str:
        with self._lock:
            return "".join(self.lines)

    def wait_for(self, what: Callable[[], Any], timeout: float, label: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = what()
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {label}; the agent said:\n{self.text()[-6000:]}")

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._thread.join(20)


def package(tmp: Path, version: str, model_file: Path) -> Path:
    """``wardsight ota package`` as the docs give it."""
    out = tmp / f"movenet-{version}.wsm"
    args = ["ota", "package", "--name", MODEL, "--version", version, "--task", "pose", "--license", "Apache-2.0"]
    args += ["--build", f"cpu:litert:movenet_multipose:{model_file}", "--input", "long_side=256"]
    args += ["--input", "multiple=32", "--input", "dtype=uint8", "--out", str(out)]
    result = CliRunner().invoke(wardsight_cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def running_version(db_path: Path, device_id: str) -> str | None:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT models FROM health_latest WHERE device_id = ?", [device_id]).fetchone()
    finally:
        db.close()
    return json.loads(row[0]).get(wire.data_key(MODEL)) if row else None


def test_a_model_update_reaches_a_default_device_end_to_end(data_dir_with_models, tmp_path):
    # The fleet server, an admin API token, and the hospital's offline keys and repository.
    config = ServerConfig(port=0, database=tmp_path / "server" / "fleet.db")
    server = BackgroundServer(config).start()
    supervisor: Supervisor | None = None
    try:
        db = FleetDB(config.database)  # type: ignore[arg-type]
        try:
            token = operators.create_api_token(db.db, "hospital-it", "admin", "alice", time.time())
        finally:
            db.close()
        api = Server(server.url, token, server.ca_pem)
        keys = tmp_path / "keys"
        generate_keys(keys)
        init_repository(keys, api)

        # Enrolled afterwards: its bundle carries the repository's root.
        bundle_path = tmp_path / "bundle.json"
        enrollment = create_token(config, ROOM, 600, site="st-marys", ward="3B")
        Bundle(server.url, enrollment, server.ca_pem, tuf_root=bundle_root(config)).write(bundle_path)
        data = data_dir_with_models
        assert not (data / "device.toml").exists()  # the defaults: accelerator.kind = auto
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARDSIGHT_")}
        wardsight = [sys.executable, "-m", "wardsight", "-v", "--data-dir", str(data)]
        enrolled = subprocess.run(
            [*wardsight, "device", "enroll", "--bundle", str(bundle_path)], env=env, capture_output=True, text=True
        )
        assert enrolled.returncode == 0, enrolled.stderr
        device_id = json.loads((data / "device" / "identity.json").read_text())["device_id"]
        footage = data / "models" / DEMO_FOOTAGE.name / DEMO_FOOTAGE.filename
        supervisor = Supervisor([*wardsight, "device", "run", "--video", str(footage), "--loop"], env).start()
        supervisor.wait_for(lambda: running_version(config.database, device_id), 60, "the first heartbeat")
        assert running_version(config.database, device_id) == MOVENET_MULTIPOSE.version

        def rollout_of(version: str, model_file: Path) -> tuple[dict[str, Any], float]:
            publish(package(tmp_path, version, model_file), keys, api)
            started = time.monotonic()
            view = start_rollout(api, MODEL, version, {"room": ROOM})
            return view, started

        def settled(rollout_id: str) -> Callable[[], dict[str, Any] | None]:
            def check() -> dict[str, Any] | None:
                view = api.get_json(f"/api/v1/rollouts/{rollout_id}")
                return view if view["status"] not in ("running", "rolling_back") else None

            return check

        # 1. A good model: the rollout completes within seconds and the device runs 1.1.
        model = data / "models" / MOVENET_MULTIPOSE.artifact.name / MOVENET_MULTIPOSE.artifact.filename
        view, started = rollout_of("1.1", model)
        assert view["devices"][0]["device_id"] == device_id
        done = supervisor.wait_for(settled(view["id"]), 240, "rollout 1.1 to settle")
        took = time.monotonic() - started
        assert done["status"] == "completed", done
        assert done["devices"][0]["status"] == "healthy" and done["devices"][0]["explain"] == "healthy on 1.1"
        supervisor.wait_for(lambda: running_version(config.database, device_id) == "1.1", 60, "a heartbeat on 1.1")
        print(f"\nrollout of 1.1: started -> completed in {took:.1f} s (agent starts: {supervisor.starts})")
        assert 75 in supervisor.exits  # it switched by asking its supervisor for a restart
        assert "SlotError" not in supervisor.text() and "already on trial" not in supervisor.text()

        # 2. A model that fails its self-test: rejected, with the reason, and the device stays on 1.1.
        bad = tmp_path / "bad" / model.name
        bad.parent.mkdir()
        bad.write_bytes(model.read_bytes()[: model.stat().st_size // 3])
        view, _ = rollout_of("1.2", bad)
        done = supervisor.wait_for(settled(view["id"]), 240, "rollout 1.2 to settle")
        device = done["devices"][0]
        assert (device["status"], device["reason"]) == ("rejected", "self_test_failed"), done
        assert device["explain"].startswith("rejected by the device: the model failed its self-test"), device
        assert done["status"] == "stopped" and "past the error threshold" in done["reason"]
        time.sleep(1.0)
        assert running_version(config.database, device_id) == "1.1"

        # 3. A good model, the agent killed as it starts the new model on trial: the trial is booted again.
        starts_before = supervisor.starts
        supervisor.kill_when("1.3 in slot")
        view, _ = rollout_of("1.3", model)
        done = supervisor.wait_for(settled(view["id"]), 240, "rollout 1.3 to settle")
        assert done["status"] == "completed", done
        log = supervisor.text()
        assert "1.3 in slot a on trial: start 1 of at most 2" in log or "1.3 in slot b on trial: start 1" in log
        assert "on trial: start 2 of at most 2" in log  # the restart booted the trial, it did not begin again
        assert -9 in supervisor.exits and supervisor.starts >= starts_before + 2
        reports = sqlite3.connect(config.database).execute(
            "SELECT state FROM rollout_reports WHERE rollout_id = ? ORDER BY id", [view["id"]]
        )
        states = [r[0] for r in reports]
        assert states.count("installed") == 1 and states.count("downloading") == 1, states
        assert states[-1] == "healthy"
        supervisor.wait_for(lambda: running_version(config.database, device_id) == "1.3", 60, "a heartbeat on 1.3")
    finally:
        if supervisor is not None:
            supervisor.stop()
        server.stop()
