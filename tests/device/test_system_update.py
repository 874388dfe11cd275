"""System updates with RAUC on the device (firmware/ota/system_update.py), against a faithful fake ``rauc``.

The fake (tests/device/fakes/rauc/) is RAUC's command line run as a real process over a system kept in a JSON
file: it verifies bundle signatures against its keyring, refuses another compatible with RAUC's own words, writes
the inactive slot, arms a one-shot try of it (set-primary), and answers ``rauc status --output-format=json`` with
RAUC's field names. ``FakeRaucSystem.boot`` is the reboot: what the Pi's firmware does with a tryboot, a normal
reboot, a power cut or a system that never comes up (the watchdog resets the board, the firmware boots the
primary). A reboot is a new process: each test makes a new :class:`SystemUpdater` after one, from the state on
disk. Where the machine has RAUC itself (Debian's ``rauc``, D-Bus, squashfs-tools, root), the last test runs the
same updater against RAUC's own service on a private bus, so the fake's texts and fields are checked, not assumed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from firmware.jobs.hooks import SelfTestOutcome
from firmware.ota.health import FrameCounts, HealthCheck
from firmware.ota.rauc import CommandResult, Rauc, RaucError, Runner, failure_reason, parse_status, run_command
from firmware.ota.slotstate import STATE_FILE as SLOTS_STATE
from firmware.ota.slotstate import SlotState, Trial
from firmware.ota.system_state import (
    SlotRef,
    SystemOffer,
    SystemReport,
    SystemState,
    SystemStateStore,
    SystemUpdateSettings,
    ending,
    reboot_kind,
    where_now,
)
from firmware.ota.system_update import SystemUpdater, busy_reason, update_lock
from firmware.system.autoboot import Autoboot
from firmware.system.raucconf import IMAGE_ROTA_SLOTS
from firmware.system.tryboot import Booted, Facts, TrybootError, decide
from tests.conftest import ROOT
from tests.device.fakes.rauc import ENV, Bootloader, FakeRaucSystem, make_bundle
from tests.device.fakes.rauc.cli import BACKEND_REFUSED
from wardsight.sysversion import version_key

COMPATIBLE = "wardsight-rpi5"


class World:
    """A device with the fake RAUC system, its agent's self-test and health check, and the reboots it asked for."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bootloader: Bootloader = "tryboot") -> None:
        self.fake = FakeRaucSystem(tmp_path / "rauc", compatible=COMPATIBLE, bootloader=bootloader)
        monkeypatch.setenv(ENV, str(self.fake.path))
        self.device = tmp_path / "device"
        self.downloads = tmp_path / "verified"
        self.downloads.mkdir()
        self.reboots: list[str] = []
        self.self_test = SelfTestOutcome(True, "ok", "1 person, 41 ms")
        self.verdict: str | None = "ok"
        self.now = 1000.0  # the monotonic clock
        self.running_version: str | None = None  # None: what the booted image says (fake.release_version)

    def updater(self, **kwargs: object) -> SystemUpdater:
        parts: dict[str, object] = {
            "reboot": self.reboots.append,
            "self_test": lambda: self.self_test,
            "health": lambda: self.verdict,
            "boot_id": self.fake.boot_id,
            "running_version": lambda: self.running_version or self.fake.release_version(),
            "clock": lambda: self.now,
        }
        return SystemUpdater(self.device, Rauc(self.fake.command), **{**parts, **kwargs})  # type: ignore[arg-type]

    def bundle(self, version: str | None = "1.1.0", compatible: str = COMPATIBLE, **kwargs: object) -> Path:
        return make_bundle(self.downloads / f"{version}.raucb", compatible=compatible, version=version, **kwargs)  # type: ignore[arg-type]

    def reboot(self) -> str:
        """The reboot the updater asked for last (a new process follows)."""
        return self.fake.boot(self.reboots[-1])  # type: ignore[arg-type]


def offer(version: str = "1.1.0", compatible: str = COMPATIBLE, rollback: bool = False) -> SystemOffer:
    return SystemOffer(rollout_id="r1", version=version, compatible=compatible, rollback=rollback)


def states(reports: list[SystemReport]) -> list[str]:
    return [r.state for r in reports]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    return World(tmp_path, monkeypatch)


def install_and_tryboot(world: World, version: str = "1.1.0") -> SystemUpdater:
    """Stage, check, install, ask for the tryboot, reboot: the updater of the first start after it."""
    updater = world.updater()
    bundle = world.bundle(version)
    assert updater.stage(bundle, offer(version)).state == "downloaded"
    assert states(updater.step()) == ["installed", "rebooting"]
    assert world.reboots == ["tryboot"]
    assert not bundle.exists(), "the bundle is deleted once the slot holds it"
    assert world.reboot() == "rootfs.1"
    return world.updater()


# ---- the whole way ------------------------------------------------------------------------------------------


