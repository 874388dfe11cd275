"""System updates in the amd64 twin, A/B: GRUB and RAUC's grub backend standing in for the Pi's tryboot (issue 19).

Usage (images/test-twin-ab.sh runs it as root): ab.py [--config images/config/pi4.yaml] [--keep]

The twin's rootfs with the wardsight-twin-ab layer, release 1.0.0 in slot A of a GPT disk booted by GRUB under
OVMF, enrolled to a fleet server on the host; the hospital's own commands publish RAUC bundles (1.1.0 good, 1.2.0
with an agent whose self-test fails, 1.3.0 good) and roll them out. One PASS/FAIL line per check:

1. 1.1.0 is downloaded, installed into B, B boots once, the agent marks it good, the server sees 1.1.0 on B.
2. 1.2.0 goes into A, A boots once, the agent's self-test fails: it marks A bad and boots back to B; the rollout
   shows ``rolled_back`` with the reason; B still runs 1.1.0.
3. 1.3.0: QEMU is killed while RAUC writes slot A (power cut during the install): B comes back, the agent installs
   again and reboots into A; QEMU is killed during A's first boot (before the agent judged it): B comes back, the
   agent arms A once more, A boots, passes, is marked good; the server sees 1.3.0 on A.

Every boot's serial console, the guest's journal and the server's log are kept in <cache>/last-ab-run/.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import abbundle
import abdisk
import assemble
import guest
import run
from abguest import OVMF_VARS, AbDisks, Machine
from abhost import Hospital, wait_for
from buildenv import test_keyring
from host import FleetServer, NtpServer, make_fat
from report import Report

REPO, CACHE = run.REPO, run.CACHE
FACTORY, GOOD, BROKEN, AFTER = "1.0.0", "1.1.0", "1.2.0", "1.3.0"
BOOT_TIMEOUT = float(os.environ.get("WARDSIGHT_TWIN_BOOT_TIMEOUT", "900"))  # OVMF + GRUB + kernel to the reporter
AGENT_TIMEOUT = float(os.environ.get("WARDSIGHT_TWIN_AGENT_TIMEOUT", "2400"))  # agent start, self-test, health
UPDATE_TIMEOUT = float(os.environ.get("WARDSIGHT_TWIN_UPDATE_TIMEOUT", "3600"))  # download + install under TCG
CUT_AT_PERCENT = 90  # RAUC's "Copying image to rootfs.N" step (about 2 minutes under TCG) ...
CUT_AFTER = 20.0  # ... and this many seconds into it, the power is cut
FINAL = ("healthy", "failed", "rolled_back", "rejected")
# TCG runs the model roughly ten times slower than a Raspberry Pi 5 (the plain twin processes ~0.2 frames/s): the
# trial gets the time such a device needs; the gates themselves are the same code as on the Pi.
AB_DEVICE_TOML = run.DEVICE_TOML + """
# The twin's emulated CPU is ~10x slower than a Pi: the update gates get the time it needs (device.toml [updates]).
[updates]
health_frames = 10
health_seconds = 1500
selftest_timeout = 900
max_invoke_seconds = 60
"""


class Scenario:
    def __init__(self, work: Path, report: Report, disks: AbDisks, esp_offset: int, hospital: Hospital,
                 bundles: dict[str, Path]) -> None:  # fmt: skip
        self.work, self.report, self.disks, self.esp_offset = work, report, disks, esp_offset
        self.hospital, self.bundles = hospital, bundles
        self.boots = 0
        self.machine: Machine | None = None

    def grubenv(self) -> dict[str, str]:
        env = abdisk.read_grubenv(self.disks.disk, self.esp_offset)
        print(f"twin-ab: grubenv: {' '.join(f'{k}={v}' for k, v in env.items())}", flush=True)
        return env

    def boot(self, what: str) -> tuple[Machine, str | None]:
        """Power on; the slot GRUB booted (the reporter's HELLO), None if it never said."""
        self.boots += 1
        machine = self.machine = Machine(self.disks, self.work, f"boot{self.boots}-{what}")
        line = machine.expect("HELLO", BOOT_TIMEOUT)
        found = re.search(r"slot=(\S+)", line or "")
        return machine, found.group(1) if found else None

    def boot_on(self, what: str, expected: str, name: str) -> Machine:
        """Power on and check (as ``name``) that GRUB booted slot ``expected``."""
        machine, slot = self.boot(what)
        self.check(name, slot == expected, f"GRUB booted slot {slot}")
        return machine

    def check(self, name: str, ok: bool, detail: str) -> bool:
        stamp = self.machine.stamp() if self.machine else ""
        self.report.check(name, ok, f"{detail} {stamp}")
        return ok

    def system_is(self, slot: str, version: str, since: float) -> tuple[bool, str]:
        """Does a heartbeat after ``since`` (wall clock) report ``version`` on ``slot``?"""

        def now() -> bool:
            device = self.hospital.device() or {}
            return (float(device.get("last_seen") or 0) >= since
                    and self.hospital.system() == (slot, version))  # fmt: skip

        machine = self.machine
        ok = bool(wait_for(lambda: now() or (machine is not None and not machine.running()), AGENT_TIMEOUT)) and now()
        device = self.hospital.device() or {}
        return ok, f"the server's view: system {device.get('system')}, last_seen {device.get('last_seen')}"

    def outcome(self, rollout_id: str) -> dict[str, object]:
        found = wait_for(lambda: (d := self.hospital.rollout_device(rollout_id)).get("status") in FINAL and d,
                         AGENT_TIMEOUT)  # fmt: skip
        return found or self.hospital.rollout_device(rollout_id)

    def release(self, version: str) -> str:
        summary = self.hospital.publish(self.bundles[version], test_keyring(CACHE))
        print(f"twin-ab: published {version}: {summary}", flush=True)
        return self.hospital.rollout(version)

    # ---- the three parts ------------------------------------------------------------------------------------

    def factory(self) -> Machine:
        started = time.time()
        machine = self.boot_on("factory", "A", "factory-boots-slot-a")
        ok, view = self.system_is("A", FACTORY, started)
        self.check("factory-enrolled-reports-1.0.0-on-a", ok, view)
        return machine

    def good_update(self, machine: Machine) -> Machine:
        rollout = self.release(GOOD)
        rebooted = machine.wait_exit(UPDATE_TIMEOUT)
        self.check("good-installed-then-rebooted", rebooted and "INFO update rebooting" in machine.said,
                   f"the agent's phases: {phases(machine)}")  # fmt: skip
        started = time.time()
        machine = self.boot_on("trial-1.1.0", "B", "good-trial-boots-slot-b")
        done = self.outcome(rollout)
        self.check("good-marked-good", done.get("status") == "healthy", f"rollout {rollout}: {done}")
        ok, view = self.system_is("B", GOOD, started)
        self.check("good-reports-1.1.0-on-b", ok, view)
        return machine

    def broken_update(self, machine: Machine) -> Machine:
        rollout = self.release(BROKEN)
        rebooted = machine.wait_exit(UPDATE_TIMEOUT)
        self.check("broken-installed-then-rebooted", rebooted, f"the agent's phases: {phases(machine)}")
        machine = self.boot_on("trial-1.2.0", "A", "broken-trial-boots-slot-a")
        back = machine.wait_exit(AGENT_TIMEOUT)
        self.check("broken-self-test-fails-and-reboots", back and "INFO update reverting" in machine.said,
                   f"the agent's phases: {phases(machine)}")  # fmt: skip
        env = self.grubenv()
        started = time.time()
        machine, slot = self.boot("back-on-b")
        self.check("broken-boots-back-to-slot-b", slot == "B" and env.get("A_OK") == "0",
                   f"GRUB booted slot {slot}; grubenv before: A marked bad (A_OK={env.get('A_OK')})")  # fmt: skip
        done = self.outcome(rollout)
        reason = f"{done.get('reason')} {done.get('detail')}"
        self.check("broken-reported-rolled-back", done.get("status") == "rolled_back" and "self_test_failed" in reason,
                   f"rollout {rollout}: {done}")  # fmt: skip
        ok, view = self.system_is("B", GOOD, started)
        self.check("broken-b-still-runs-1.1.0", ok, view)
        return machine

    def power_cuts(self, machine: Machine, old: str = "B") -> None:
        """1.3.0 into the slot that is not ``old`` (the committed one), with a power cut during the install and one
        during the new slot's first boot."""
        new = "A" if old == "B" else "B"
        rollout = self.release(AFTER)
        line = wait_progress(machine, CUT_AT_PERCENT, UPDATE_TIMEOUT)
        time.sleep(CUT_AFTER)
        copying = line is not None and machine.running() and not any(
            said.startswith("INFO rauc idle 100") for said in machine.said[machine.said.index(line):])  # fmt: skip
        machine.kill()
        self.check("cut-during-install", copying, f"QEMU killed {CUT_AFTER:.0f} s after RAUC's '{line}', still copying")
        env = self.grubenv()
        machine, slot = self.boot("after-install-cut")
        self.check(f"install-cut-boots-slot-{old.lower()}", slot == old, f"GRUB booted slot {slot}; grubenv before: "
                   f"{new}_OK={env.get(f'{new}_OK')} COMMITTED={env.get('COMMITTED')}")  # fmt: skip
        self.check(f"install-cut-{old.lower()}-works", agent_up(machine), f"the agent's unit: {units(machine)}")
        again = machine.wait_exit(UPDATE_TIMEOUT)
        env = self.grubenv()  # RAUC made the new slot primary only once its install had finished
        self.check("install-cut-installed-again", again and env.get("ORDER", "").startswith(new)
                   and env.get(f"{new}_OK") == "1" and env.get(f"{new}_TRY") == "0",
                   f"the agent's phases: {phases(machine)}; then grubenv {env}")  # fmt: skip
        machine, slot = self.boot("first-boot-cut")
        machine.kill()
        self.check("cut-during-first-boot", slot == new,
                   f"GRUB booted slot {slot}; QEMU killed at the reporter's HELLO")  # fmt: skip
        env = self.grubenv()
        machine, slot = self.boot("after-first-boot-cut")
        self.check(f"first-boot-cut-boots-slot-{old.lower()}", slot == old, f"GRUB booted slot {slot}; grubenv "
                   f"before: {new}_TRY={env.get(f'{new}_TRY')} TRIAL={env.get('TRIAL')}")  # fmt: skip
        self.check(f"first-boot-cut-{old.lower()}-works", agent_up(machine), f"the agent's unit: {units(machine)}")
        armed = machine.wait_exit(AGENT_TIMEOUT)
        env = self.grubenv()
        self.check("new-slot-armed-once-more", armed and env.get("ORDER", "").startswith(new)
                   and env.get(f"{new}_OK") == "1" and env.get(f"{new}_TRY") == "0",
                   f"rebooted with grubenv {env}")  # fmt: skip
        started = time.time()
        machine = self.boot_on("second-try-1.3.0", new, f"second-try-boots-slot-{new.lower()}")
        done = self.outcome(rollout)
        self.check("after-cuts-marked-good", done.get("status") == "healthy", f"rollout {rollout}: {done}")
        ok, view = self.system_is(new, AFTER, started)
        self.check(f"after-cuts-reports-1.3.0-on-{new.lower()}", ok, view)
        machine.send("poweroff")
        off = machine.wait_exit(600)
        machine, slot = self.boot("committed")  # GRUB commits a trial marked good at the next boot
        machine.send("poweroff")
        off = machine.wait_exit(600) and off
        env = self.grubenv()
        self.check(f"grub-commits-{new.lower()}", off and slot == new and env.get("COMMITTED") == new
                   and env.get("TRIAL") == "" and env.get(f"{new}_OK") == "1" and env.get(f"{new}_TRY") == "0",
                   f"booted {slot}; then {env}")  # fmt: skip


def agent_up(machine: Machine) -> bool:
    """Did the agent's unit become active in this boot (before it rebooted for the update, if it did)?"""
    end = time.monotonic() + AGENT_TIMEOUT
    while time.monotonic() < end:
        if "INFO agent active" in machine.said:
            return True
        if not machine.running():
            return "INFO agent active" in machine.said
        time.sleep(2)
    return False


def units(machine: Machine) -> str:
    return " -> ".join(line.removeprefix("INFO agent ") for line in machine.said if line.startswith("INFO agent "))


def phases(machine: Machine) -> str:
    return " -> ".join(line.removeprefix("INFO update ") for line in machine.said if line.startswith("INFO update "))


def wait_progress(machine: Machine, percent: int, timeout: float) -> str | None:
    """The reporter's first ``INFO rauc installing N ...`` with N >= percent."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = machine.expect("INFO rauc installing", end - time.monotonic())
        if line is None:
            return None
        found = re.match(r"INFO rauc installing (\d+)", line)
        if found and int(found.group(1)) >= percent:
            return line
    return None


def prepare(args: argparse.Namespace, work: Path, stack: contextlib.ExitStack, report: Report) -> Scenario:
    deb = assemble.ensure_deb(REPO, CACHE)
    tar = assemble.ensure_rootfs(REPO, CACHE, Path(args.config).resolve(), ["wardsight-twin-ab"], deb)
    rootfs = work / "rootfs"
    rootfs.mkdir()
    start = assemble.step(f"unpacking {tar.name}")
    subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-xpf", str(tar)], check=True)
    kernel = "/boot/" + sorted((rootfs / "boot").glob("vmlinuz-*"))[-1].name
    initrd = "/boot/" + sorted((rootfs / "boot").glob("initrd.img-*"))[-1].name
    used = int(subprocess.run(["du", "-sm", str(rootfs)], capture_output=True, text=True, check=True).stdout.split()[0])
    size = used + used // 3 + 256
    print(f"twin-ab: unpacked in {assemble.took(start)}; slots of {size} MiB", flush=True)
    start = assemble.step(f"slot A ({FACTORY}) and the bundles {GOOD}, {BROKEN} (broken agent), {AFTER}")
    slot_a = abbundle.slot_image(rootfs, FACTORY, work / f"system-{FACTORY}.ext4", size)
    bundles = {}
    recipe = hashlib.sha256(Path(abbundle.__file__).read_bytes()).hexdigest()[:8]
    store = CACHE / "ab-bundles" / f"{tar.stem}-{recipe}"  # the bundles of this rootfs and recipe, for the next run
    for old in store.parent.glob("*"):
        if old != store:
            shutil.rmtree(old, ignore_errors=True)
    store.mkdir(parents=True, exist_ok=True)
    for version in (GOOD, BROKEN, AFTER):
        bundles[version] = store / f"wardsight-twin-{version}.raucb"
        if bundles[version].is_file():
            print(f"twin-ab: bundle (cached) {bundles[version]}", flush=True)
            continue
        image = abbundle.slot_image(rootfs, version, work / f"system-{version}.ext4", size, broken=version == BROKEN)
        made = abbundle.bundle(image, version, work / f"wardsight-twin-{version}.raucb", CACHE)
        image.unlink()
        made.rename(bundles[version])
    print(f"twin-ab: images and bundles in {assemble.took(start)}", flush=True)
    abdisk.make_esp(work / "esp.img", work, kernel, initrd)
    layout = abdisk.make_disk(work / "disk.img", work / "esp.img", slot_a, size)
    slot_a.unlink()
    files = run.data_files(work)
    (files / "device.toml").write_text(AB_DEVICE_TOML)
    assemble.persistent_tree(rootfs, work / "persistent", files)
    assemble.mke2fs(work / "persistent", work / "persistent.img", "PERSISTENT", 4096)
    shutil.rmtree(rootfs)
    shutil.rmtree(work / "persistent")
    ntp = NtpServer()
    stack.callback(ntp.stop)
    server = FleetServer(REPO / ".venv" / "bin" / "wardsight", work / "fleet")
    stack.callback(server.stop)
    hospital = Hospital(server, work)
    make_fat(work / "fat.img", hospital.enrollment_bundle())
    shutil.copy(OVMF_VARS, work / "ovmf-vars.fd")
    disks = AbDisks(layout.disk, work / "persistent.img", work / "fat.img", work / "ovmf-vars.fd")
    stack.callback(guest.save_journal, disks.persistent, work)
    return Scenario(work, report, disks, layout.offsets["esp"], hospital, bundles)


def keep_logs(work: Path) -> None:
    last = CACHE / "last-ab-run"
    shutil.rmtree(last, ignore_errors=True)
    last.mkdir()
    for path in [*work.glob("console-*.log"), work / "journal.txt", work / "fleet" / "serve.log"]:
        if path.is_file():
            shutil.copy(path, last / path.name)
    print(f"twin-ab: serial consoles, the guest's journal and the server's log: {last}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "images" / "config" / "pi4.yaml"), help="Pi config to follow")
    parser.add_argument("--keep", action="store_true", help="keep the work directory even when all checks pass")
    parser.add_argument("--part", choices=("all", "cuts"), default="all",
                        help="cuts: only the power cuts, from the factory slot")  # fmt: skip
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("twin-ab: run as root (mmdebstrap's root mode, and the disk images keep the rootfs's owners)")
        return 2
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.glob("ab-*"):
        shutil.rmtree(old, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="ab-", dir=CACHE))
    report = Report()
    start = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scenario: Scenario | None = None
    try:
        with contextlib.ExitStack() as stack:
            scenario = prepare(args, work, stack, report)
            stack.callback(lambda: scenario.machine.kill() if scenario and scenario.machine else None)
            machine = scenario.factory()
            if args.part == "cuts":  # the power cuts alone, from the factory slot A (about half the time)
                scenario.power_cuts(machine, old="A")
            else:
                machine = scenario.good_update(machine)
                machine = scenario.broken_update(machine)
                scenario.power_cuts(machine)
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        report.check("twin-ab-run", False, f"{type(exc).__name__}: {exc}")
    failed = report.finish(time.monotonic() - start)
    keep_logs(work)
    if failed or args.keep:
        print(f"twin-ab: work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
