"""The device firewall: the base rules pass nft's own check, the loader takes only fleet elements from the files
other parties write, and a ruleset loaded in a private network namespace is what the device would run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.images.conftest import IMAGES, need

BASE = IMAGES / "nftables/base.nft"
LOADER = IMAGES / "deb/lib/wardsight-firewall"
FLEET = (
    "add element inet wardsight fleet4 { 192.0.2.10 . 443 }\n"
    "add element inet wardsight fleet6 { 2001:db8::10 . 8443 }\n"
)


def netns(*command: str) -> list[str]:
    """Run as root of a fresh network namespace (a user namespace too), so nothing touches this machine."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False).returncode:
        pytest.skip("unshare -rn (a private network namespace) is not available here")
    return [unshare, "-rn", *command]


def loader(tmp_path: Path, action: str, **files: str) -> subprocess.CompletedProcess[str]:
    """Run the loader with its inputs under tmp_path: fleet, bootstrap, keys (absent unless given)."""
    env = dict(os.environ, WARDSIGHT_FIREWALL_BASE=str(BASE))
    for name in ("fleet", "bootstrap", "keys"):
        path = tmp_path / name
        if name in files:
            path.write_text(files[name])
        key = {"fleet": "WARDSIGHT_FIREWALL_FLEET", "bootstrap": "WARDSIGHT_FIREWALL_BOOTSTRAP"}.get(name)
        env[key or "WARDSIGHT_SSH_KEYS"] = str(path)
    command = [str(LOADER), action]
    if action != "print":
        env["NFT"] = need("nft")
        command = netns(*command)
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def test_base_rules_pass_nft_check() -> None:
    done = subprocess.run(netns(need("nft"), "-c", "-f", str(BASE)), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_the_fleet_allowance_and_the_bootstrap_are_added(tmp_path: Path) -> None:
    bootstrap = "# first boot\nadd element inet wardsight fleet4 { 198.51.100.7 . 8765 }\n"
    done = loader(tmp_path, "print", fleet=FLEET, bootstrap=bootstrap)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith(BASE.read_text())
    assert FLEET in done.stdout and "{ 198.51.100.7 . 8765 }" in done.stdout
    assert "dport 22" not in done.stdout  # no SSH unless keys were enrolled


@pytest.mark.parametrize(
    "text",
    [
        "flush ruleset\n",
        FLEET + "add rule inet wardsight output accept\n",
        "add element inet wardsight fleet4 { fleet.example.org . 443 }\n",
        'include "/etc/shadow"\n',
        "add element inet wardsight fleet4 { 192.0.2.10 . 443 }; add rule inet wardsight input accept\n",
    ],
)
def test_an_allowance_with_any_other_line_is_ignored_whole(tmp_path: Path, text: str) -> None:
    done = loader(tmp_path, "print", fleet=text)
    assert done.returncode == 0
    assert done.stdout == BASE.read_text()
    assert "ignoring" in done.stderr and "fleet" in done.stderr


def test_a_symlinked_allowance_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "real").write_text(FLEET)
    (tmp_path / "fleet").symlink_to(tmp_path / "real")
    env = dict(os.environ, WARDSIGHT_FIREWALL_BASE=str(BASE), WARDSIGHT_FIREWALL_FLEET=str(tmp_path / "fleet"))
    env["WARDSIGHT_FIREWALL_BOOTSTRAP"] = env["WARDSIGHT_SSH_KEYS"] = str(tmp_path / "absent")
    done = subprocess.run([str(LOADER), "print"], capture_output=True, text=True, env=env, check=False)
    assert done.stdout == BASE.read_text() and "symbolic link" in done.stderr


def test_ssh_opens_only_once_keys_are_enrolled(tmp_path: Path) -> None:
    assert "dport 22" not in loader(tmp_path, "print", keys="").stdout
    assert "tcp dport 22 ct state new accept" in loader(tmp_path, "print", keys="ssh-ed25519 AAAA admin\n").stdout


def test_the_loaded_ruleset_drops_by_default_and_holds_the_fleet(tmp_path: Path) -> None:
    env = dict(os.environ, WARDSIGHT_FIREWALL_BASE=str(BASE), WARDSIGHT_FIREWALL_FLEET=str(tmp_path / "fleet"))
    env["WARDSIGHT_FIREWALL_BOOTSTRAP"] = env["WARDSIGHT_SSH_KEYS"] = str(tmp_path / "absent")
    (tmp_path / "fleet").write_text(FLEET)
    nft = need("nft")
    script = f'"{LOADER}" load && "{LOADER}" load && {nft} list table inet wardsight'  # twice: reload is clean
    done = subprocess.run(netns("sh", "-c", script), capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    ruleset = done.stdout
    assert ruleset.count("table inet wardsight") == 1
    for hook in ("input", "forward", "output"):
        assert f"type filter hook {hook} priority filter; policy drop;" in ruleset
    assert "192.0.2.10 . 443" in ruleset and "2001:db8::10 . 8443" in ruleset
    assert "ip daddr . tcp dport @fleet4 accept" in ruleset


def test_a_refused_allowance_still_leaves_the_base_rules(tmp_path: Path) -> None:
    """Never fail open: an element nft refuses (no such address) loses the allowance, not the firewall."""
    done = loader(tmp_path, "load", fleet="add element inet wardsight fleet4 { 300.1.2.3 . 443 }\n")
    assert done.returncode == 1
    assert "loading the base rules" in done.stderr
    env = dict(os.environ, NFT=need("nft"), WARDSIGHT_FIREWALL_BASE=str(BASE))
    env["WARDSIGHT_FIREWALL_FLEET"] = str(tmp_path / "fleet")
    env["WARDSIGHT_FIREWALL_BOOTSTRAP"] = env["WARDSIGHT_SSH_KEYS"] = str(tmp_path / "absent")
    script = f'"{LOADER}" load; {env["NFT"]} list chain inet wardsight output'
    listed = subprocess.run(netns("sh", "-c", script), capture_output=True, text=True, env=env, check=False)
    assert "policy drop" in listed.stdout, listed.stderr