def test_update_installs_tries_and_confirms_the_new_slot(world: World) -> None:
    updater = world.updater()
    assert updater.wants(offer()) is None  # 1.0.0 runs: fetch the bundle
    bundle = world.bundle()
    updater.stage(bundle, offer())
    assert states(updater.step()) == ["installed", "rebooting"]
    assert [c for c in world.fake.calls() if c[0] != "status"] == [
        ["info", "--output-format=json", str(bundle)],  # RAUC's signature and manifest checks first
        ["install", str(bundle)],
    ]
    assert world.fake.booted == "rootfs.0" and world.fake.primary == "rootfs.0", "nothing is permanent yet"
    assert world.reboots == ["tryboot"] and updater.state.phase == "rebooting"

    assert world.reboot() == "rootfs.1"  # the firmware tries the new slot once
    frames = [FrameCounts(0, 0, 0)]
    check = HealthCheck(lambda: frames[-1], need=30, within=120.0, max_failed=2, clock=lambda: world.now)
    world.verdict = None
    updater = world.updater(health=check.verdict)
    assert states(updater.step()) == ["trial"]  # self-test passed; the health check has not yet decided
    assert world.fake.calls("mark-good") == [] and updater.state.self_test_ok
    frames.append(FrameCounts(31, 31, 0))
    done = updater.step()
    assert done == [SystemReport("r1", "healthy", "1.1.0", "rootfs.1", None)]
    assert world.fake.calls("mark-good") == [["status", "mark-good", "booted"]]
    assert world.fake.primary == "rootfs.1" and updater.state.phase == "idle"
    assert states(updater.pending_reports()) == ["downloaded", "installed", "rebooting", "trial", "healthy"]

    assert world.fake.boot("normal") == "rootfs.1", "confirmed: a normal reboot keeps the new system"
    world.running_version = "0"  # what the image says no longer matters: RAUC knows what it installed
    assert world.updater(running_version=lambda: None).wants(offer()) == SystemReport(
        "r1", "healthy", "1.1.0", None, "already_running"
    )


def test_reports_stay_queued_until_acknowledged(world: World) -> None:
    updater = world.updater()
    report = updater.stage(world.bundle(), offer())
    assert updater.pending_reports() == [report]
    world.updater().ack(report)
    assert world.updater().pending_reports() == []


# ---- the trial fails ----------------------------------------------------------------------------------------


def test_self_test_failure_marks_the_slot_bad_and_boots_back(world: World) -> None:
    updater = install_and_tryboot(world)
    world.self_test = SelfTestOutcome(False, "bad_output", "scores outside [0, 1]")
    assert states(updater.step()) == ["trial"]
    assert world.reboots[-1] == "normal" and updater.state.phase == "reverting"
    assert not world.fake.good("rootfs.1") and world.fake.calls("mark-good") == []

    assert world.reboot() == "rootfs.0"
    updater = world.updater()
    (report,) = updater.step()
    assert report == SystemReport("r1", "rolled_back", "1.1.0", "rootfs.1", "self_test_failed: bad_output: "
                                  "scores outside [0, 1]")  # fmt: skip
    assert updater.state.phase == "idle" and world.fake.primary == "rootfs.0"
    assert world.fake.boot("normal") == "rootfs.0" and world.fake.release_version() == "1.0.0"


def test_failed_health_check_boots_back(world: World) -> None:
    updater = install_and_tryboot(world)
    world.verdict = "health_check_missed"
    updater.step()
    assert world.reboots[-1] == "normal"
    world.reboot()
    (report,) = world.updater().step()
    assert (report.state, report.reason) == ("rolled_back", "health_check_failed: health_check_missed")


def test_an_agent_that_keeps_restarting_in_the_trial_boot_fails_it(world: World) -> None:
    world.verdict = None
    updater = install_and_tryboot(world)
    assert states(updater.step()) == ["trial"]
    for _ in range(3):  # the new system's agent crashes; systemd starts it again
        updater = world.updater()
        updater.step()
    assert updater.state.phase == "reverting" and updater.state.reason == "agent_restarted: 4 starts in the trial boot"
    world.reboot()
    assert states(world.updater().step()) == ["rolled_back"]


# ---- a revert whose reboot comes back to the new slot ---------------------------------------------------------


def killed_after(command: str) -> Runner:
    """RAUC's command runner in an agent that is killed (SIGKILL) right after ``rauc status <command>`` returned."""

    def run(argv: Sequence[str], timeout: float) -> CommandResult:
        done = run_command(argv, timeout)
        if command in argv:
            raise PowerCut
        return done

    return run


