"""First boot against a real fleet server on loopback (TLS, SQLite): enrolling from the boot partition's bundle,
erasing it (overwritten in place, then deleted), idempotent later boots, refused tokens, a server that is not
there yet (time injected: no real waiting), and the bundle's optional fields."""

from __future__ import annotations

import getpass
import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from firmware.firstboot import Backoff, FirstBootHooks, FirstBootPaths, StatusLed, first_boot, why_down
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


def test_first_boot_through_the_cli_enrolls_erases_the_bundle_and_writes_ssh_keys_and_firewall(tmp_path, fleet):
    server, config = fleet
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
    assert f"ip daddr {{ 127.0.0.1 }} tcp dport {port} accept" in (boot.data / "firewall" / "fleet.nft").read_text()
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


def test_a_used_token_leaves_the_device_down_with_a_clear_reason(tmp_path, fleet):
    server, config = fleet
    token = create_token(config, "3B-12", 600)
    other = Boot(tmp_path / "other")
    other.write_bundle(Bundle(server.url, token, server.ca_pem))
    assert other.run()["state"] == "enrolled"
    boot = Boot(tmp_path / "this")
    path = boot.write_bundle(Bundle(server.url, token, server.ca_pem))
    state = boot.run(led=StatusLed(boot.led))
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
