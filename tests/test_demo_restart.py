"""`wardsight demo` supervises its agent as systemd does on a device (issue 15, item 2).

End to end, in a subprocess with the documented defaults (``--port 0`` and ``--duration`` only): zones saved as a
configuration job through the fleet API, as the console's zone editor saves them (``POST /api/v1/jobs``,
``push_config``), make the agent restart with them while the demo, its server and its console stay up; a pushed
configuration that does not start on this machine is put back and the agent runs on with the previous one; Ctrl-C
stops the demo cleanly. The supervisor's decisions themselves are tested in tests/device/test_supervisor.py.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# As the console's zone editor writes them (fleet/static/toml.js writeShapes) into the configuration it starts from
# when nothing was pushed yet: the device's name, its privacy regions, then its zones.
ZONES_TOML = """\
name = "demo-camera"

[[privacy_regions]]
name = "privacy-1"
polygon = [[0.8, 0.0], [1.0, 0.0], [1.0, 0.2], [0.8, 0.2]]

[[zones]]
name = "door"
kind = "door"
polygon = [[0.0, 0.0], [0.25, 0.0], [0.25, 1.0], [0.0, 1.0]]

[[zones]]
name = "floor"
kind = "floor"
polygon = [[0.25, 0.5], [1.0, 0.5], [1.0, 1.0], [0.25, 1.0]]
"""
NO_PI_CAMERA_TOML = ZONES_TOML + '\n[source]\nkind = "picamera"\n'  # passes the dry run, cannot start here


class Demo:
    """The demo process, its output read as it comes (both pipes drained, so it never blocks on them)."""

    def __init__(self, data_dir: Path, cwd: Path, duration: float) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARDSIGHT_")}
        argv = [sys.executable, "-m", "wardsight", "--data-dir", str(data_dir), "demo"]
        self.proc = subprocess.Popen(
            [*argv, "--duration", f"{duration:g}", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _drain(pipe: Any, lines: list[str]) -> None:
        for line in pipe:
            lines.append(line)

    def stdout(self) -> str:
        return "".join(self.out)

    def line(self, prefix: str, timeout: float) -> str:
        return wait_for(
            lambda: next((x for x in self.out if x.lstrip().startswith(prefix)), None), timeout, prefix, self
        )

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, demo: Demo) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        assert demo.proc.poll() is None, f"the demo exited ({demo.proc.returncode}) waiting for {what}:\n" + "".join(
            demo.out + demo.err
        )
        time.sleep(0.2)
    raise AssertionError(f"no {what} in {timeout:g} s:\n" + "".join(demo.out + demo.err))


class Api:
    """The fleet API with the demo's admin API token (the console's own calls, with a token for a session)."""

    def __init__(self, url: str, token: str, ca: Path) -> None:
        self.url, self.token = url.rstrip("/") + "/", token
        self.tls = ssl.create_default_context(cafile=str(ca))

    def __call__(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.tls) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} /{path}: HTTP {exc.code} {exc.read().decode(errors='replace')}") from None


def test_saving_zones_restarts_the_agent_with_them_and_the_demo_keeps_running(data_dir_with_models, tmp_path):
    started = time.monotonic()
    demo = Demo(data_dir_with_models, tmp_path, duration=120)  # stopped by Ctrl-C well before
    try:
        url = demo.line("console: ", 60).split()[1]
        exports = dict(word.split("=", 1) for word in demo.line("export ", 10).split()[1:])
        api = Api(url, exports["WARDSIGHT_API_TOKEN"], Path(exports["WARDSIGHT_FLEET_CA"]))
        demo.line("running the device on ", 10)
        device_id = api("GET", "api/v1/devices")["devices"][0]["id"]
        scene_path = f"api/v1/devices/{device_id}/scene"

        def scene_zones() -> list[str] | None:
            """Watch the scene as the zone editor does (so the device sends it) and read the zones it reports."""
            scene = api("GET", scene_path)
            return [z["name"] for z in scene["zones"]] if scene["layout_received_at"] else None

        assert scene_zones() in (None, [])  # now watched: the device sends its scene from its next heartbeat on

        # A second admin (another person than the one behind the demo's token): a whole file for a device whose file
        # the server has not seen, or another camera source, reduces privacy as far as the server can tell, and runs
        # only once a second admin approved it (the two-person rule, fleet/jobs/privacy.py).
        from fleet.accounts.service import create_api_token
        from fleet.store.db import FleetDB

        fleet_db = FleetDB(data_dir_with_models / "demo" / "fleet.db")
        try:
            second = Api(url, create_api_token(fleet_db.db, "second", "admin", "user:second-admin", time.time()),
                         Path(exports["WARDSIGHT_FLEET_CA"]))  # fmt: skip
        finally:
            fleet_db.close()

        def push(config: str) -> dict[str, Any]:
            body = {
                "kind": "push_config",
                "config": config,
                "target": {"device_ids": [device_id]},
                "expires_in_s": 3600,
            }
            made = api("POST", "api/v1/jobs", body)  # what the zone editor's "Save as configuration job" sends
            batch = made["batch_id"]
            if made["status"] == "awaiting_approval":
                second("POST", f"api/v1/jobs/{batch}/approve", {})
            return wait_for(
                lambda: next((j for j in api("GET", f"api/v1/jobs/{batch}")["jobs"] if j["finished_at"]), None),
                45,
                f"the end of job batch {batch}",
                demo,
            )

        # 1. Zones saved: the agent restarts with them (its job succeeds once it runs again), the demo runs on.
        job = push(ZONES_TOML)
        assert job["state"] == "succeeded", job
        assert wait_for(lambda: scene_zones() == ["door", "floor"], 30, "the new zones from the device", demo)
        out = demo.stdout()
        assert "the agent stopped to restart (maintenance job); starting it again" in out
        assert "zones door (door), floor (floor); 1 privacy region" in out
        assert (data_dir_with_models / "demo" / "device.toml").read_text() == ZONES_TOML

        # 2. A configuration that cannot start here (no Pi camera): put back at the next start, the job reported
        # failed, and the agent runs on with the zones of the previous one.
        job = push(NO_PI_CAMERA_TOML)
        assert (job["state"], job["reason"]) == ("failed", "config_failed_at_start"), job
        out = demo.stdout()
        assert "the agent failed: picamera2 is not installed" in out
        assert f"the configuration pushed by {job['job_id']} did not start; the previous one is back" in out
        assert (data_dir_with_models / "demo" / "device.toml").read_text() == ZONES_TOML
        rolled_back = time.time()

        def live_zones_since_rollback() -> list[str] | None:
            scene = api("GET", scene_path)
            return [z["name"] for z in scene["zones"]] if (scene["received_at"] or 0) > rolled_back else None

        assert wait_for(live_zones_since_rollback, 30, "a scene after the rollback", demo) == ["door", "floor"]
        page = urllib.request.urlopen(url, timeout=5, context=api.tls).read().decode()
        assert "WardSight fleet console" in page  # the console stayed up throughout

        # 3. Ctrl-C: the agent stops cleanly, the demo sums up and exits 0.
        demo.proc.send_signal(signal.SIGINT)
        assert demo.finish(30) == 0, "".join(demo.err)
    finally:
        demo.kill()
    out, err = demo.stdout(), "".join(demo.err)
    assert "(the agent was started 4 times)" in out and "events:" in out, out
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert time.monotonic() - started < 90


def test_a_second_demo_on_the_same_data_directory_is_refused_before_it_deletes_anything(tmp_path):
    """The demo deletes and recreates <data dir>/demo at start; a running demo's database must not go with it."""
    import pytest

    from wardsight.errors import WardSightError
    from wardsight_cli.demo import _only_demo_here

    _only_demo_here(tmp_path)  # the running demo
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "fleet.db").write_bytes(b"the running server's")
    with pytest.raises(WardSightError, match="another wardsight demo is running"):
        _only_demo_here(tmp_path)
    assert (tmp_path / "demo" / "fleet.db").read_bytes() == b"the running server's"