def test_the_fake_refuses_to_mark_the_committed_slot_bad_as_the_pi_backend_does(world: World) -> None:
    rauc = Rauc(world.fake.command)
    with pytest.raises(RaucError) as caught:
        rauc.mark_bad("booted")
    assert caught.value.reason == f"rauc mark: Failed marking slot rootfs.0 as bad: {BACKEND_REFUSED}"
    assert BACKEND_REFUSED.endswith("rauc-tryboot-backend: Child process exited with code 1")
    assert world.fake.good("rootfs.0") and world.fake.primary == "rootfs.0"
    facts = Facts(IMAGE_ROTA_SLOTS, Autoboot(committed=2, trial=3), None, Booted(2, False))
    with pytest.raises(TrybootError, match="refusing to mark A bad: it is the committed slot"):  # the backend's own
        decide(facts, ["set-state", "A", "bad"])
    install_and_tryboot(world)  # an uncommitted trial of rootfs.1: an install would overwrite the fallback
    with pytest.raises(RaucError, match="Installation error: Failed marking slot rootfs.0 non-bootable: custom "):
        rauc.install(world.bundle("1.2.0"))
    assert world.fake.release_version() == "1.1.0" and world.fake.good("rootfs.0")
    rauc.mark_bad("booted")  # the trial's own slot may be


def test_a_revert_that_comes_back_to_the_committed_new_slot_tries_the_old_one_and_commits_it(world: World) -> None:
    """The Pi: the trial's mark-good landed (the agent was killed right after it), then the trial failed. The backend
    refuses to mark the committed slot bad, so the revert's normal reboot comes back to it; the old slot is made
    primary again (a one-shot try: the reboot is a tryboot), and marked good once it runs, which commits it."""
    updater = install_and_tryboot(world)
    updater.rauc.runner = killed_after("mark-good")
    with pytest.raises(PowerCut):
        updater.step()
    assert world.fake.primary == "rootfs.1", "committed"
    world.verdict = "too_few_frames: 3 of 30"  # the restarted agent's health check fails
    updater = world.updater()
    assert updater.step() == [] and updater.state.phase == "reverting" and world.reboots[-1] == "normal"
    assert world.fake.calls("mark-bad") == [["status", "mark-bad", "booted"]] and world.fake.good("rootfs.1")

    assert world.reboot() == "rootfs.1", "a normal boot starts the committed slot"
    assert world.updater().step() == [] and world.reboots[-1] == "tryboot"
    assert world.fake.read()["bootloader"]["armed"] == "rootfs.0", "the old slot is armed, once"
    assert world.fake.boot("power_cut") == "rootfs.1", "a cut before the tryboot: the committed slot again"
    updater = world.updater()
    assert updater.step() == [] and world.reboots[-1] == "tryboot" and updater.state.reverts == 2
    world.now += SystemUpdateSettings().reboot_timeout
    assert world.updater().step() == [] and world.reboots[-2:] == ["tryboot", "tryboot"], "asked again: a tryboot"

    assert world.reboot() == "rootfs.0"
    (report,) = world.updater().step()
    assert report == SystemReport("r1", "rolled_back", "1.1.0", "rootfs.1", "health_check_failed: too_few_frames: "
                                  "3 of 30")  # fmt: skip
    assert world.fake.calls("mark-good")[-1] == ["status", "mark-good", "booted"]
    assert world.fake.primary == "rootfs.0" and not world.fake.good("rootfs.1")
    assert world.fake.boot("power_cut") == "rootfs.0" and world.fake.boot("tryboot") == "rootfs.0"
    assert world.fake.release_version() == "1.0.0"


