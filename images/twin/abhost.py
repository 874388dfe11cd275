"""The A/B twin's hospital: the fleet server (host.FleetServer), an admin API token, the offline OTA keys, and the
documented commands a hospital runs (``wardsight ota init``, ``provision bundles``, ``ota publish-system``,
``ota rollout --system``); its API read with the token, pinned to the fleet CA."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from abdisk import COMPATIBLE
from host import FleetServer

ROOM = "twin-101"


class Hospital:
    def __init__(self, server: FleetServer, work: Path) -> None:
        self.server, self.work = server, work
        self.local = f"https://127.0.0.1:{server.port}"
        self.ca = server.data / "fleet-keys" / "ca.crt"
        out = self.cli("fleet", "operator", "api-token", "create", "--name", "twin-ab", "--role", "admin")
        found = re.search(r"wsa\.\S+", out)
        if found is None:
            raise RuntimeError(f"no API token in: {out!r}")
        self.token = found.group(0)
        self.keys = work / "ota-keys"
        self.cli("ota", "keys", "--out", str(self.keys))
        self.admin("ota", "init", "--keys", str(self.keys))

    def cli(self, *args: str) -> str:
        """``wardsight --data-dir <server's> ARGS``; a failure raises with what the command said."""
        command = [str(self.server.wardsight), "--data-dir", str(self.server.data), *args]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:3])} failed ({done.returncode}): {done.stderr.strip()[-600:]}")
        return done.stdout

    def admin(self, *args: str) -> str:
        return self.cli(*args, "--server", self.local, "--ca", str(self.ca), "--api-token", self.token)

    def enrollment_bundle(self) -> Path:
        """The room's enrollment bundle (with the OTA root: the repository exists already)."""
        csv = self.work / "ward.csv"
        csv.write_text(f"site,ward,room\ntwin,T,{ROOM}\n")
        out = self.work / "bundles"
        self.cli("provision", "bundles", "--server", self.local, "--device-server", self.server.url,
                        "--ca", str(self.ca), "--api-token", self.token,
                        "--csv", str(csv), "--out", str(out))  # fmt: skip
        found = sorted(out.glob("*.json"))
        if len(found) != 1:
            raise RuntimeError(f"expected one bundle in {out}, found {found}")
        return found[0]

    def publish(self, bundle: Path, keyring: Path) -> dict[str, Any]:
        out = self.admin("ota", "publish-system", str(bundle), "--keys", str(self.keys), "--keyring", str(keyring))
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def rollout(self, version: str) -> str:
        out = self.admin("ota", "rollout", "--system", COMPATIBLE, version)
        found = re.search(r"^rollout (\S+):", out, re.M)
        if found is None:
            raise RuntimeError(f"no rollout id in: {out!r}")
        print(f"twin-ab: {out.strip()}", flush=True)
        return found.group(1)

    def get(self, path: str) -> Any:
        context = ssl.create_default_context(cafile=str(self.ca))
        url = self.local + path  # https://127.0.0.1:<port>/api/...: always https
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})  # noqa: S310
        with urllib.request.urlopen(request, context=context, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())

    def device(self) -> dict[str, Any] | None:
        found = self.get("/api/v1/devices")
        devices = found.get("devices", found) if isinstance(found, dict) else found
        return devices[0] if devices else None

    def system(self) -> tuple[str | None, str | None]:
        """(slot, version) the device's last heartbeat reported."""
        device = self.device()
        system = (device or {}).get("system") or {}
        return system.get("slot"), system.get("version")

    def rollout_device(self, rollout_id: str) -> dict[str, Any]:
        view = self.get(f"/api/v1/rollouts/{rollout_id}")
        devices = view.get("devices") or [{}]
        return {**devices[0], "rollout_status": view.get("status")}


def wait_for(what: Callable[[], Any], timeout: float, step: float = 5.0) -> Any:
    """``what()``'s first true value within ``timeout`` seconds, else its last value."""
    end = time.monotonic() + timeout
    value = what()
    while not value and time.monotonic() < end:
        time.sleep(step)
        value = what()
    return value
