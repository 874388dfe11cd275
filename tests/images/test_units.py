"""The systemd units the .deb installs: systemd's own linter accepts them, and the agent's sandbox scores "OK"."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.images.conftest import IMAGES, LAYER_UNITS, RAUC_OVERLAY

UNITS = sorted(p.name for p in (IMAGES / "systemd").iterdir())


def verify(root: Path, *names: str) -> subprocess.CompletedProcess[str]:
    paths = [str(root / "lib/systemd/system" / name) for name in names]
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", *paths], capture_output=True, text=True, check=False
    )


def test_the_recipe_has_the_agreed_units() -> None:
    assert UNITS == [
        "wardsight-agent.service",
        "wardsight-firewall.path",
        "wardsight-firewall.service",
        "wardsight-firstboot.service",
        "wardsight-reboot.service",
    ]


def test_systemd_analyze_verify_accepts_every_unit(unit_root: Path) -> None:
    done = verify(unit_root, *UNITS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.strip() == "", done.stderr  # no "Unknown key", no missing command


def test_verify_would_catch_a_broken_unit(unit_root: Path) -> None:
    """The check above can fail: a unit whose command is missing and that has an unknown key is reported."""
    broken = unit_root / "lib/systemd/system/wardsight-agent.service"
    text = broken.read_text().replace("/usr/bin/wardsight", "/usr/bin/wardsight-missing")
    broken.write_text(text.replace("[Service]\n", "[Service]\nWatchDogSec=30\n"))
    done = verify(unit_root, "wardsight-agent.service")
    assert done.returncode != 0
    assert "WatchDogSec" in done.stderr
    assert "wardsight-missing" in done.stderr


def exposure(root: Path, name: str) -> tuple[float, str]:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--root={root}", str(root / "lib/systemd/system" / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", done.stdout)
    assert match, done.stdout + done.stderr
    return float(match.group(1)), match.group(2)


def test_the_agent_sandbox_scores_ok_or_better(unit_root: Path) -> None:
    # systemd's scale: exposure 0.0 PERFECT, < 1.0 SAFE, < 5.0 OK, < 7.5 MEDIUM, < 9.0 EXPOSED, else UNSAFE.
    score, level = exposure(unit_root, "wardsight-agent.service")
    assert level in {"PERFECT", "SAFE", "OK"}, (score, level)
    assert score < 5.0


def test_the_score_would_drop_without_the_sandbox(unit_root: Path) -> None:
    unit = unit_root / "lib/systemd/system/wardsight-agent.service"
    keep = ("[", "Description", "Type", "ExecStart", "User", "Restart", "WantedBy")
    unit.write_text("".join(line for line in unit.read_text().splitlines(True) if line.startswith(keep)))
    score, level = exposure(unit_root, "wardsight-agent.service")
    assert level not in {"PERFECT", "SAFE", "OK"}, (score, level)


def settings(name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (IMAGES / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_the_agent_unit_keeps_the_agreed_contract() -> None:
    from firmware.exitcodes import FACTORY_RESET_EXIT_CODE, RESTART_EXIT_CODE

    agent = settings("wardsight-agent.service")
    assert agent["ExecStart"] == ["/usr/bin/wardsight --data-dir /var/lib/wardsight device run"]
    assert agent["Type"] == ["notify"] and agent["NotifyAccess"] == ["main"] and agent["WatchdogSec"] == ["30"]
    assert agent["Restart"] == ["always"] and agent["User"] == ["wardsight"]
    assert agent["SuccessExitStatus"] == agent["RestartForceExitStatus"] == [str(RESTART_EXIT_CODE)]
    assert agent["RestartPreventExitStatus"] == [str(FACTORY_RESET_EXIT_CODE)]
    assert agent["ReadWritePaths"] == ["/var/lib/wardsight"] and agent["ProtectSystem"] == ["strict"]
    assert agent["CapabilityBoundingSet"] == [""]
    assert "time-sync.target" in agent["After"][0]


def test_first_boot_runs_before_the_agent_when_there_is_a_bundle_or_no_identity() -> None:
    first = settings("wardsight-firstboot.service")
    assert first["Before"] == ["wardsight-agent.service"]
    assert "network-online.target" in first["After"][0]
    assert first["Type"] == ["oneshot"] and first["User"] == ["wardsight"]
    assert first["ExecStart"] == [
        "/usr/bin/wardsight --data-dir /var/lib/wardsight device firstboot --boot-dir /run/wardsight-firstboot"
    ]
    assert first["ConditionPathExists"] == [
        "|/bootfs/wardsight/enrollment.json",
        "|/boot/firmware/wardsight/enrollment.json",
        "|!/var/lib/wardsight/device/identity.json",
    ]
    assert "wardsight-firstboot.service" in settings("wardsight-agent.service")["After"][0]


def test_the_layer_units_pass_systemd_analyze_verify(unit_root: Path) -> None:
    done = verify(unit_root, *(unit.name for unit in LAYER_UNITS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_the_tryboot_reboot_is_the_backends_own_decision() -> None:
    """The agent may only ask; the backend reboots with "0 tryboot" only while RAUC's trial request stands."""
    unit = (RAUC_OVERLAY / "etc/systemd/system/wardsight-tryboot.service").read_text()
    lines = [line for line in unit.splitlines() if line and not line.startswith("#")]
    assert "ExecStart=/usr/lib/wardsight/rauc-tryboot-backend reboot" in lines
    assert "Type=oneshot" in lines and "RefuseManualStop=yes" in lines
    assert not any(line.startswith(("User=", "[Install]")) for line in lines)  # root, started on request only
    backend = (RAUC_OVERLAY / "usr/lib/wardsight/rauc-tryboot-backend").read_text()
    assert backend.splitlines()[-1] == 'exec /opt/wardsight/venv/bin/python3 -I -m firmware.system.tryboot "$@"'


def test_polkit_lets_the_agent_start_exactly_its_two_reboot_units() -> None:
    rules = [IMAGES / "polkit/50-wardsight.rules", RAUC_OVERLAY / "etc/polkit-1/rules.d/51-wardsight-tryboot.rules"]
    units = []
    for rule in rules:
        text = rule.read_text()
        assert text.count("polkit.Result.YES") == 1 and 'subject.user == "wardsight"' in text
        assert 'action.lookup("verb") == "start"' in text
        units += re.findall(r'action\.lookup\("unit"\) == "([^"]+)"', text)
    assert units == ["wardsight-reboot.service", "wardsight-tryboot.service"]
