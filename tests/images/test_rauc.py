"""The wardsight-rauc layer: its hook renders system.conf with the agent's own code and installs the keyring (on a
throwaway root), and its D-Bus policy, loaded by a real dbus-daemon with Debian's system bus configuration and
rauc-service's own policy, keeps every user but root and the agent's away from RAUC's service."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.system.raucconf import IMAGE_ROTA, RaucSettings, compatible_for, render_system_conf
from tests.images.conftest import IMAGES, RAUC_OVERLAY, need

HOOK = IMAGES / "layer/wardsight-rauc.d/hooks/customize30-wardsight-rauc"
POLICY = RAUC_OVERLAY / "etc/dbus-1/system.d/wardsight-rauc.conf"
CERT = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
# rauc-service 1.8-2's /usr/share/dbus-1/system.d/de.pengutronix.rauc.conf (Debian bookworm), used when the package
# is not installed here: it lets every local user call RAUC.
DEBIAN_RAUC_POLICY = """<!DOCTYPE busconfig PUBLIC
 "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <policy context="default">
    <allow send_destination="de.pengutronix.rauc"/>
  </policy>
  <policy user="root">
    <allow own="de.pengutronix.rauc"/>
  </policy>
</busconfig>
"""


def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(RAUC_OVERLAY, root, symlinks=True)
    return root


def run_hook(root: Path, tmp_path: Path, keyring_text: str = CERT, **env: str) -> subprocess.CompletedProcess[str]:
    keyring = tmp_path / "rauc-ca.cert.pem"
    keyring.write_text(keyring_text)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IGconf_")}
    environ.update({"IGconf_rauc_board": "pi5", "IGconf_rauc_keyring": str(keyring),
                    "WARDSIGHT_RAUC_PYTHON": sys.executable, **env})  # fmt: skip
    return subprocess.run([str(HOOK), str(root)], capture_output=True, text=True, env=environ, check=False)


def test_the_hook_renders_system_conf_with_the_agents_code_and_installs_the_certificate(tmp_path: Path) -> None:
    root = rootfs(tmp_path)
    done = run_hook(root, tmp_path, "issuer text\n" + CERT + "trailer\n", IGconf_device_class="pi5")
    assert done.returncode == 0, done.stderr
    conf = (root / "etc/rauc/system.conf").read_text()
    assert conf == render_system_conf(IMAGE_ROTA, RaucSettings(compatible_for("pi5")))
    assert "compatible=wardsight-rpi5\n" in conf and "bootloader=custom\n" in conf
    assert (root / "etc/rauc/keyring.pem").read_text() == CERT  # the certificate alone
    assert (root / "etc/rauc/keyring.pem").stat().st_mode & 0o777 == 0o644
    assert (root / "var/lib/rauc").is_dir()
    assert "wardsight-rpi5" in done.stdout


@pytest.mark.parametrize(
    ("env", "keyring", "says"),
    [
        ({"IGconf_rauc_board": "pi3"}, CERT, "must be pi4 or pi5"),
        ({"IGconf_device_class": "pi4"}, CERT, "builds for pi4"),
        ({}, "no certificate here\n", "no PEM certificate"),
        ({}, CERT + "-----BEGIN PRIVATE KEY-----\nMIG\n-----END PRIVATE KEY-----\n", "private key"),
    ],
)
def test_the_hook_stops_the_build_on_a_wrong_board_or_keyring(
    tmp_path: Path, env: dict[str, str], keyring: str, says: str
) -> None:
    root = rootfs(tmp_path)
    done = run_hook(root, tmp_path, keyring, **env)
    assert done.returncode == 1 and says in done.stderr
    assert not (root / "etc/rauc/system.conf").exists()


def test_the_hook_stops_the_build_without_the_backend(tmp_path: Path) -> None:
    root = rootfs(tmp_path)
    (root / "usr/lib/wardsight/rauc-tryboot-backend").unlink()
    done = run_hook(root, tmp_path)
    assert done.returncode == 1 and "rauc-tryboot-backend is missing" in done.stderr


def test_the_layer_shares_raucs_data_directory_between_the_slots() -> None:
    shared = (RAUC_OVERLAY / "etc/rpi-image-gen/slot-shared.d/rauc.conf").read_text().splitlines()
    assert shared == ["Version=1", "Path=/var/lib/rauc"]
    assert "data-directory=/var/lib/rauc\n" in render_system_conf(IMAGE_ROTA, RaucSettings(compatible_for("pi4")))


# --- the D-Bus policy, on a real dbus-daemon ----------------------------------------------------------------------


def bus_config(tmp_path: Path, socket: Path, ours: bool) -> Path:
    """Debian's /usr/share/dbus-1/system.conf, listening on ``socket``, run in the foreground as the caller, with its
    two policy directories here: rauc-service's policy in the first and (``ours``) the layer's in the second."""
    base = Path("/usr/share/dbus-1/system.conf").read_text()
    usr, etc = tmp_path / "usr-system.d", tmp_path / "etc-system.d"
    usr.mkdir()
    etc.mkdir()
    installed = Path("/usr/share/dbus-1/system.d/de.pengutronix.rauc.conf")
    (usr / "de.pengutronix.rauc.conf").write_text(installed.read_text() if installed.exists() else DEBIAN_RAUC_POLICY)
    if ours:  # the agent's user is "wardsight" on the device; here an account that exists: "daemon"
        (etc / POLICY.name).write_text(POLICY.read_text().replace('user="wardsight"', 'user="daemon"'))
    for pattern, replacement in [
        (r"<user>[^<]*</user>|<fork/>|<pidfile>[^<]*</pidfile>|<syslog/>|<servicehelper>[^<]*</servicehelper>", ""),
        (r"<standard_system_servicedirs/>", ""),
        (r"<listen>[^<]*</listen>", f"<listen>unix:path={socket}</listen>"),
        (r"<includedir>system\.d</includedir>", f"<includedir>{usr}</includedir>"),
        (r"<includedir>/etc/dbus-1/system\.d</includedir>", f"<includedir>{etc}</includedir>"),
        (r"<include [^>]*>[^<]*</include>", ""),
    ]:
        base = re.sub(pattern, replacement, base)
    config = tmp_path / "bus.conf"
    config.write_text(base)
    return config


def call_rauc(address: str, user: str | None) -> subprocess.CompletedProcess[str]:
    busctl = ["busctl", f"--address={address}", "get-property", "de.pengutronix.rauc", "/",
              "de.pengutronix.rauc.Installer", "Compatible"]  # fmt: skip
    if user is not None:
        busctl = ["setpriv", f"--reuid={user}", f"--regid={user if user != 'nobody' else 'nogroup'}",
                  "--clear-groups", *busctl]  # fmt: skip
    return subprocess.run(busctl, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def bus(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A private system bus with RAUC's service on it (``request.param``: with the layer's policy or without)."""
    for tool in ("dbus-daemon", "rauc", "busctl", "setpriv"):
        need(tool)
    if os.geteuid() != 0 or not Path("/usr/share/dbus-1/system.conf").exists():
        pytest.skip("needs root (to call as other users) and Debian's /usr/share/dbus-1/system.conf (dbus)")
    public = Path(tempfile.mkdtemp(prefix="wardsight-bus-"))  # the socket's directory, reachable by every user
    public.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(public, ignore_errors=True))
    socket = public / "bus"
    config = bus_config(tmp_path, socket, ours=request.param)
    daemon = subprocess.Popen(["dbus-daemon", "--nofork", f"--config-file={config}"], stderr=subprocess.PIPE)
    address = f"unix:path={socket}"
    conf = tmp_path / "system.conf"
    conf.write_text(f"[system]\ncompatible=wardsight-rpi5\nbootloader=noop\ndata-directory={tmp_path / 'data'}\n")
    service = None
    try:
        deadline = time.monotonic() + 20
        while not socket.exists():
            assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
            assert time.monotonic() < deadline, "dbus-daemon did not start"
            time.sleep(0.05)
        service = subprocess.Popen(["rauc", f"--conf={conf}", f"--mount={tmp_path / 'mnt'}", "service"],
                                   env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        while call_rauc(address, None).returncode != 0:
            assert service.poll() is None, "rauc service exited"
            assert time.monotonic() < deadline, "rauc service did not come up on the bus"
            time.sleep(0.1)
        yield address
    finally:
        for proc in (service, daemon):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)


@pytest.mark.parametrize("bus", [True], indirect=True)
def test_only_root_and_the_agents_user_reach_rauc(bus: str) -> None:
    root, agent, other = call_rauc(bus, None), call_rauc(bus, "daemon"), call_rauc(bus, "nobody")
    assert root.returncode == 0 and root.stdout.strip() == 's "wardsight-rpi5"', root.stderr
    assert agent.returncode == 0 and agent.stdout.strip() == 's "wardsight-rpi5"', agent.stderr
    assert other.returncode != 0 and "denied" in other.stderr.lower(), other.stdout + other.stderr


@pytest.mark.parametrize("bus", [False], indirect=True)
def test_without_the_layers_policy_any_user_reaches_rauc(bus: str) -> None:
    """Why the layer has its policy: Debian's rauc-service alone lets every local user call RAUC."""
    other = call_rauc(bus, "nobody")
    assert other.returncode == 0 and other.stdout.strip() == 's "wardsight-rpi5"', other.stderr
