"""RAUC busy or not answering: the updater waits (a few tries *and* a while), then gives up with the reason.

The case that matters: the agent is restarted (systemd's watchdog, a crash) while ``rauc install`` runs in RAUC's
service. The new start is in ``installing`` and calls ``rauc install`` again; RAUC answers "Already processing" until
the first install ends, minutes later. Three quick tries must not fail the update.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from firmware.ota.rauc import CommandResult, Runner, run_command
from tests.device.test_system_update import World, offer, states

BUSY = CommandResult(1, "", "Failed to contact rauc service: Already processing a different method\n")


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    return World(tmp_path, monkeypatch)


def busy_installs(world: World, busy_until: float) -> Runner:
    """RAUC's service, busy with an earlier install until the clock reaches ``busy_until``."""

    def runner(argv: Sequence[str], timeout: float) -> CommandResult:
        if "install" in argv and world.now < busy_until:
            return BUSY
        return run_command(argv, timeout)

    return runner


def test_a_restart_during_the_install_waits_for_rauc_then_installs(world: World) -> None:
    updater = world.updater()
    updater.stage(world.bundle(), offer())
    updater.rauc.runner = busy_installs(world, busy_until=world.now + 600)  # an earlier start's install: 10 min
    for _ in range(60):  # the client steps every few seconds while an update is in flight
        assert updater.step() == []
        world.now += 10
    assert updater.state.phase == "installing" and updater.state.attempts == 60
    assert states(updater.step()) == ["installed", "rebooting"]
    assert world.reboots == ["tryboot"]


def test_rauc_busy_for_ever_fails_with_the_reason_after_the_window(world: World) -> None:
    updater = world.updater()
    updater.stage(world.bundle(), offer())
    updater.rauc.runner = busy_installs(world, busy_until=float("inf"))
    window = updater.settings.retry_seconds
    steps = 0
    while updater.state.phase == "installing" or steps == 0:
        made = updater.step()
        steps += 1
        world.now += 30
        assert steps < 200, "never gave up"
    (report,) = made
    assert report.state == "failed" and report.reason is not None and report.reason.startswith("rauc_busy")
    assert (steps - 1) * 30 >= window > (steps - 2) * 30, "gave up at the end of the window, not before"
    assert updater.state.phase == "idle"


@pytest.mark.parametrize("later", [10.0, 7000.0])
def test_a_retry_window_from_another_boot_starts_anew(world: World, later: float) -> None:
    """The monotonic clock restarts with each boot: a window from another boot (by its boot id) starts anew, whether
    the new boot's clock is below or above the old one's."""
    updater = world.updater()
    updater.stage(world.bundle(), offer())
    runner = updater.rauc.runner = busy_installs(world, busy_until=float("inf"))
    world.now = 5000.0
    updater.step()
    assert updater.state.retry_since == 5000.0
    world.now += 900
    updater.step()
    world.fake.boot("power_cut")  # a new boot id
    world.now = later
    updater = world.updater()
    updater.rauc.runner = runner
    updater.step()
    assert updater.state.phase == "installing" and updater.state.retry_since == later
    assert updater.state.attempts == 3, "tries counted across boots; the time window is per boot"
