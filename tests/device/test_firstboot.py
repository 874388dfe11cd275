"""First boot against a real fleet server on loopback (TLS, SQLite): enrolling from the boot partition's bundle,
erasing it (overwritten in place, then deleted), idempotent later boots, refused tokens, a server that is not
there yet (time injected: no real waiting), and the bundle's optional fields."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from firmware.firstboot import (
    Backoff,
    FirstBootHooks,
    FirstBootPaths,
    StatusLed,
    first_boot,
    refresh_allowance,
    why_down,
)
from fleet.cli import create_token
from fleet.config import ServerConfig
from fleet.server import BackgroundServer
from tests.fleet.helpers import counts
from wardsight.bundle import Bundle
from wardsight.errors import WardSightError
from wardsight_cli.main import cli

# Real public keys' shapes: the base64 blob starts with the key type's name.
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0ZsT8Kf0M4mV0sZQb9y7P3l1q2Vb3s4c5d6e7f8g9 admin@ward"
RSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 ops"


@pytest.fixture
def fleet(tmp_path):
    config = ServerConfig(port=0, database=tmp_path / "server" / "fleet.db")
    server = BackgroundServer(config).start()
    yield server, config
    server.stop()


class Boot:
    """A boot partition and a data directory, and what first boot said and slept."""

    def __init__(self, tmp_path: Path) -> None:
        self.boot, self.data = tmp_path / "boot", tmp_path / "data"
        self.boot.mkdir(parents=True)
        self.paths = FirstBootPaths(self.boot, self.data)
        self.lines: list[str] = []
        self.sleeps: list[float] = []
        self.on_sleep = lambda: None
        self.led = tmp_path / "led-brightness"
        self.led_seen: list[str] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.led.exists():
            self.led_seen.append(self.led.read_text())
        self.on_sleep()

    def hooks(self, **over) -> FirstBootHooks:
        settings = dict(say=self.lines.append, sleep=self.sleep, now=lambda: 1_800_000_000.0)
        settings.update(over)
        return FirstBootHooks(**settings)

    def write_bundle(self, bundle: Bundle) -> Path:
        path = self.boot / "wardsight" / "enrollment.json"
        path.parent.mkdir(exist_ok=True)
        bundle.write(path)
        return path

    def run(self, **over) -> dict:
        return first_boot(self.paths, "cam-configured", self.hooks(**over))

    @property
    def state(self) -> dict:
        return json.loads((self.data / "device" / "firstboot.json").read_text())

    @property
    def said(self) -> str:
        return "\n".join(self.lines)


def test_first_boot_through_the_cli_enrolls_erases_the_bundle_and_writes_ssh_keys_and_firewall(
    tmp_path, fleet, monkeypatch
):
    server, config = fleet

    def no_chown(*args, **kwargs):  # the image's sandbox forbids chown: none is needed as the agent's own user
        raise PermissionError("chown called")

    monkeypatch.setattr(os, "chown", no_chown)
    boot = Boot(tmp_path)
    token = create_token(config, "3B-12", 600)
    bundle = Bundle(server.url, token, server.ca_pem, name="cam-3b12-door", ssh_authorized_keys=(ED25519, RSA))
    path = boot.write_bundle(bundle)
    size = path.stat().st_size
    witness = tmp_path / "witness"
    os.link(path, witness)  # a second name for the same file: shows what its bytes became
    me = getpass.getuser()
    args = ["--data-dir", str(boot.data), "device", "firstboot", "--boot-dir", str(boot.boot)]
    result = CliRunner().invoke(cli, [*args, "--agent-user", me, "--ssh-user", me, "--status-led", str(boot.led)])
    assert result.exit_code == 0, result.output
    assert "enrolled as " in result.output and "the enrollment bundle is erased" in result.output
    assert token.split(".")[2] not in result.output  # the token's secret never reaches the journal
    assert not path.exists()
    assert witness.read_bytes() == b"\0" * size  # overwritten in place, same length, before the delete
    device = boot.data / "device"
    assert json.loads((device / "identity.json").read_text())["name"] == "cam-3b12-door"
    assert (device / "key.pem").stat().st_mode & 0o777 == 0o600
    state = boot.state
    assert (state["state"], state["room"], state["status"]) == ("enrolled", "3B-12", "active")
    keys = boot.data / "ssh" / "authorized_keys"
    assert keys.read_text() == f"{ED25519}\n{RSA}\n" and keys.stat().st_mode & 0o777 == 0o600
    assert keys.parent.stat().st_mode & 0o777 == 0o755
    port = server.url.rsplit(":", 1)[1]
    fleet_nft = boot.data / "firewall" / "fleet.nft"
    assert fleet_nft.read_text() == f"add element inet wardsight fleet4 {{ 127.0.0.1 . {port} }}\n"
    assert boot.led.read_text() == "0"
    assert counts(config.database)[0] == 1
    shown = CliRunner().invoke(cli, ["--data-dir", str(boot.data), "device", "show"])
    assert shown.exit_code == 0 and "cam-3b12-door" in shown.output


def test_a_second_boot_keeps_the_identity_and_erases_a_leftover_bundle_unused(tmp_path, fleet):
    server, config = fleet
    boot = Boot(tmp_path)
    boot.write_bundle(Bundle(server.url, create_token(config, "3B-12", 600), server.ca_pem))
    first = boot.run()
    assert first["state"] == "enrolled"
    identity = (boot.data / "device" / "identity.json").read_bytes()
    again = boot.run()  # the next boot, no bundle
    assert again == first and "nothing to do" in boot.lines[-1]
    leftover = boot.write_bundle(Bundle(server.url, create_token(config, "3B-12", 600), server.ca_pem))
    boot.run()
    assert not leftover.exists() and "was not used and is erased" in boot.said
    assert (boot.data / "device" / "identity.json").read_bytes() == identity
    assert counts(config.database)[0] == 1  # never enrolled twice
    assert boot.sleeps == []


def test_the_agent_refreshes_the_allowance_at_start_only_where_first_boot_wrote_one(tmp_path, fleet):
    server, config = fleet
    boot = Boot(tmp_path)
    boot.write_bundle(Bundle(server.url, create_token(config, "3B-12", 600), server.ca_pem))
    assert boot.run()["state"] == "enrolled"
    allowance = boot.data / "firewall" / "fleet.nft"
    written = allowance.read_text()
    allowance.write_text("add element inet wardsight fleet4 { 192.0.2.99 . 443 }\n")  # the name moved since
    refresh_allowance(boot.data)
    assert allowance.read_text() == written
    allowance.unlink()  # a laptop or a device without the image's firewall: nothing is created
    refresh_allowance(boot.data)
    assert not allowance.exists()


def test_a_used_token_leaves_the_device_down_with_a_clear_reason(tmp_path, fleet):
    server, config = fleet
    token = create_token(config, "3B-12", 600)
    other = Boot(tmp_path / "other")
    other.write_bundle(Bundle(server.url, token, server.ca_pem))
    assert other.run()["state"] == "enrolled"
    boot = Boot(tmp_path / "this")
    path = boot.write_bundle(Bundle(server.url, token, server.ca_pem, ssh_authorized_keys=(ED25519,)))
    state = boot.run(led=StatusLed(boot.led))
    assert not (boot.data / "ssh").exists()  # keys only from a bundle the server accepted
    assert state["state"] == "token_refused" and state["reason"] == "enrollment token already used"
    assert state["token_id"] == token.split(".")[1] and token.split(".")[2] not in json.dumps(state)
    assert "refused this device's enrollment token: enrollment token already used" in boot.said
    assert "stays down (token_refused)" in boot.said
    assert not path.exists() and not (boot.data / "device" / "key.pem").exists()
    assert not (boot.data / "device" / "identity.json").exists()
    assert boot.led.read_text() == "1" and boot.sleeps == []
    assert why_down(boot.data) == "first boot: token_refused: enrollment token already used"
    shown = CliRunner().invoke(cli, ["--data-dir", str(boot.data), "device", "show"])
    assert shown.exit_code == 1 and "token_refused: enrollment token already used" in shown.output
    assert boot.run() == state  # the next boot, no new bundle: the refusal stays shown
    assert "no new enrollment bundle" in boot.lines[-1]
    run = CliRunner().invoke(cli, ["--data-dir", str(boot.data), "device", "run"])
    assert run.exit_code == 1 and "not enrolled" in run.output  # the agent's unit is not started meanwhile


def test_an_expired_token_is_refused_and_a_new_bundle_then_enrolls_with_a_new_key(tmp_path, fleet):
    server, config = fleet
    boot = Boot(tmp_path)
    boot.write_bundle(Bundle(server.url, create_token(config, "3B-12", 600, now=time.time() - 3600), server.ca_pem))
    assert boot.run()["reason"] == "enrollment token expired"
    boot.write_bundle(Bundle(server.url, create_token(config, "3B-12", 600), server.ca_pem))  # re-provisioned
    assert boot.run()["state"] == "enrolled"
    assert why_down(boot.data) is None


def test_a_server_not_there_yet_is_retried_with_backoff_until_it_answers(tmp_path, fleet):
    server, config = fleet
    token = create_token(config, "3B-12", 600)
    url, ca = server.url, server.ca_pem
    server.stop()  # the network or the server is not up yet at boot
    boot = Boot(tmp_path)
    path = boot.write_bundle(Bundle(url, token, ca))
    later = []

    def maybe_start() -> None:
        waiting = boot.state
        assert waiting["state"] == "waiting" and "cannot reach" in waiting["reason"]
        if waiting["attempt"] == 3 and not later:  # up during the third wait
            again = ServerConfig(port=int(url.rsplit(":", 1)[1]), database=config.database)
            later.append(BackgroundServer(again).start())

    boot.on_sleep = maybe_start
    try:
        state = boot.run(led=StatusLed(boot.led), backoff=Backoff(first=2.0, cap=5.0))
    finally:
        for started in later:
            started.stop()
    assert state["state"] == "enrolled" and not path.exists()
    assert sum(boot.sleeps) == 2.0 + 4.0 + 5.0  # 2 s, 4 s, then capped at 5 s; the LED blinks in half seconds
    assert set(boot.sleeps) == {0.5}
    assert set(boot.led_seen) == {"1", "0"} and boot.led.read_text() == "0"
    attempts = [line for line in boot.lines if "enrollment attempt" in line]
    assert len(attempts) == 3 and "next attempt in 2 s" in attempts[0] and "next attempt in 5 s" in attempts[2]
    assert all("cannot reach" in line for line in attempts)


def test_backoff_doubles_and_is_capped():
    assert [Backoff().delay(n) for n in range(1, 9)] == [2, 4, 8, 16, 32, 60, 60, 60]
    assert Backoff().delay(500) == 60


def test_no_bundle_is_unprovisioned_and_a_damaged_bundle_is_kept(tmp_path):
    boot = Boot(tmp_path)
    assert boot.run()["state"] == "unprovisioned"
    assert "no enrollment bundle at" in boot.said
    path = boot.boot / "wardsight" / "enrollment.json"
    path.parent.mkdir()
    path.write_text('{"server_url": "https://fleet.example.org", "tok')
    state = boot.run()
    assert state["state"] == "bundle_invalid" and "cannot read enrollment bundle" in state["reason"]
    assert path.read_text().endswith('"tok')  # bad input loses nothing
    assert why_down(boot.data) is not None


def test_an_unknown_agent_user_is_refused_before_anything_happens(tmp_path):
    boot = Boot(tmp_path)
    with pytest.raises(WardSightError, match="no such user"):
        boot.run(agent_user="no-such-user-here")
    assert not boot.data.exists()


# ---- the bundle's optional fields -----------------------------------------------------------------------------


def test_bundle_optional_fields_round_trip_and_old_bundles_still_load(tmp_path):
    path = tmp_path / "b.json"
    Bundle("http://127.0.0.1:8765", "wst.a.b", insecure_http=True, name="cam-1", ssh_authorized_keys=(ED25519,)).write(
        path
    )
    loaded = Bundle.load(path)
    assert loaded.ssh_authorized_keys == (ED25519,) and loaded.name == "cam-1"
    path.write_text(json.dumps({"server_url": "http://127.0.0.1:8765", "token": "wst.a.b", "insecure_http": True}))
    old = Bundle.load(path)
    assert old.ssh_authorized_keys == () and old.name is None


@pytest.mark.parametrize(
    "keys, message",
    [
        (["ssh-ed25519 AAAA\ncommand=x"], "not a public key line"),
        (['command="sh" ' + ED25519], "not a public key line"),
        (["ssh-dss AAAAB3NzaC1kc3MAAACBAP"], "not a public key line"),
        (["ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQC7"], "holds another kind of key"),
        (["ssh-ed25519 AAAA!!"], "not a public key line"),
        ("ssh-ed25519 AAAA", "list of strings"),
    ],
)
def test_bad_ssh_keys_are_refused(tmp_path, keys, message):
    path = tmp_path / "b.json"
    body = {"server_url": "http://127.0.0.1:8765", "token": "wst.a.b", "insecure_http": True}
    path.write_text(json.dumps({**body, "ssh_authorized_keys": keys}))
    with pytest.raises(WardSightError, match=message):
        Bundle.load(path)


def test_a_bad_device_name_is_refused(tmp_path):
    with pytest.raises(WardSightError, match="device name"):
        Bundle("http://127.0.0.1:8765", "wst.a.b", insecure_http=True, name="bad name").check()


# ---- as the image runs it: root stage step, first boot unprivileged on the staged copy, root finish step -------

LIB = Path(__file__).resolve().parent.parent.parent / "images/deb/lib"


class ImageBoot:
    """wardsight-firstboot.service's three commands on throwaway directories (the FAT, /run, the data dir); the
    root helpers' firewall loader and systemctl are stubs that record their calls."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp, self.fat, self.staged, self.data = tmp_path, tmp_path / "fat", tmp_path / "run", tmp_path / "data"
        self.calls = tmp_path / "calls"
        tmp_path.mkdir(parents=True, exist_ok=True)
        stub = tmp_path / "stub"
        stub.write_text(f'#!/bin/sh\necho "$(basename "$0") $*" >> {self.calls}\n')
        stub.chmod(0o755)
        self.env = dict(
            os.environ,
            WARDSIGHT_BOOT_DIRS=str(self.fat),
            WARDSIGHT_USER=getpass.getuser(),
            WARDSIGHT_PYTHON=sys.executable,
            WARDSIGHT_FIREWALL_BOOTSTRAP=str(tmp_path / "bootstrap.nft"),
            WARDSIGHT_FIREWALL=str(stub),
            WARDSIGHT_DATA_DIR=str(self.data),
            WARDSIGHT_SSH_DIR=str(tmp_path / "ssh"),
            WARDSIGHT_STAGED=str(self.staged),
            WARDSIGHT_SSHD=str(tmp_path / "no-sshd"),  # the key install (root, setpriv) is tested in tests/images
            SYSTEMCTL=str(stub),
        )

    def write_bundle(self, bundle: Bundle) -> Path:
        path = self.fat / "wardsight" / "enrollment.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        bundle.write(path)
        return path

    def helper(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(LIB / name), *args], capture_output=True, text=True, env=self.env, check=False)

    def boot(self) -> str:
        """ExecCondition, ExecStart, ExecStartPost (this one only when ExecStart exited 0, as systemd does)."""
        stage = self.helper("firstboot-stage", str(self.staged))
        assert stage.returncode == 0, stage.stderr
        args = ["--data-dir", str(self.data), "device", "firstboot", "--boot-dir", str(self.staged)]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        finish = self.helper("firstboot-finish")
        assert finish.returncode == 0, finish.stderr
        return result.output + finish.stderr

    @property
    def recorded(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


def test_the_image_sequence_enrolls_and_only_then_spends_the_token_on_the_fat(tmp_path, fleet):
    server, config = fleet
    image = ImageBoot(tmp_path)
    on_fat = image.write_bundle(Bundle(server.url, create_token(config, "3B-12", 600), server.ca_pem))
    output = image.boot()
    assert "enrolled as " in output
    assert (image.data / "device" / "identity.json").exists()
    assert not on_fat.exists() and not (image.staged / "wardsight").exists()
    assert image.recorded == ["stub load", "stub load", "stub --no-block start wardsight-agent.service"]
    fleet_nft = image.data / "firewall" / "fleet.nft"
    env = dict(image.env, WARDSIGHT_FIREWALL_FLEET=str(fleet_nft), WARDSIGHT_FIREWALL_BASE=os.devnull)
    env["WARDSIGHT_FIREWALL_BOOTSTRAP"] = env["WARDSIGHT_SSH_KEYS"] = str(tmp_path / "absent")
    shown = subprocess.run([str(LIB / "wardsight-firewall"), "print"], capture_output=True, text=True, env=env)
    assert shown.stderr == "" and shown.stdout == f"# from {fleet_nft}\n{fleet_nft.read_text()}"  # taken whole


def test_the_image_sequence_keeps_the_fat_bundle_when_the_token_is_refused(tmp_path, fleet):
    server, config = fleet
    token = create_token(config, "3B-12", 600)
    other = Boot(tmp_path / "other")
    other.write_bundle(Bundle(server.url, token, server.ca_pem))
    assert other.run()["state"] == "enrolled"  # the token is spent
    image = ImageBoot(tmp_path / "this")
    on_fat = image.write_bundle(Bundle(server.url, token, server.ca_pem))
    output = image.boot()  # first boot exits 0: the device stays down, no restart loop
    assert "stays down (token_refused)" in output and "not enrolled; nothing to finish" in output
    assert not (image.data / "device" / "identity.json").exists()
    assert on_fat.exists() and not (image.staged / "wardsight" / "enrollment.json").exists()
    assert "wardsight-agent.service" not in "\n".join(image.recorded)