def test_a_revert_that_comes_back_on_a_grub_style_bootloader_puts_the_old_slot_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a revert whose mark-bad RAUC was too busy for, the old slot is activated and tried; a grub-style
    bootloader boots it as a try (its TRY set), so the old slot is marked good too: else, with the new slot bad and
    the old one tried, the next boot would have no good untried slot (the twin's GRUB script would take the
    committed one: the new slot)."""
    world = World(tmp_path, monkeypatch, bootloader="order")
    updater = install_and_tryboot(world)
    busy = [CommandResult(1, "", "Failed to contact rauc service: Already processing a different method\n")]
    updater.rauc.runner = lambda argv, t: busy.pop() if "mark-bad" in argv and busy else run_command(argv, t)
    world.verdict = "too_few_frames: 3 of 30"
    assert states(updater.step()) == ["trial"] and world.reboots[-1] == "normal"
    assert world.reboot() == "rootfs.1", "not marked bad: still first in the boot order"
    assert world.updater().step() == [] and world.fake.primary == "rootfs.0" and not world.fake.good("rootfs.1")
    assert world.reboot() == "rootfs.0"
    (report,) = world.updater().step()
    assert (report.state, report.reason) == ("rolled_back", "health_check_failed: too_few_frames: 3 of 30")
    assert world.fake.calls("mark-good") == [["status", "mark-good", "booted"]]
    assert world.fake.boot("normal") == "rootfs.0"


def test_a_new_slot_that_never_boots_is_tried_twice_then_reported(world: World) -> None:
    world.fake.break_slot("rootfs.1")
    updater = world.updater()
    updater.stage(world.bundle(), offer())
    updater.step()
    assert world.reboot() == "rootfs.0", "the watchdog reset the board; the firmware booted the primary"
    updater = world.updater()
    again = updater.step()
    assert [(r.state, r.reason) for r in again] == [("rebooting", "tryboot_again")]
    assert world.reboots == ["tryboot", "tryboot"]
    assert world.reboot() == "rootfs.0"
    (report,) = world.updater().step()
    assert report == SystemReport("r1", "rolled_back", "1.1.0", "rootfs.1", "new_slot_did_not_boot")
    assert not world.fake.good("rootfs.1") and world.fake.primary == "rootfs.0"


def test_a_reboot_that_never_comes_is_asked_again_then_given_up(world: World) -> None:
    updater = world.updater()
    updater.stage(world.bundle(), offer())
    updater.step()
    assert world.updater().step() == [] and world.reboots == ["tryboot"], "an agent restart, same boot: wait"
    for _ in range(2):
        world.now += SystemUpdateSettings().reboot_timeout
        assert world.updater().step() == []
    assert world.reboots == ["tryboot"] * 3
    world.now += SystemUpdateSettings().reboot_timeout
    (report,) = world.updater().step()
    assert (report.state, report.reason) == ("failed", "reboot_not_happening: the requested reboot never came")
    assert not world.fake.good("rootfs.1"), "the installed slot is marked bad: a later reboot never tries it"
    assert world.fake.boot("tryboot") == "rootfs.0"


# ---- refused before anything is installed ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bundle", "offered", "reason"),
    [
        ({"compatible": "wardsight-rpi4"}, offer(compatible="wardsight-rpi4"),
         "incompatible: the bundle is for 'wardsight-rpi4', this system is 'wardsight-rpi5'"),
        ({}, offer(compatible="wardsight-rpi4"), "compatible_mismatch: signed as 'wardsight-rpi4', the bundle says "
         "'wardsight-rpi5'"),
        ({"version": "1.2.0"}, offer(), "version_mismatch: signed as 1.1.0, the bundle says 1.2.0"),
        ({"version": "0.9.0"}, offer("0.9.0"), "not_newer: 0.9.0 is older than the running 1.0.0"),
        ({"version": "1.1.0"}, offer("1.1.0", rollback=True), "not_older: a rollback to 1.1.0 but 1.0.0 runs"),
        ({"key": None}, offer(), "bundle_signature_invalid: Invalid bundle format: Signature size is 0"),
        ({"key": b"not the keyring's key".ljust(32)}, offer(), "bundle_signature_invalid: signature verification "
         "failed: Verify error: unable to get local issuer certificate"),
    ],
    ids=["other-board", "compatible-not-signed", "version-not-signed", "older", "rollback-newer", "unsigned",
         "wrong-key"],
)  # fmt: skip
def test_bundles_that_must_not_be_installed_are_refused_with_the_reason(
    world: World, bundle: dict[str, object], offered: SystemOffer, reason: str
) -> None:
    updater = world.updater()
    path = world.bundle(**{"version": offered.version, **bundle})  # type: ignore[arg-type]
    updater.stage(path, offered)
    assert updater.step() == [SystemReport("r1", "rejected", offered.version, None, reason)]
    assert world.fake.calls("install") == [] and world.reboots == []
    assert updater.state.phase == "idle" and not path.exists()


def test_an_explicit_rollback_installs_an_older_version(world: World) -> None:
    install_and_tryboot(world, "1.1.0").step()
    updater = world.updater()
    updater.stage(world.bundle("1.0.1"), offer("1.0.1", rollback=True))
    assert states(updater.step()) == ["installed", "rebooting"]
    assert world.reboot() == "rootfs.0"
    assert states(world.updater().step()) == ["trial", "healthy"]
    assert world.fake.release_version() == "1.0.1"


def test_the_running_version_is_not_installed_again(world: World) -> None:
    updater = world.updater()
    assert updater.wants(offer("1.0.0")) == SystemReport("r1", "healthy", "1.0.0", None, "already_running")
    updater.stage(world.bundle("1.0.0"), offer("1.0.0"))  # a caller that staged it anyway
    assert states(updater.step()) == ["healthy"] and world.fake.calls("install") == []


def test_rauc_refusing_the_install_is_reported_and_nothing_reboots(world: World) -> None:
    world.fake.update(install_error="No space left on device")
    updater = world.updater()
    updater.stage(world.bundle(), offer())
    (report,) = updater.step()
    assert report.state == "failed" and report.slot == "rootfs.1"
    assert report.reason == "install_failed: Installation error: Failed updating slot rootfs.1: No space left on device"
    assert world.reboots == [] and not world.fake.good("rootfs.1") and updater.state.phase == "idle"


def test_a_busy_system_update_defers_another_offer(world: World) -> None:
    updater = world.updater()
    updater.stage(world.bundle(), offer())
    other = SystemOffer(rollout_id="r2", version="1.2.0", compatible=COMPATIBLE)
    assert updater.wants(other) == SystemReport("r2", "deferred", "1.2.0", None, "system_update_in_progress")
    assert updater.stage(world.bundle("1.2.0"), other).state == "deferred"
    assert updater.state.offer == offer()


# ---- power cuts and kills at every persisted step --------------------------------------------------------------


class PowerCut(BaseException):
    """The process ends here (not an Exception: nothing in the updater may catch it)."""


def count_saves(monkeypatch: pytest.MonkeyPatch, cut_at: int | None) -> list[int]:
    """Count :meth:`SystemStateStore.save` calls; end the process right after the ``cut_at``-th (it is on disk)."""
    real = SystemStateStore.save
    count = [0]

    def save(self: SystemStateStore, state: SystemState) -> None:
        real(self, state)
        count[0] += 1
        if count[0] == cut_at:
            raise PowerCut

    monkeypatch.setattr(SystemStateStore, "save", save)
    return count


def drive(world: World, cut: str | None) -> list[SystemReport]:
    """Run an update to its end as the agent would (a reboot, or a cut, starts a new updater); returns the reports."""
    updater = world.updater()
    with contextlib.suppress(PowerCut):
        updater.stage(world.bundle(), offer())
    for _ in range(20):
        reboots = len(world.reboots)
        try:
            updater.step()
        except PowerCut:
            if cut == "power":
                world.fake.boot("power_cut")
            updater = world.updater()  # SIGKILL: systemd starts the agent again (same boot)
            continue
        if len(world.reboots) > reboots:
            world.reboot()
            updater = world.updater()
        elif updater.state.phase == "idle":
            return updater.pending_reports()
        else:
            world.now += SystemUpdateSettings().reboot_timeout
    raise AssertionError(f"no end: {updater.state}")


@pytest.mark.parametrize("cut", ["power", "kill"])
def test_a_cut_after_any_persisted_step_still_ends_healthy(
    world: World, monkeypatch: pytest.MonkeyPatch, cut: str
) -> None:
    saves = count_saves(monkeypatch, None)
    assert states(drive(world, None))[-1] == "healthy"
    total = saves[0]
    assert total >= 8
    for at in range(1, total + 1):
        world.__init__(world.device.parent / f"cut-{cut}-{at}", monkeypatch)  # type: ignore[misc]
        count_saves(monkeypatch, at)
        reports = drive(world, cut)
        assert reports[-1] == SystemReport("r1", "healthy", "1.1.0", "rootfs.1", None), (at, reports)
        assert world.fake.primary == "rootfs.1" and world.fake.booted == "rootfs.1", at
        assert world.fake.boot("power_cut") == "rootfs.1" and world.fake.release_version() == "1.1.0", at


def test_an_unreadable_state_file_starts_idle(world: World) -> None:
    updater = world.updater()
    updater.stage(world.bundle(), offer())
    updater.store.path.write_text("{ not json")
    (updater.store.root / ".state.json.x1.tmp").write_text("half a write")
    updater = world.updater()
    assert updater.state.phase == "idle" and list(updater.store.root.glob(".*.tmp")) == []


# ---- one update at a time ------------------------------------------------------------------------------------


def test_a_model_update_holding_the_lock_defers_the_system_update(world: World) -> None:
    updater = world.updater()
    with update_lock(world.device, "model") as lock:  # a model update is downloading when the system offer comes
        assert lock is not None
        updater.stage(world.bundle(), offer())
        assert updater.step() == [SystemReport("r1", "deferred", "1.1.0", None, "model_update_in_progress")]
        assert updater.step() == [], "said once"
        assert world.fake.calls() == [], "RAUC untouched"
    assert states(updater.step()) == ["installed", "rebooting"]


def test_a_model_on_trial_defers_the_system_update(world: World) -> None:
    slots = world.device / "models" / "slots"
    slots.mkdir(parents=True)
    (slots / SLOTS_STATE).write_text(SlotState(trial=Trial(slot="b", rollout_id="m1")).model_dump_json())
    updater = world.updater()
    updater.stage(world.bundle(), offer())
    assert states(updater.step()) == ["deferred"] and world.fake.calls("info") == []
    (slots / SLOTS_STATE).write_text(SlotState().model_dump_json())  # the model passed its health check
    assert states(updater.step()) == ["installed", "rebooting"]


def test_a_system_update_in_flight_keeps_model_updates_out_across_reboots(world: World) -> None:
    updater = install_and_tryboot(world)
    with update_lock(world.device, "model") as lock:
        assert lock is None
    assert busy_reason(world.device, "model") == "system_update_in_progress"
    updater.step()
    with update_lock(world.device, "model") as lock:
        assert lock is not None and lock.holder == "model"


def test_the_lock_is_one_at_a_time_across_threads_and_processes(world: World) -> None:
    with update_lock(world.device, "system") as held:
        assert held is not None
        other: list[object] = []

        def try_model() -> None:
            with update_lock(world.device, "model") as lock:
                other.append(lock)

        thread = threading.Thread(target=try_model)
        thread.start()
        thread.join()
        assert other == [None]
        assert busy_reason(world.device, "model") == "system_update_in_progress"
    holder = subprocess.Popen(  # another process holds it, then is killed: the lock goes with it
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from firmware.ota.system_update import "
         "update_lock\nwith update_lock(Path(sys.argv[1]), 'model') as lock:\n print(lock is not None, flush=True)"
         "\n time.sleep(60)", str(world.device)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        with update_lock(world.device, "system") as lock:
            assert lock is None
        assert busy_reason(world.device, "system") == "model_update_in_progress"
    finally:
        holder.kill()
        holder.wait()
    with update_lock(world.device, "system") as lock:
        assert lock is not None


# ---- the RAUC wrapper and the pure parts ---------------------------------------------------------------------

RAUC_STATUS = """{"compatible":"wardsight-rpi5","variant":"","booted":"B","boot_primary":"rootfs.1","slots":[
{"rootfs.0":{"class":"rootfs","device":"/dev/mmcblk0p5","type":"raw","bootname":"A","state":"inactive",
"parent":null,"mountpoint":null,"boot_status":"good"}},
{"rootfs.1":{"class":"rootfs","device":"/dev/mmcblk0p6","type":"raw","bootname":"B","state":"booted",
"parent":null,"mountpoint":"/","boot_status":"good","slot_status":{"bundle":{"compatible":"wardsight-rpi5",
"version":"1.1.0","hash":"ab12"},"checksum":{"sha256":"cd34","size":1048576},"installed":{"timestamp":
"2026-12-08T10:00:00Z","count":1},"activated":{"timestamp":"2026-12-08T10:00:01Z","count":1},"status":"ok"}}},
{"bootloader.0":{"class":"bootloader","device":"/dev/mmcblk0","type":"boot-emmc","bootname":null,
"state":"inactive","parent":null,"mountpoint":null,"boot_status":null}}]}"""


def test_rauc_status_json_is_read_with_rauc_s_field_names() -> None:
    status = parse_status(RAUC_STATUS)
    assert status.compatible == "wardsight-rpi5" and status.boot_primary == "rootfs.1"
    booted, other = status.booted_slot(), status.other()
    assert booted is not None and (booted.name, booted.bundle_version, booted.installed_status) == (
        "rootfs.1", "1.1.0", "ok")  # fmt: skip
    assert other is not None and other.name == "rootfs.0" and other.bundle_version is None
    with pytest.raises(RaucError) as caught:
        parse_status('{"compatible": "x"}')
    assert caught.value.code == "status_unreadable"


def test_rauc_failures_carry_rauc_s_own_reason() -> None:
    install = CommandResult(1, "installing\n  0% Installing\nLastError: Compatible mismatch: Expected 'a' but bundle "
                               "manifest has 'b'\nidle\n", "Installing `/b.raucb` failed\n")  # fmt: skip
    assert failure_reason(install) == "Compatible mismatch: Expected 'a' but bundle manifest has 'b'"
    rauc = Rauc(runner=lambda argv, timeout: install)
    with pytest.raises(RaucError) as caught:
        rauc.install(Path("/b.raucb"))
    assert caught.value.code == "compatible_mismatch" and not caught.value.retryable
    busy = Rauc(runner=lambda argv, timeout: CommandResult(1, "", "Failed to contact rauc service: Already "
                                                                  "processing a different method\n"))  # fmt: skip
    with pytest.raises(RaucError) as caught:
        busy.mark_good()
    assert caught.value.code == "rauc_busy" and caught.value.retryable
    with pytest.raises(RaucError) as caught:
        Rauc(("/nonexistent/rauc",)).status()
    assert caught.value.code == "rauc_missing"
    with pytest.raises(RaucError) as caught:
        Rauc((sys.executable, "-c", "import time; time.sleep(5)"), timeout=0.2).status()
    assert caught.value.code == "rauc_timeout" and caught.value.retryable


def test_a_busy_rauc_is_retried_then_reported(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    updater = world.updater()
    updater.stage(world.bundle(), offer())
    busy = CommandResult(1, "", "Failed to contact rauc service: Already processing a different method\n")
    updater.rauc.runner = lambda argv, timeout: busy
    assert updater.step() == [] and updater.step() == []
    assert updater.step() == [], "three tries, but not yet for retry_seconds (test_system_update_busy.py)"
    world.now += updater.settings.retry_seconds
    (report,) = updater.step()
    assert (report.state, report.reason) == ("failed", "rauc_busy: Failed to contact rauc service: Already "
                                                       "processing a different method")  # fmt: skip


def test_versions_order_as_semver_core() -> None:
    assert version_key("1.2") < version_key("1.10") < version_key("2026.1.0")
    assert version_key("1.2.0") == version_key("1.2") == version_key("v1.2+build7")
    assert version_key("1.3.0-rc1") < version_key("1.3.0")
    with pytest.raises(ValueError):
        version_key("next")


def test_a_pre_release_older_by_semver_is_not_installed(world: World) -> None:
    world.running_version = "1.1.0-rc.10"
    updater = world.updater()
    updater.stage(world.bundle("1.1.0-rc.2"), offer("1.1.0-rc.2"))
    (report,) = updater.step()
    assert (report.state, report.reason) == ("rejected", "not_newer: 1.1.0-rc.2 is older than the running 1.1.0-rc.10")


def test_where_now_tells_a_reboot_from_an_agent_restart() -> None:
    a, b = SlotRef(name="rootfs.0", bootname="A"), SlotRef(name="rootfs.1", bootname="B")
    state = SystemState(phase="rebooting", boot_id="b1", requested_at=100.0, reboot_requests=1, tryboots=1,
                        from_slot=a, to_slot=b)  # fmt: skip
    s = SystemUpdateSettings(reboot_timeout=60.0)
    assert where_now(state, "rootfs.0", "b1", 120.0, s) == "wait"
    assert where_now(state, "rootfs.0", "b1", 161.0, s) == "reboot_again"
    assert where_now(state, "rootfs.1", "b2", 0.0, s) == "trial"
    assert where_now(state, "rootfs.0", "b2", 0.0, s) == "tryboot_again"
    assert where_now(state.model_copy(update={"tryboots": 2}), "rootfs.0", "b2", 0.0, s) == "did_not_boot"
    assert where_now(state, "rootfs.9", "b2", 0.0, s) == "unknown_slot"
    reverting = state.model_copy(update={"phase": "reverting", "reason": "self_test_failed: x"})
    assert where_now(reverting, "rootfs.0", "b2", 0.0, s) == "commit_old", "RAUC names no primary: make sure"
    assert where_now(reverting, "rootfs.0", "b2", 0.0, s, primary="rootfs.0") == "reverted"
    again = reverting.model_copy(update={"reverts": 1})  # back on the old slot by a try of it (GRUB: TRY=1)
    assert where_now(again, "rootfs.0", "b2", 0.0, s, primary="rootfs.0") == "commit_old"
    assert where_now(reverting, "rootfs.0", "b2", 0.0, s, primary="rootfs.1") == "commit_old"
    assert where_now(reverting, "rootfs.1", "b2", 0.0, s) == "revert_again"
    assert ending("commit_old", reverting, "rootfs.0") == ("rolled_back", "self_test_failed: x")
    assert [reboot_kind(state), reboot_kind(reverting)] == ["tryboot", "normal"]
    assert reboot_kind(reverting.model_copy(update={"reverts": 1})) == "tryboot", "the old slot is tried"


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    before = threading.active_count()
    yield
    assert threading.active_count() <= before


# ---- the same updater against the real RAUC (where this machine has it) ------------------------------------------

# A custom bootloader backend as RAUC calls it (get-primary, set-primary, get-state, set-state, get-current), its
# state in files: what RAUC asks of the Pi's tryboot backend, without a Pi. The test chooses which slot each
# "boot" runs (rauc service --override-boot-slot), as the fake's boot() does.
BACKEND = """#!/bin/sh
D="$(dirname "$0")/bootloader"; mkdir -p "$D"; [ -f "$D/primary" ] || echo A > "$D/primary"
echo "$*" >> "$D/calls"
case "$1" in
  get-primary) cat "$D/primary" ;;
  set-primary) echo "$2" > "$D/primary" ;;
  get-state) if [ -f "$D/bad.$2" ]; then echo bad; else echo good; fi ;;
  set-state) if [ "$3" = bad ]; then touch "$D/bad.$2"; else rm -f "$D/bad.$2"; fi ;;
  get-current) cat "$D/booted" ;;
  *) exit 1 ;;
