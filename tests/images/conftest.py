"""Fixtures for the image recipe's tests: paths into images/, and a root directory holding the units."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
IMAGES = ROOT / "images"
HELPERS = ("wardsight-firewall", "firstboot-stage", "firstboot-finish", "rauc-tryboot-backend")
RAUC_OVERLAY = IMAGES / "layer/wardsight-rauc.d/customize.overlay"
# Units that a layer's overlay puts into /etc/systemd/system (not the .deb's /lib/systemd/system).
LAYER_UNITS = (RAUC_OVERLAY / "etc/systemd/system/wardsight-tryboot.service",)


def need(tool: str) -> str:
    """The tool's path, or skip the test with one line saying what is missing."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian package: see .ci/run)")
    return path


@pytest.fixture
def unit_root(tmp_path: Path) -> Path:
    """A root directory with the system's units, the WardSight units and stub programs for their commands."""
    need("systemd-analyze")
    units = tmp_path / "lib/systemd/system"
    host_units = Path("/lib/systemd/system")
    if not (host_units / "sysinit.target").exists():
        pytest.skip("systemd's own units are not installed in /lib/systemd/system")
    shutil.copytree(host_units, units, symlinks=True)
    for unit in [*(IMAGES / "systemd").iterdir(), *LAYER_UNITS]:
        shutil.copy(unit, units / unit.name)
    programs = ["usr/bin/wardsight", "usr/bin/systemctl", "usr/bin/ssh-keygen"]
    programs += [f"usr/lib/wardsight/{name}" for name in HELPERS]
    for program in programs:
        stub = tmp_path / program
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return tmp_path
