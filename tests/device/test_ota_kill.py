"""An OTA model update killed (SIGKILL) at each step, as a power cut would: every start runs a working model.

The device is a real process (the driver below: what the agent does at start and on its OTA thread: the
slot store chooses the model, LiteRT loads it, the manager talks to the real fleet server over TLS). The
driver stops at a step and writes a marker only when told to (``KILL_AT``), so each kill lands exactly
at that step without timing guesses; the test then SIGKILLs it and starts it again, as systemd would.

Story A, a good model (the real MoveNet) offered by a rollout:
  kill while downloading (half the package on disk) -> kill before verifying (the rest fetched with a Range
  request) -> kill after the build is written into the inactive slot but before it is recorded -> kill
  after the switch is recorded but before the restart -> kill during the first start on the new model ->
  the next start passes the health check: healthy, on the server too.
Story B, a second good model whose first starts all die before the health check: after ``max_trial_boots``
  starts the device switches back by itself to the model before, and the server hears ``rolled_back``
  ``crashed``.
Every start prints which model it chose and the result of the self-test of that loaded model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from firmware.ota.slotstate import SlotState
from tests.conftest import ROOT
from tests.device.helpers import make_package
from tests.device.test_ota_device import Device, Fleet

RESTART = 75

DRIVER = r'''
import json, os, sys, threading
from pathlib import Path

from accelerators.cpu import CpuPoseBackend
from firmware.identity import IdentityStore, tls_context
from firmware.ota import selftest
from firmware.ota.download import TargetDownloader
from firmware.exitcodes import RESTART_EXIT_CODE
from firmware.ota.boot import open_model, slot_backend
from firmware.ota.channel import FleetChannel
from firmware.ota.health import FrameCounts
from firmware.ota.manager import OtaManager, OtaSettings
from firmware.ota.slots import SlotStore
from firmware.ota.tufclient import TufClient

device, factory = Path(sys.argv[1]), Path(sys.argv[2])
kill_at = os.environ.get("KILL_AT", "")
markers = device / "markers"
manager = None


def say(**fields):
    print(json.dumps(fields), flush=True)


def stop_here(step, **fields):
    """Write the marker and wait to be killed."""
    markers.mkdir(exist_ok=True)
    (markers / (step + ".tmp")).write_text(json.dumps(fields))
    os.replace(markers / (step + ".tmp"), markers / step)
    threading.Event().wait()


def observer(step, done, total):
    if step != kill_at:
        return
    if step == "downloading" and done < total // 2:
        return
    if step == "installing" and done != 1:
        return  # 1: the build is written into the slot, not yet recorded
    last = manager.last_download if manager is not None else None
    stop_here(step, done=done, total=total, last_download=last)


slots = SlotStore(device / "models" / "slots", max_trial_boots=2)
backend, choice = open_model(
    slots, lambda c: slot_backend(c, threads=1), lambda: CpuPoseBackend(factory, num_threads=1)
)
build = choice.record.build if choice.record else selftest.factory_build()
check = selftest.check_model(choice.path or factory, build)
frame = selftest.test_frame()
backend.detect(frame)
say(event="started", slot=choice.slot, version=choice.version, trial=choice.trial, selftest=check.reason)
if kill_at == "trial" and choice.trial:
    stop_here("trial")

ids = IdentityStore(device)
identity, client = ids.client(timeout=10.0)
context = tls_context(identity.server_url, ids.ca_pem())
processed = 0
manager = OtaManager(
    slots,
    FleetChannel(client),
    TufClient(device / "ota", identity.server_url, context, reference_time=client.server_now),
    TargetDownloader(device / "ota", context, chunk_size=256 * 1024),
    running=choice,
    restart=lambda reason: None,
    frames=lambda: FrameCounts(processed, processed, 0),
    server_now=client.server_now,
    settings=OtaSettings(threads=1, health_frames=3, health_seconds=60),
    observer=observer,
)
for _ in range(2000):
    status = manager.step()
    say(event="step", status=status, last_download=manager.last_download)
    if manager.restart_reason is not None:
        backend.close()
        sys.exit(RESTART_EXIT_CODE)
    if status in ("idle", "current", "rejected"):
        sys.exit(0)
    if status == "trial":
        backend.detect(frame)  # the agent processing a frame with the model on trial
        processed += 1
    elif status != "confirmed":
        say(event="unexpected", status=status)
        sys.exit(3)
sys.exit(4)
'''


class Driver:
    def __init__(self, tmp: Path, device: Device, factory: Path) -> None:
        self.script = tmp / "driver.py"
        self.script.write_text(DRIVER)
        self.device, self.factory = device, factory
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.runs = 0
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WARDSIGHT_")}
        self.env["PYTHONPATH"] = str(ROOT)
        self.env["PYTHONUNBUFFERED"] = "1"

    @property
    def markers(self) -> Path:
        return self.device.dir / "markers"

    def start(self, kill_at: str = "") -> tuple[subprocess.Popen[bytes], Path]:
        self.runs += 1
        out = self.logs / f"run{self.runs}-{kill_at or 'free'}.out"
        with out.open("wb") as fo:
            proc = subprocess.Popen(
                [sys.executable, str(self.script), str(self.device.dir), str(self.factory)],
                stdout=fo,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                env={**self.env, "KILL_AT": kill_at},
            )
        return proc, out

    @staticmethod
    def lines(out: Path) -> list[dict[str, Any]]:
        found = []
        for line in out.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    def kill_at(self, step: str, timeout: float = 60.0) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run until the driver reaches ``step``, SIGKILL it there; (its start line, the marker's fields)."""
        marker = self.markers / step
        marker.unlink(missing_ok=True)
        proc, out = self.start(step)
        deadline = time.monotonic() + timeout
        try:
            while not marker.exists():
                if proc.poll() is not None:
                    pytest.fail(f"driver exited {proc.returncode} before {step}:\n{out.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"driver never reached {step}:\n{out.read_text()[-3000:]}")
                time.sleep(0.02)
            fields = json.loads(marker.read_text())
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL, out.read_text()[-3000:]
        marker.unlink()
        return self.lines(out)[0], fields

    def run(self, expect: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        proc, out = self.start()
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"driver did not finish:\n{out.read_text()[-3000:]}")
        assert rc == expect, f"driver exited {rc}:\n{out.read_text()[-3000:]}"
        return self.lines(out)


def state(device: Device) -> dict[str, Any]:
    """The slot state as the next start will read it (no file yet: the initial state)."""
    path = device.dir / "models" / "slots" / "state.json"
    if not path.exists():
        return SlotState().model_dump(mode="json")
    return SlotState.model_validate_json(path.read_text()).model_dump(mode="json")


def works(start: dict[str, Any], slot: str | None, version: str | None, trial: bool) -> None:
    """The start line: the model chosen, and the self-test of the model it loaded passed."""
    assert start["event"] == "started" and start["selftest"] == "ok", start
    assert (start["slot"], start["version"], start["trial"]) == (slot, version, trial), start


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    fleet = Fleet(tmp_path_factory.mktemp("ota-kill-fleet"))
    try:
        yield fleet
    finally:
        fleet.stop()


def test_an_update_killed_at_every_step_always_restarts_into_a_working_model(fleet, movenet_path, tmp_path):
    device = fleet.enroll(tmp_path / "device")
    package = make_package(tmp_path / "pkg", "1.0", movenet_path)
    target = fleet.publisher.publish(package)
    rollout = fleet.rollout(device, "1.0")
    driver = Driver(tmp_path, device, movenet_path)
    length = package.stat().st_size
    partial = device.dir / "ota" / "partial" / f"{fleet.publisher.listed[target].hashes['sha256']}.part"

    # 1. Download: killed with half the package on disk.
    start, mark = driver.kill_at("downloading")
    works(start, None, None, False)
    half = partial.stat().st_size
    assert length // 2 <= half < length and half == mark["done"]

    # 2. Verify: the restart resumed from the partial file (Range), then was killed before checking it.
    start, mark = driver.kill_at("verifying")
    works(start, None, None, False)
    assert mark["last_download"] == [half, length - half]
    assert partial.stat().st_size == length

    # 3. Install: killed after the build was written into slot a, before the slot was recorded.
    start, mark = driver.kill_at("installing")
    works(start, None, None, False)
    slot_file = device.dir / "models" / "slots" / "a" / "movenet.tflite"
    assert slot_file.stat().st_size == movenet_path.stat().st_size
    assert state(device)["slots"]["a"] is None and state(device)["trial"] is None

    # 4. Switch: killed after the trial was recorded, before the agent restarted itself.
    start, _ = driver.kill_at("switching")
    works(start, None, None, False)  # the unrecorded slot was never used
    assert state(device)["trial"] == {"slot": "a", "rollout_id": rollout, "boots": 0}

    # 5. The first start on the new model dies before its health check.
    start, _ = driver.kill_at("trial")
    works(start, "a", "1.0", True)
    assert state(device)["trial"]["boots"] == 1

    # 6. The next start passes the health check and confirms the model.
    lines = driver.run(expect=0)
    works(lines[0], "a", "1.0", True)
    assert [line["status"] for line in lines[1:] if line["event"] == "step"][-2:] == ["confirmed", "current"]
    final = state(device)
    assert (final["active"], final["previous"], final["trial"]) == ("a", None, None)
    assert final["reports"] == []
    assert fleet.device_status(rollout, device) == ("healthy", None)
    states = [s for s, _ in fleet.reports(rollout)]
    assert states[-2:] == ["activated", "healthy"] and "failed" not in states and "rolled_back" not in states

    # Story B: a model whose starts keep dying is abandoned after max_trial_boots starts.
    fleet.publisher.publish(make_package(tmp_path / "pkg2", "1.1", movenet_path))
    second = fleet.rollout(device, "1.1")
    lines = driver.run(expect=RESTART)
    works(lines[0], "a", "1.0", False)  # the confirmed model, no longer on trial
    assert state(device)["trial"]["slot"] == "b"
    for boot in (1, 2):
        start, _ = driver.kill_at("trial")
        works(start, "b", "1.1", True)
        assert state(device)["trial"]["boots"] == boot
    lines = driver.run(expect=0)
    works(lines[0], "a", "1.0", False)  # switched back by itself, to the model it ran before
    final = state(device)
    assert final["trial"] is None and final["active"] == "a" and final["reports"] == []
    assert final["last_failure"]["reason"] == "crashed" and final["last_failure"]["version"] == "1.1"
    assert fleet.reports(second)[-2:] == [("activated", None), ("rolled_back", "crashed")]
    assert fleet.device_status(second, device) == ("rolled_back", "crashed")