esac
"""

SYSTEM_CONF = """[system]
compatible=wardsight-rpi5
bootloader=custom
statusfile={root}/status.raucs
[keyring]
path={root}/release.cert.pem
[handlers]
bootloader-custom-backend={root}/backend.sh
[slot.rootfs.0]
device={root}/slot-a.img
type=raw
bootname=A
[slot.rootfs.1]
device={root}/slot-b.img
type=raw
bootname=B
"""


class RealRauc:
    """RAUC's own service on a private D-Bus session bus, with a system.conf for two file-backed slots."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        root.mkdir()
        for name in ("release", "other"):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                            "-keyout", root / f"{name}.key.pem", "-out", root / f"{name}.cert.pem",
                            "-subj", f"/O=WardSight test/CN={name}"], check=True, capture_output=True)  # fmt: skip
        (root / "backend.sh").write_text(BACKEND)
        (root / "backend.sh").chmod(0o755)
        for slot in ("a", "b"):
            (root / f"slot-{slot}.img").write_bytes(bytes(65536))
        self.conf = root / "system.conf"
        self.conf.write_text(SYSTEM_CONF.format(root=root))
        bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        self.processes: list[subprocess.Popen[str]] = [bus]
        assert bus.stdout is not None
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.stdout.readline().strip())
        monkeypatch.setenv("DBUS_STARTER_BUS_TYPE", "session")
        self.service: subprocess.Popen[str] | None = None
        self.rauc = Rauc(("rauc", f"--conf={self.conf}"))

    def bundle(self, version: str, compatible: str = COMPATIBLE, signer: str = "release") -> Path:
        content = self.root / f"content-{version}-{compatible}-{signer}"
        content.mkdir()
        (content / "rootfs.img").write_bytes(version.encode() * 4096)
        manifest = f"[update]\ncompatible={compatible}\nversion={version}\n\n[bundle]\nformat=plain\n\n"
        (content / "manifest.raucm").write_text(manifest + "[image.rootfs]\nfilename=rootfs.img\n")
        out = self.root / f"{content.name}.raucb"
        subprocess.run(["rauc", f"--cert={self.root / (signer + '.cert.pem')}",
                        f"--key={self.root / (signer + '.key.pem')}", "bundle", content, out],
                       check=True, capture_output=True)  # fmt: skip
        return out

    def boot(self, bootname: str) -> None:
        """Stop RAUC's service and start it as a boot from ``bootname`` would (the test is the firmware)."""
        self.stop_service()
        (self.root / "bootloader").mkdir(exist_ok=True)
        (self.root / "bootloader" / "booted").write_text(bootname + "\n")
        self.service = subprocess.Popen(["rauc", f"--conf={self.conf}", "service", f"--override-boot-slot={bootname}"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        for _ in range(100):
            try:
                self.rauc.status()
                return
            except RaucError:
                threading.Event().wait(0.1)
        raise AssertionError("rauc service did not start")

    def calls(self) -> list[str]:
        return (self.root / "bootloader" / "calls").read_text().splitlines()

    def stop_service(self) -> None:
        if self.service is not None:
            self.service.terminate()
            self.service.wait(10)
            self.service = None

    def close(self) -> None:
        self.stop_service()
        for process in self.processes:
            process.terminate()
            process.wait(10)


@pytest.fixture
def real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RealRauc]:
    missing = [tool for tool in ("rauc", "dbus-daemon", "mksquashfs", "openssl") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0 or not Path("/dev/loop-control").exists():
        pytest.skip(f"the real RAUC needs {', '.join(missing) or 'root and loop devices'} (the fake covers the rest)")
    rauc = RealRauc(tmp_path / "real", monkeypatch)
    try:
        rauc.boot("A")
        yield rauc
    finally:
        rauc.close()


def test_the_real_rauc_refuses_installs_and_confirms_like_the_fake(real: RealRauc, tmp_path: Path) -> None:
    boot, reboots, self_test = ["boot-1"], [], [SelfTestOutcome(True, "ok", "")]

    def updater() -> SystemUpdater:
        return SystemUpdater(tmp_path / "device", real.rauc, reboot=reboots.append, self_test=lambda: self_test[0],
                             health=lambda: "ok", boot_id=lambda: boot[0], running_version=lambda: "1.0.0")  # fmt: skip

    u = updater()
    u.stage(real.bundle("1.1.0", signer="other"), offer())
    assert [r.reason for r in u.step()] == [
        "bundle_signature_invalid: signature verification failed: Verify error: self-signed certificate"
    ]
    u.stage(real.bundle("1.1.0", compatible="wardsight-rpi4"), offer(compatible="wardsight-rpi4"))
    assert [r.reason for r in u.step()] == [
        "incompatible: the bundle is for 'wardsight-rpi4', this system is 'wardsight-rpi5'"
    ]
    assert not (real.root / "bootloader" / "bad.B").exists(), "nothing was installed"

    u.stage(real.bundle("1.1.0"), offer())
    assert states(u.step()) == ["installed", "rebooting"] and reboots == ["tryboot"]
    assert (real.root / "slot-b.img").read_bytes().startswith(b"1.1.0" * 4096), "RAUC wrote the inactive slot"
    writes = [c for c in real.calls() if c.startswith("set-")]
    assert writes == ["set-state B bad", "set-primary B"], "marked bad while written, then the one to try"
    real.boot("B")
    boot[0] = "boot-2"
    assert states(updater().step()) == ["trial", "healthy"]
    assert "set-state B good" in real.calls()

    # The next one fails its self-test on its trial boot: marked bad, back on B, reported with the reason.
    u = updater()
    u.stage(real.bundle("1.2.0"), offer("1.2.0"))
    assert [(r.state, r.slot) for r in u.step()] == [("installed", "rootfs.0"), ("rebooting", "rootfs.0")]
    real.boot("A")
    boot[0] = "boot-3"
    self_test[0] = SelfTestOutcome(False, "load_failed", "no model")
    assert states(updater().step()) == ["trial"] and reboots[-1] == "normal"
    assert [c for c in real.calls() if c.startswith("set-")][-1] == "set-state A bad"
    real.boot("B")
    boot[0] = "boot-4"
    (report,) = updater().step()
    assert (report.state, report.reason) == ("rolled_back", "self_test_failed: load_failed: no model")
    assert real.rauc.status().booted_slot().bundle_version == "1.1.0"  # type: ignore[union-attr]
