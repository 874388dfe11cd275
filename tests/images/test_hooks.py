"""The layer hooks and the first-boot helpers, run for real on throwaway directories standing in for the rootfs,
the boot partition and the data directory."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.images.conftest import IMAGES, need
from wardsight import wire

BASE_HOOKS = IMAGES / "layer/wardsight-base.d/hooks"
LIB = IMAGES / "deb/lib"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBtv9uR7Ynd3u8m9Xq3h2mQqGqJ0b6vS3x8c7Lw1z2aB admin@ward"


def run(*command: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, check=False)


def test_accounts_hook_turns_empty_passwords_into_none(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    shadow = tmp_path / "etc/shadow"
    shadow.write_text("root::19000:0:99999:7:::\nwardsight:!:19000::::::\ndaemon:*:19000:0:99999:7:::\n")
    done = run(BASE_HOOKS / "customize10-wardsight-accounts", tmp_path)
    assert done.returncode == 0, done.stderr
    assert shadow.read_text().splitlines() == [
        "root:*:19000:0:99999:7:::",
        "wardsight:!:19000::::::",
        "daemon:*:19000:0:99999:7:::",
    ]


def test_accounts_hook_stops_the_build_on_a_password(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/shadow").write_text("root:*:1::::::\npi:$y$j9T$abc$def:1::::::\n")
    done = run(BASE_HOOKS / "customize10-wardsight-accounts", tmp_path)
    assert done.returncode == 1
    assert "pi" in done.stderr and "password" in done.stderr


def test_sbom_hook_lists_debian_packages_and_the_venv(tmp_path: Path) -> None:
    need("dpkg-query")
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    status = "".join(
        f"Package: {name}\nStatus: install ok installed\nArchitecture: {arch}\nVersion: {version}\n\n"
        for name, version, arch in [("libc6", "2.36-9+deb12u4", "arm64"), ("python3-picamera2", "1:0.3.19-1", "all")]
    )
    (tmp_path / "var/lib/dpkg/status").write_text(
        status + "Package: gone\nStatus: deinstall ok config-files\nArchitecture: all\nVersion: 1\n\n"
    )
    dist = tmp_path / "opt/wardsight/venv/lib/python3.11/site-packages/PyJWT-2.8.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: PyJWT\nVersion: 2.8.0\n\nbody\n")
    done = run(BASE_HOOKS / "cleanup90-wardsight-sbom", tmp_path, env=dict(os.environ, SOURCE_DATE_EPOCH="0"))
    assert done.returncode == 0, done.stderr
    sbom = json.loads((tmp_path / "usr/share/wardsight/sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX" and sbom["metadata"]["timestamp"] == "1970-01-01T00:00:00Z"
    purls = [c["purl"] for c in sbom["components"]]
    assert purls == [
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=arm64",
        "pkg:deb/debian/python3-picamera2@1%3A0.3.19-1?arch=all",
        "pkg:pypi/pyjwt@2.8.0",
    ]


def stage_env(tmp_path: Path, fat: Path) -> dict[str, str]:
    stub = tmp_path / "firewall-stub"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "firewall-calls"}\n')
    stub.chmod(0o755)
    return dict(
        os.environ,
        WARDSIGHT_BOOT_DIRS=f"{tmp_path / 'nothing'} {fat}",
        WARDSIGHT_USER=getpass.getuser(),
        WARDSIGHT_PYTHON=sys.executable,
        WARDSIGHT_FIREWALL_BOOTSTRAP=str(tmp_path / "run/bootstrap.nft"),
        WARDSIGHT_FIREWALL=str(stub),
    )


def test_stage_skips_the_unit_without_a_bundle(tmp_path: Path) -> None:
    done = run(LIB / "firstboot-stage", tmp_path / "staged", env=stage_env(tmp_path, tmp_path / "fat"))
    assert done.returncode == 1  # ExecCondition: skipped, not failed
    assert "no wardsight/enrollment.json" in done.stderr
    assert not (tmp_path / "staged").exists()


def test_stage_copies_the_bundle_privately_and_opens_its_server(tmp_path: Path) -> None:
    fat = tmp_path / "fat/wardsight"
    fat.mkdir(parents=True)
    (fat / "enrollment.json").write_text(json.dumps({"server_url": "https://127.0.0.1:8443", "token": "wst.a.b"}))
    (fat / "elsewhere").symlink_to("/etc/passwd")
    done = run(LIB / "firstboot-stage", tmp_path / "staged", env=stage_env(tmp_path, fat.parent))
    assert done.returncode == 0, done.stderr
    staged = tmp_path / "staged/wardsight"
    assert sorted(p.name for p in staged.iterdir()) == ["enrollment.json"]  # no links followed
    assert (staged / "enrollment.json").stat().st_mode & 0o777 == 0o600
    assert staged.stat().st_mode & 0o777 == 0o700
    bootstrap = (tmp_path / "run/bootstrap.nft").read_text()
    assert "add element inet wardsight fleet4 { 127.0.0.1 . 8443 }" in bootstrap
    assert (tmp_path / "firewall-calls").read_text() == "load\n"


def finish_env(tmp_path: Path) -> dict[str, str]:
    stub = tmp_path / "stub"
    stub.write_text(f'#!/bin/sh\necho "$(basename "$0") $*" >> {tmp_path / "calls"}\n')
    stub.chmod(0o755)
    return dict(
        os.environ,
        WARDSIGHT_DATA_DIR=str(tmp_path / "data"),
        WARDSIGHT_USER=getpass.getuser(),
        WARDSIGHT_SSH_DIR=str(tmp_path / "ssh"),
        WARDSIGHT_STAGED=str(tmp_path / "staged"),
        WARDSIGHT_FIREWALL_BOOTSTRAP=str(tmp_path / "bootstrap.nft"),
        WARDSIGHT_FIREWALL=str(stub),
        WARDSIGHT_BOOT_DIRS=str(tmp_path / "fat"),
        WARDSIGHT_SSHD=str(stub),
        SYSTEMCTL=str(stub),
    )


def test_finish_installs_keys_once_spends_the_token_and_starts_the_agent(tmp_path: Path) -> None:
    need("setpriv")
    if os.geteuid() != 0:
        pytest.skip("first-boot's root step switches user (setpriv --init-groups): run as root")
    (tmp_path / "data/device").mkdir(parents=True)
    (tmp_path / "data/device/identity.json").write_text("{}")
    (tmp_path / "data/ssh").mkdir()
    (tmp_path / "data/ssh/authorized_keys").write_text(f'{KEY}\ncommand="sh" {KEY}\nnot a key\n')
    (tmp_path / "fat/wardsight").mkdir(parents=True)
    (tmp_path / "fat/wardsight/enrollment.json").write_text("{}")
    (tmp_path / "staged/wardsight").mkdir(parents=True)
    (tmp_path / "bootstrap.nft").write_text("# first boot\n")
    env = finish_env(tmp_path)
    done = run(LIB / "firstboot-finish", env=env)
    assert done.returncode == 0, done.stderr
    keys = tmp_path / "ssh/authorized_keys"
    assert keys.read_text() == KEY + "\n" and keys.stat().st_mode & 0o777 == 0o644
    assert not (tmp_path / "fat/wardsight/enrollment.json").exists()
    assert not (tmp_path / "staged/wardsight").exists() and not (tmp_path / "bootstrap.nft").exists()
    assert (tmp_path / "calls").read_text().splitlines() == [
        "stub load",
        "stub --no-block start wardsight-agent.service",
        "stub --no-block start ssh.service",
    ]
    (tmp_path / "data/ssh/authorized_keys").write_text("ssh-ed25519 AAAAnew intruder\n")
    assert run(LIB / "firstboot-finish", env=env).returncode == 0
    assert keys.read_text() == KEY + "\n"  # once: a later file adds nothing


def test_finish_does_nothing_before_enrollment(tmp_path: Path) -> None:
    (tmp_path / "fat/wardsight").mkdir(parents=True)
    (tmp_path / "fat/wardsight/enrollment.json").write_text("{}")
    done = run(LIB / "firstboot-finish", env=finish_env(tmp_path))
    assert done.returncode == 0 and "not enrolled" in done.stderr
    assert (tmp_path / "fat/wardsight/enrollment.json").exists()
    assert not (tmp_path / "calls").exists()


RELEASE_HOOK = IMAGES / "layer/wardsight-agent.d/hooks/cleanup95-wardsight-release"


def test_sbom_and_release_hooks_name_the_image_by_its_system_version(tmp_path: Path) -> None:
    """The SBOM hook, then the release hook (the cleanup order: wardsight-base below wardsight-agent): the release
    file holds the version and the sha256 of the SBOM the image really carries; the agent reads it."""
    need("dpkg-query")
    from firmware.system_version import system_version

    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(
        "Package: wardsight\nStatus: install ok installed\nArchitecture: arm64\nVersion: 0.1.0\n\n"
    )
    env = dict(os.environ, SOURCE_DATE_EPOCH="0", IGconf_wardsight_system_version="2026.12.1")
    assert run(BASE_HOOKS / "cleanup90-wardsight-sbom", tmp_path, env=env).returncode == 0
    done = run(RELEASE_HOOK, tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    sbom = tmp_path / "usr/share/wardsight/sbom.cdx.json"
    assert json.loads(sbom.read_text())["metadata"]["component"]["version"] == "2026.12.1"
    release = (tmp_path / "etc/wardsight/system-release").read_text()
    digest = hashlib.sha256(sbom.read_bytes()).hexdigest()
    assert f"\nVERSION=2026.12.1\nSBOM_SHA256={digest}\n" in release
    assert system_version(release, "console=serial0 root=PARTLABEL=system_b") == wire.SystemVersion(
        slot="B", version="2026.12.1", sbom_sha256=digest
    )


@pytest.mark.parametrize(
    "version", ["", "latest", "2026.12.1 ", "1." + "1" * 40, "2026.12;rm", "1.2.0+build.7", "1.2.3.4.5"]
)
def test_release_hook_stops_the_build_on_a_version_the_updater_cannot_order(tmp_path: Path, version: str) -> None:
    (tmp_path / "usr/share/wardsight").mkdir(parents=True)
    (tmp_path / "usr/share/wardsight/sbom.cdx.json").write_text("{}")
    done = run(RELEASE_HOOK, tmp_path, env=dict(os.environ, IGconf_wardsight_system_version=version))
    assert done.returncode == 1 and "system_version" in done.stderr
    assert not (tmp_path / "etc/wardsight/system-release").exists()


def test_release_hook_stops_the_build_without_the_sbom(tmp_path: Path) -> None:
    done = run(RELEASE_HOOK, tmp_path, env=dict(os.environ, IGconf_wardsight_system_version="2026.12.1"))
    assert done.returncode == 1 and "cleanup90-wardsight-sbom must run first" in done.stderr
