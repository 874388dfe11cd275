"""`make deb`: a dpkg-deb package with the agent's venv at /opt/wardsight/venv, the wrapper, the units, the
helpers and the maintainer scripts. The quick build leaves the dependencies out (DEB_NO_DEPS=1, about 10 s);
the full build (about 1 minute: every dependency from PyPI) runs with WARDSIGHT_SLOW_TESTS=1."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.images.conftest import ROOT, need

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
SLOW = os.environ.get("WARDSIGHT_SLOW_TESTS") == "1"


def build(out: Path, **env: str) -> Path:
    need("make")
    need("dpkg-deb")
    python = Path("/usr/bin/python3")
    if not python.exists() or subprocess.run([python, "-c", "import ensurepip"], check=False).returncode:
        pytest.skip("/usr/bin/python3 with venv support (Debian package python3-venv) is needed to build the .deb")
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout
    done = subprocess.run(
        ["make", "-s", "deb", f"DEB_OUT={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, DEB_COMPRESS="gzip", **env),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    deb = out / f"wardsight_{VERSION}_{arch.strip()}.deb"
    assert deb.is_file(), sorted(out.iterdir())
    return deb


@pytest.fixture(scope="module")
def quick_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("deb"), DEB_NO_DEPS="1")


def dpkg_deb(*args: str | Path) -> str:
    return subprocess.run(["dpkg-deb", *map(str, args)], capture_output=True, text=True, check=True).stdout


def test_control_names_the_package_and_its_python(quick_deb: Path) -> None:
    info = dpkg_deb("-I", quick_deb)
    assert "Package: wardsight" in info and f"Version: {VERSION}" in info
    assert "python3 (>= 3.11), python3 (<< 3.12)" in info  # the venv only works with its own Python
    for needed in ("nftables", "polkitd", "systemd"):
        assert needed in info
    for script in ("postinst", "prerm", "postrm", "conffiles"):
        assert script in info


def test_contents_are_where_the_units_and_the_image_expect_them(quick_deb: Path) -> None:
    listing = {line.split()[-1].removeprefix("."): line.split()[0] for line in dpkg_deb("-c", quick_deb).splitlines()}
    expected = {
        "/usr/bin/wardsight": "-rwxr-xr-x",
        "/opt/wardsight/venv/bin/wardsight": "-rwxr-xr-x",
        "/opt/wardsight/venv/pyvenv.cfg": "-rw-r--r--",
        "/lib/systemd/system/wardsight-agent.service": "-rw-r--r--",
        "/lib/systemd/system/wardsight-firstboot.service": "-rw-r--r--",
        "/lib/systemd/system/wardsight-firewall.service": "-rw-r--r--",
        "/lib/systemd/system/wardsight-firewall.path": "-rw-r--r--",
        "/lib/systemd/system/wardsight-reboot.service": "-rw-r--r--",
        "/etc/polkit-1/rules.d/50-wardsight.rules": "-rw-r--r--",
        "/etc/wardsight/agent.env": "-rw-r--r--",
        "/usr/lib/wardsight/wardsight-firewall": "-rwxr-xr-x",
        "/usr/lib/wardsight/firstboot-stage": "-rwxr-xr-x",
        "/usr/lib/wardsight/firstboot-finish": "-rwxr-xr-x",
        "/usr/lib/wardsight/nftables/base.nft": "-rw-r--r--",
    }
    for path, mode in expected.items():
        assert listing.get(path) == mode, (path, listing.get(path))
    assert not [p for p in listing if "__pycache__" in p]


def test_postinst_makes_a_passwordless_shell_less_system_user(quick_deb: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-e", quick_deb, tmp_path / "DEBIAN"], check=True)
    postinst = (tmp_path / "DEBIAN/postinst").read_text()
    assert "useradd --system" in postinst and "--shell /usr/sbin/nologin" in postinst
    assert "--password" not in postinst and "chpasswd" not in postinst
    assert "install -d -m 0700 -o wardsight -g wardsight /var/lib/wardsight" in postinst
    assert (tmp_path / "DEBIAN/conffiles").read_text().split() == [
        "/etc/wardsight/agent.env",
        "/etc/polkit-1/rules.d/50-wardsight.rules",
    ]
    done = subprocess.run(["sh", "-n", tmp_path / "DEBIAN/postinst"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def extract(deb: Path, into: Path) -> Path:
    subprocess.run(["dpkg-deb", "-x", deb, into], check=True)
    return into / "opt/wardsight/venv"


def test_the_venv_lives_at_opt_and_sees_the_system_packages(quick_deb: Path, tmp_path: Path) -> None:
    venv = extract(quick_deb, tmp_path)
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    assert (venv / "bin/wardsight").read_text().startswith("#!/opt/wardsight/venv/bin/python")
    leftovers = subprocess.run(["grep", "-rlIF", "wardsight-deb.", venv], capture_output=True, text=True, check=False)
    assert leftovers.stdout == ""  # no path of the build directory left anywhere
    code = "import importlib.metadata as m, sys; print(m.version('wardsight')); print(sys.path)"
    done = subprocess.run([venv / "bin/python", "-c", code], capture_output=True, text=True, check=True)
    version, path = done.stdout.splitlines()
    assert version == VERSION
    assert "/usr/lib/python3/dist-packages" in path  # python3-picamera2 from apt is importable


@pytest.mark.skipif(not SLOW, reason="full .deb build (about 1 minute): set WARDSIGHT_SLOW_TESTS=1")
def test_the_full_package_runs_the_wardsight_command(tmp_path: Path) -> None:
    deb = build(tmp_path / "out")
    venv = extract(deb, tmp_path / "x")
    done = subprocess.run(
        [venv / "bin/python", "-m", "wardsight", "device", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "run" in done.stdout
    shutil.rmtree(tmp_path / "x")
