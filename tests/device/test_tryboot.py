"""The Pi's tryboot as RAUC's custom bootloader backend (firmware/system/tryboot.py), over a fake boot partition.

``FakePi`` stands in for what the backend meets on a Raspberry Pi: the first partition's FAT (a directory holding
the image's ``autoboot.txt``, tests/device/fakes/bootfs/), the firmware that reads it at every boot (the ``[all]``,
``[none]`` and ``[tryboot]`` filters, ``tryboot_a_b``, ``boot_partition``, and the one-shot tryboot flag that only
``reboot "0 tryboot"`` sets and any other reset clears), the device-tree node it fills
(``/proc/device-tree/chosen/bootloader/partition`` and ``tryboot``, big-endian 32-bit), and ``/run`` (tmpfs), which
every boot empties. A slot can be broken: its kernel never comes up and the hardware watchdog resets the board.

``FakeRauc`` drives the real backend as RAUC does (src/bootloaders/custom.c): ``<backend> <command> [bootname
[good|bad]]`` run as a process, standard output stripped, any non-zero exit an error; an install marks the target
bad, writes it, then marks it primary ("Marking target slot ... as non-bootable" / "as bootable" in RAUC 1.8). Its
backend is ``python -m firmware.system.tryboot`` with the paths in the environment and, first on PATH, a fake
``systemctl`` that records the reboot argument the way systemd 252 parses it (so no test can reboot this machine).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from firmware.jobs.hooks import SelfTestOutcome
from firmware.ota.rauc import Rauc
from firmware.ota.system_state import SystemOffer
from firmware.ota.system_update import SystemUpdater
from firmware.system import tryboot
from firmware.system.autoboot import AUTOBOOT, Autoboot, AutobootError, parse_autoboot, render_autoboot
from firmware.system.raucconf import (
    IMAGE_ROTA,
    IMAGE_ROTA_SLOTS,
    Partition,
    PartitionTableError,
    RaucSettings,
    compatible_for,
    render_system_conf,
    slot_table,
)
from firmware.system.tryboot import Booted, Facts, TrybootError, decide
from tests.conftest import ROOT

FIXTURE = Path(__file__).parent / "fakes" / "bootfs" / AUTOBOOT
SLOT_PARTITIONS = {2: "A", 3: "B"}

# systemctl as systemd 252 reads `reboot` (src/systemctl/systemctl-logind.c and -start-special.c): the argument
# from --reboot-argument=, or (deprecated) one positional word; both at once, or more, are refused.
FAKE_SYSTEMCTL = r"""#!{python}
import os, sys
args = sys.argv[1:]
if not args or args[0] != "reboot":
    sys.exit("fake systemctl: only reboot")
flags = [a for a in args[1:] if a.startswith("--reboot-argument=")]
rest = [a for a in args[1:] if a not in flags]
if len(flags) > 1 or len(rest) > 1 or (flags and rest):
    sys.exit("Too many arguments.")
argument = flags[0].split("=", 1)[1] if flags else (rest[0] if rest else "")
with open(os.environ["FAKE_REBOOT_LOG"], "a") as log:
    log.write(argument + "\n")
"""


@dataclass
class Result:
    code: int
    out: str
    err: str


class FakePi:
    def __init__(self, root: Path) -> None:
        self.bootfs, self.dt, self.run_dir = root / "bootfs", root / "dt", root / "run"
        self.bootfs.mkdir()
        (self.bootfs / AUTOBOOT).write_bytes(FIXTURE.read_bytes())
        self.broken: set[int] = set()
        self.reboots: list[str] = []  # every reboot(2) argument asked for
        self.boots: list[tuple[int, bool]] = []  # (partition, tryboot) of every boot the firmware started
        self.pending: str | None = None
        self.boot(tryboot=False)

    def firmware_choice(self, tryboot: bool) -> int:
        """The partition the firmware boots: the first 512 bytes of autoboot.txt, filters applied in order."""
        text = (self.bootfs / AUTOBOOT).read_bytes()[:512].decode("ascii", "replace")
        settings: dict[str, str] = {}
        active = True
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("[") and line.endswith("]"):
                name = line[1:-1].lower()
                active = name == "all" or (name == "tryboot" and tryboot)
            elif active and "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                settings[key] = value
        if tryboot and settings.get("tryboot_a_b") != "1":
            raise AssertionError("a tryboot without tryboot_a_b=1 loads tryboot.txt, which no slot has")
        return int(settings.get("boot_partition", "0"))

    def boot(self, tryboot: bool, partition: int = 0) -> None:
        chosen = partition or self.firmware_choice(tryboot)
        assert chosen in SLOT_PARTITIONS, f"the firmware found no bootable slot at partition {chosen}"
        self.boots.append((chosen, tryboot))
        if chosen in self.broken:  # the kernel hangs; the watchdog resets the board, which clears the flag
            assert tryboot, "the committed slot is broken: the device would be lost"
            return self.boot(tryboot=False)
        self.dt.mkdir(exist_ok=True)
        (self.dt / "partition").write_bytes(chosen.to_bytes(4, "big"))
        (self.dt / "tryboot").write_bytes(int(tryboot).to_bytes(4, "big"))
        for leftover in self.run_dir.glob("*") if self.run_dir.exists() else []:
            leftover.unlink()
        self.partition, self.tryboot = chosen, tryboot
        return None

    def reboot(self, argument: str) -> None:
        """reboot(2): the machine goes down after the caller returns (see :meth:`finish_reboot`)."""
        self.reboots.append(argument)
        self.pending = argument

    def finish_reboot(self) -> None:
        """The Pi firmware driver hands the argument over: ``N`` boots partition N (0: autoboot.txt decides), a
        following ``tryboot`` sets the one-shot flag."""
        assert self.pending is not None
        words = self.pending.split()
        self.pending = None
        self.boot(tryboot="tryboot" in words[1:], partition=int(words[0]) if words else 0)

    def power_cut(self) -> None:
        self.boot(tryboot=False)

    def autoboot(self) -> Autoboot:
        return parse_autoboot((self.bootfs / AUTOBOOT).read_text(), IMAGE_ROTA_SLOTS)

    def backend(self, *argv: str) -> Result:
        """The backend in this process, with the real device-tree reader on the fake node; a reboot it asks for
        happens when it has returned."""
        out, err = io.StringIO(), io.StringIO()
        code = tryboot.main(
            list(argv),
            bootfs=self.bootfs,
            run_dir=self.run_dir,
            booted_partition_reader=lambda: tryboot.read_bootloader(self.dt),
            reboot_requester=self.reboot,
            stdout=out,
            stderr=err,
        )
        if self.pending is not None:
            self.finish_reboot()
        return Result(code, out.getvalue(), err.getvalue())


class RaucError(Exception):
    pass


class FakeRauc:
    def __init__(self, pi: FakePi, tmp_path: Path) -> None:
        self.pi = pi
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        systemctl = bin_dir / "systemctl"
        systemctl.write_text(FAKE_SYSTEMCTL.format(python=sys.executable))
        systemctl.chmod(0o755)
        self.reboot_log = tmp_path / "reboots.log"
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_REBOOT_LOG": str(self.reboot_log),
            tryboot.ENV_BOOTFS: str(pi.bootfs),
            tryboot.ENV_DT: str(pi.dt),
            tryboot.ENV_RUN: str(pi.run_dir),
        }
        self.slots: dict[str, str] = {"A": "1.0", "B": "1.0"}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "firmware.system.tryboot", *args]
        return subprocess.run(command, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)

    def backend(self, *args: str) -> str:
        proc = self.run(*args)
        if proc.returncode != 0:
            raise RaucError(f"{args[0]} failed with exit code {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def booted(self) -> str:
        return self.backend("get-current")

    def status(self) -> dict[str, str]:
        return {"primary": self.backend("get-primary"), **{s: self.backend("get-state", s) for s in ("A", "B")}}

    def install(self, version: str) -> str:
        target = "B" if self.booted() == "A" else "A"
        self.backend("set-state", target, "bad")
        self.slots[target] = version
        self.backend("set-primary", target)
        return target

    def mark(self, state: str, slot: str = "booted") -> None:
        self.backend("set-state", self.booted() if slot == "booted" else slot, state)

    def manager_reboot(self) -> str:
        """The update manager's reboot: the backend's own ``reboot`` command, through (fake) systemctl."""
        self.reboot_log.unlink(missing_ok=True)
        self.backend("reboot")
        argument = self.reboot_log.read_text().splitlines()[-1]
        self.pi.reboot(argument)
        self.pi.finish_reboot()
        return argument


def _temporaries(pi: FakePi) -> list[Path]:
    return sorted(pi.bootfs.glob(".autoboot.txt.*.tmp"))


# --- autoboot.txt ----------------------------------------------------------------------------------------------


def test_the_images_autoboot_txt_is_slot_a_committed_and_slot_b_on_tryboot() -> None:
    text = FIXTURE.read_text()
    assert parse_autoboot(text, IMAGE_ROTA_SLOTS) == Autoboot(committed=2, trial=3)
    assert render_autoboot(Autoboot(2, 3)) == text
    upper = "[ALL]\ntryboot_a_b=1\nboot_partition=3\n\n# note\n[TRYBOOT]\nboot_partition=3\n"
    assert parse_autoboot(upper, IMAGE_ROTA_SLOTS) == Autoboot(3, 3)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "needs an [all] and a [tryboot]"),
        ("[all]\ntryboot_a_b=1\nboot_partition=2\n", "needs an [all] and a [tryboot]"),
        ("[all]\nboot_partition=2\n[tryboot]\nboot_partition=3\n", "tryboot_a_b=1"),
        ("[all]\ntryboot_a_b=0\nboot_partition=2\n[tryboot]\nboot_partition=3\n", "tryboot_a_b=1"),
        ("[all]\ntryboot_a_b=1\nboot_partition=4\n[tryboot]\nboot_partition=3\n", "boot_partition=4 is no slot"),
        ("[all]\ntryboot_a_b=1\nboot_partition=two\n[tryboot]\nboot_partition=3\n", "no slot's boot partition"),
        ("[all]\ntryboot_a_b=1\nboot_partition = 2\n[tryboot]\nboot_partition=3\n", "line 3"),
        ("[all]\ntryboot_a_b=1\nboot_partition=2\nboot_partition=3\n[tryboot]\nboot_partition=3\n", "line 4"),
        ("[all]\ntryboot_a_b=1\nboot_partition=2\n[none]\n[tryboot]\nboot_partition=3\n", "line 4"),
        ("[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n[all]\n", "line 6"),
        ("boot_partition=2\n[all]\ntryboot_a_b=1\n[tryboot]\nboot_partition=3\n", "line 1"),
        ("[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n" + "#" * 500, "512 bytes"),
    ],
)
def test_autoboot_txt_in_any_other_form_is_refused_by_name(text: str, says: str) -> None:
    with pytest.raises(AutobootError, match=says.replace("[", r"\[").replace("]", r"\]")):
        parse_autoboot(text, IMAGE_ROTA_SLOTS)


# --- the decisions, pure -------------------------------------------------------------------------------------------


def _facts(committed: int, trial: int, request: str | None = None, booted: int | None = None) -> Facts:
    running = Booted(booted, booted != committed) if booted else None
    return Facts(IMAGE_ROTA_SLOTS, Autoboot(committed, trial), request, running, None if booted else "no node")


def test_set_primary_of_the_other_slot_arms_a_one_shot_trial_and_never_commits_it() -> None:
    outcome = decide(_facts(2, 2), ["set-primary", "B"])
    assert (outcome.autoboot, outcome.request) == (Autoboot(2, 3), "B")
    assert decide(_facts(2, 3, "B"), ["get-primary"]).output == "B\n"
    assert decide(_facts(2, 3, "B"), ["reboot"]).reboot == "0 tryboot"
    assert decide(_facts(2, 3), ["get-primary"]).output == "A\n"  # the request died with the boot
    assert decide(_facts(2, 3), ["reboot"]).reboot == ""
    assert decide(_facts(2, 2, "B"), ["get-primary"]).output == "A\n"  # a request [tryboot] no longer backs
    assert decide(_facts(2, 3, "B"), ["set-primary", "A"]) == tryboot.Outcome(Autoboot(2, 3), None)


def test_only_a_good_mark_on_the_running_trial_commits_it() -> None:
    assert decide(_facts(2, 3, booted=3), ["set-state", "B", "good"]).autoboot == Autoboot(3, 2)
    assert decide(_facts(2, 2, booted=2), ["set-state", "B", "good"]).autoboot == Autoboot(2, 3)  # may be tried
    assert decide(_facts(2, 3, booted=2), ["set-state", "A", "good"]).autoboot == Autoboot(2, 3)
    with pytest.raises(TrybootError, match="cannot tell which slot booted: no node"):
        decide(_facts(2, 2), ["set-state", "B", "good"])


def test_a_bad_mark_disables_the_other_slot_and_is_refused_for_the_committed_one() -> None:
    outcome = decide(_facts(2, 3, "B", booted=3), ["set-state", "B", "bad"])
    assert (outcome.autoboot, outcome.request) == (Autoboot(2, 2), None)
    assert decide(_facts(2, 2), ["get-state", "B"]).output == "bad\n"
    assert decide(_facts(2, 2), ["get-state", "A"]).output == "good\n"
    with pytest.raises(TrybootError, match=r"refusing to mark A bad: it is the committed slot .*boot_partition=2"):
        decide(_facts(2, 3, booted=2), ["set-state", "A", "bad"])
    with pytest.raises(TrybootError, match="uncommitted trial of B"):
        decide(_facts(2, 3, booted=3), ["set-state", "A", "bad"])


# --- the backend over a fake boot partition ------------------------------------------------------------------------


def test_set_primary_writes_the_tryboot_section_and_the_next_reboot_is_a_tryboot(tmp_path: Path) -> None:
    pi = FakePi(tmp_path)
    assert pi.backend("set-state", "B", "bad").code == 0
    assert (pi.bootfs / AUTOBOOT).read_text() == "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=2\n"
    assert pi.backend("set-primary", "B").code == 0
    assert (pi.bootfs / AUTOBOOT).read_text() == FIXTURE.read_text()  # [all] still A: nothing permanent
    assert pi.backend("get-primary").out == "B\n"
    assert pi.backend("reboot").code == 0
    assert pi.reboots == ["0 tryboot"]
    assert (pi.partition, pi.tryboot) == (3, True)
    assert pi.backend("get-current").out == "B\n"
    assert pi.backend("get-primary").out == "A\n"  # until it is marked good, the next normal boot is A's
    assert not _temporaries(pi)


def test_marking_the_trial_good_makes_it_permanent(tmp_path: Path) -> None:
    pi = FakePi(tmp_path)
    pi.backend("set-primary", "B")
    pi.backend("reboot")
    assert pi.backend("set-state", "B", "good").code == 0
    assert pi.autoboot() == Autoboot(committed=3, trial=2)
    pi.power_cut()
    assert (pi.partition, pi.tryboot) == (3, False)
    assert pi.backend("get-primary").out == "B\n"
    assert pi.backend("get-state", "A").out == "good\n"


def test_a_trial_never_marked_good_goes_back_to_the_old_slot(tmp_path: Path) -> None:
    pi = FakePi(tmp_path)
    pi.backend("set-primary", "B")
    pi.backend("reboot")
    assert pi.partition == 3
    assert pi.backend("reboot").code == 0  # no request this boot: a plain reboot
    assert pi.reboots == ["0 tryboot", ""]
    assert (pi.partition, pi.tryboot) == (2, False)
    pi.backend("set-primary", "B")
    pi.backend("reboot")
    pi.power_cut()  # a crash or a power cut during the trial: the flag is gone
    assert pi.partition == 2
    assert pi.autoboot() == Autoboot(2, 3)


def test_a_trial_marked_bad_is_never_chosen_again_until_written_anew(tmp_path: Path) -> None:
    pi = FakePi(tmp_path)
    pi.backend("set-primary", "B")
    pi.backend("reboot")
    assert pi.backend("set-state", "B", "bad").code == 0
    assert pi.backend("reboot").code == 0
    assert pi.reboots[-1] == ""
    assert pi.partition == 2
    pi.reboot("0 tryboot")  # even a stray tryboot starts A now
    pi.finish_reboot()
    assert (pi.partition, pi.tryboot) == (2, True)
    assert pi.backend("get-state", "B").out == "bad\n"


def test_the_committed_slot_cannot_be_marked_bad(tmp_path: Path) -> None:
    pi = FakePi(tmp_path)
    before = (pi.bootfs / AUTOBOOT).read_bytes()
    result = pi.backend("set-state", "A", "bad")
    assert result.code == 1
    assert "refusing to mark A bad: it is the committed slot" in result.err
    assert (pi.bootfs / AUTOBOOT).read_bytes() == before


@pytest.mark.parametrize(
    "content",
    [
        None,
        b"",
        b"[all]\nboot_partition=2\n",
        b"\xff\xfe garbage",
        b"[all]\ntryboot_a_b=1\nboot_partition=9\n[tryboot]\n",
    ],
)
def test_a_missing_or_corrupt_autoboot_txt_is_an_error_not_a_default(tmp_path: Path, content: bytes | None) -> None:
    pi = FakePi(tmp_path)
    if content is None:
        (pi.bootfs / AUTOBOOT).unlink()
    else:
        (pi.bootfs / AUTOBOOT).write_bytes(content)
    for command in (["get-primary"], ["get-state", "A"], ["set-primary", "B"], ["set-state", "B", "good"]):
        result = pi.backend(*command)
        assert (result.code, result.out) == (1, "")
        assert result.err.startswith(f"tryboot: {command[0]}: ") and "autoboot.txt" in result.err
        assert result.err.count("\n") == 1
    assert (None if content is None else (pi.bootfs / AUTOBOOT).read_bytes()) == content
    assert not _temporaries(pi) and pi.reboots == []


def test_usage_errors_unknown_slots_and_a_missing_device_tree(tmp_path: Path) -> None:
    pi = FakePi(tmp_path)
    for argv in ([], ["get-primary", "A"], ["set-state", "B", "ok"], ["mark-good"]):
        result = pi.backend(*argv)
        assert result.code == 2 and "usage:" in result.err
    result = pi.backend("set-primary", "C")
    assert (result.code, result.err) == (1, "tryboot: set-primary: no slot has bootname 'C' (this system has A, B)\n")
    for entry in pi.dt.iterdir():
        entry.unlink()
    result = pi.backend("get-current")
    assert result.code == 1 and "partition is missing: not booted by the Raspberry Pi firmware" in result.err
    (pi.dt / "partition").write_bytes(b"\x00\x02")
    assert "not a 32-bit integer" in pi.backend("get-current").err


def test_status_says_everything_at_once(tmp_path: Path) -> None:
    pi = FakePi(tmp_path)
    pi.backend("set-primary", "B")
    assert json.loads(pi.backend("status").out) == {
        "booted": "A",
        "booted_error": None,
        "committed": "A",
        "primary": "B",
        "request": "B",
        "states": {"A": "good", "B": "good"},
        "trial": "B",
        "tryboot": False,
    }


def test_systemctl_reboot_passes_the_argument_as_systemd_252_wants_it() -> None:
    calls: list[list[str]] = []
    tryboot.systemctl_reboot("0 tryboot", run=calls.append)
    tryboot.systemctl_reboot("", run=calls.append)
    assert calls == [["systemctl", "reboot", "--reboot-argument=0 tryboot"], ["systemctl", "reboot"]]


# --- a power cut in the middle of a write ----------------------------------------------------------------------


KILLED_AT_RENAME = r"""
import functools, os, signal, sys
from firmware.system import autoboot, tryboot

def power_cut(source, target):  # the new text is synced in its temporary file; the rename never happens
    os.kill(os.getpid(), signal.SIGKILL)

tryboot.write_autoboot = functools.partial(autoboot.write_autoboot, rename=power_cut)
sys.exit(tryboot.cli())
"""


def test_a_power_cut_mid_write_leaves_the_old_file_and_a_temporary_the_next_write_removes(tmp_path: Path) -> None:
    pi = FakePi(tmp_path)
    rauc = FakeRauc(pi, tmp_path)
    before = (pi.bootfs / AUTOBOOT).read_bytes()
    command = [sys.executable, "-c", KILLED_AT_RENAME, "set-state", "B", "bad"]
    proc = subprocess.run(command, env=rauc.env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (pi.bootfs / AUTOBOOT).read_bytes() == before
    [temporary] = _temporaries(pi)
    assert temporary.read_text() == render_autoboot(Autoboot(2, 2))
    pi.power_cut()
    assert pi.partition == 2
    assert rauc.status() == {"primary": "A", "A": "good", "B": "good"}  # the old state, read as it was
    rauc.backend("set-state", "B", "bad")
    assert pi.autoboot() == Autoboot(2, 2)
    assert not _temporaries(pi)


# --- RAUC's sequence, the backend as a process ---------------------------------------------------------------------


def test_an_install_is_tried_once_by_tryboot_and_made_permanent_by_mark_good(tmp_path: Path) -> None:
    pi = FakePi(tmp_path)
    rauc = FakeRauc(pi, tmp_path)
    assert (rauc.booted(), rauc.status()) == ("A", {"primary": "A", "A": "good", "B": "good"})
    assert rauc.install("2.0") == "B"
    assert pi.autoboot() == Autoboot(committed=2, trial=3)
    assert rauc.status() == {"primary": "B", "A": "good", "B": "good"}
    assert rauc.manager_reboot() == "0 tryboot"
    assert (pi.partition, pi.tryboot) == (3, True)
    assert rauc.booted() == "B"
    assert rauc.status()["primary"] == "A"  # a reset now would go back
    rauc.mark("good")
    assert pi.autoboot() == Autoboot(committed=3, trial=2)
    assert rauc.status() == {"primary": "B", "A": "good", "B": "good"}
    assert rauc.manager_reboot() == ""
    assert (pi.partition, pi.tryboot) == (3, False)
    assert rauc.install("3.0") == "A"  # the next update goes to the slot left behind
    assert rauc.status() == {"primary": "A", "A": "good", "B": "good"}
    assert pi.boots == [(2, False), (3, True), (3, False)]


def test_a_slot_that_never_comes_up_boots_back_and_is_marked_bad(tmp_path: Path) -> None:
    pi = FakePi(tmp_path)
    rauc = FakeRauc(pi, tmp_path)
    pi.broken.add(3)
    assert rauc.install("2.0") == "B"
    assert rauc.manager_reboot() == "0 tryboot"
    assert pi.boots == [(2, False), (3, True), (2, False)]  # the watchdog's reset cleared the flag
    assert rauc.booted() == "A"
    assert rauc.status()["primary"] == "A"
    rauc.mark("bad", "B")  # the manager asked for B and finds A: it reports the failure and disables B
    assert rauc.status() == {"primary": "A", "A": "good", "B": "bad"}
    assert rauc.manager_reboot() == ""
    assert pi.partition == 2


def test_a_trial_that_fails_its_health_check_goes_back_and_no_install_overwrites_the_fallback(tmp_path: Path) -> None:
    pi = FakePi(tmp_path)
    rauc = FakeRauc(pi, tmp_path)
    rauc.install("2.0")
    rauc.manager_reboot()
    assert rauc.booted() == "B"
    with pytest.raises(RaucError, match=r"exit code 1: tryboot: set-state: refusing to mark A bad.*trial of B"):
        rauc.install("2.1")  # RAUC would write A, the slot a reset falls back to
    assert rauc.slots["A"] == "1.0"
    rauc.mark("bad")
    assert rauc.manager_reboot() == ""
    assert (pi.partition, rauc.booted()) == (2, "A")
    assert rauc.status() == {"primary": "A", "A": "good", "B": "bad"}


# --- RAUC's system.conf from the partition table --------------------------------------------------------------

SYSTEM_CONF_PI4 = """\
# RAUC system configuration for wardsight-rpi4, rendered by firmware/system/raucconf.py
# from the image's partition table (1 bootconfig, 2 boot_a, 3 boot_b, 4 system_a, 5 system_b, 6 persistent).
# Slots A and B are the pairs boot_x+system_x; the firmware's autoboot.txt (partition 1)
# names the pair's boot partition, and the custom backend switches it with the Pi's one-shot tryboot.
[system]
compatible=wardsight-rpi4
bootloader=custom
bundle-formats=-plain
mountprefix=/run/rauc
data-directory=/var/lib/rauc

[keyring]
path=/etc/rauc/keyring.pem

[handlers]
bootloader-custom-backend=/usr/lib/wardsight/rauc-tryboot-backend

[slot.rootfs.0]
device=/dev/disk/by-partlabel/system_a
type=raw
bootname=A

[slot.boot.0]
device=/dev/disk/by-partlabel/boot_a
type=vfat
parent=rootfs.0

[slot.rootfs.1]
device=/dev/disk/by-partlabel/system_b
type=raw
bootname=B

[slot.boot.1]
device=/dev/disk/by-partlabel/boot_b
type=vfat
parent=rootfs.1
"""


def test_system_conf_is_rendered_from_the_partition_table_per_board() -> None:
    assert render_system_conf(IMAGE_ROTA, RaucSettings(compatible_for("pi4"))) == SYSTEM_CONF_PI4
    pi5 = render_system_conf(IMAGE_ROTA, RaucSettings(compatible_for("pi5")))
    assert pi5 == SYSTEM_CONF_PI4.replace("wardsight-rpi4", "wardsight-rpi5")
    # the partitions the backend switches between are the table's boot_a and boot_b, as the image's file says
    assert parse_autoboot(FIXTURE.read_text(), IMAGE_ROTA_SLOTS) == Autoboot(*IMAGE_ROTA_SLOTS.boot_partitions())
    moved = [Partition(1, "bootconfig"), Partition(5, "boot_a"), Partition(6, "boot_b"), Partition(2, "system_a"),
             Partition(3, "system_b")]  # fmt: skip
    table = slot_table(moved)
    assert [(p.bootname, p.boot.number, p.system.label) for p in table.pairs] == [
        ("A", 5, "system_a"),
        ("B", 6, "system_b"),
    ]
    assert "(1 bootconfig, 2 system_a, 3 system_b, 5 boot_a, 6 boot_b)" in render_system_conf(moved, RaucSettings("x"))


@pytest.mark.parametrize(
    ("partitions", "says"),
    [
        ([Partition(1, "bootconfig"), Partition(2, "boot_a"), Partition(4, "system_a"), Partition(5, "system_b")],
         "slot B needs partitions labelled boot_b and system_b"),
        ([Partition(1, "boot_a"), Partition(2, "boot_b"), Partition(3, "system_a"), Partition(4, "system_b")],
         "boot_a cannot be partition 1"),
        ([Partition(2, "boot_a"), Partition(2, "boot_b"), Partition(3, "system_a"), Partition(4, "system_b")],
         "numbers must be distinct"),
        ([Partition(2, "boot_a"), Partition(3, "boot_a"), Partition(4, "system_a"), Partition(5, "system_b")],
         "labels must be distinct"),
        ([Partition(2, "boot_a"), Partition(3, "boot_b"), Partition(4, "system a"), Partition(5, "system_b")],
         "not a plain GPT partition label"),
    ],
)  # fmt: skip
def test_a_partition_table_without_the_ab_pairs_is_refused(partitions: list[Partition], says: str) -> None:
    with pytest.raises(PartitionTableError, match=says):
        render_system_conf(partitions, RaucSettings("wardsight-rpi5"))


def test_system_conf_settings_are_checked() -> None:
    with pytest.raises(PartitionTableError, match="no RAUC compatible for board 'pi3'"):
        compatible_for("pi3")
    with pytest.raises(PartitionTableError, match="not a RAUC compatible string"):
        render_system_conf(IMAGE_ROTA, RaucSettings("Wardsight Pi"))
    with pytest.raises(PartitionTableError, match="not an absolute path"):
        render_system_conf(IMAGE_ROTA, RaucSettings("wardsight-rpi5", keyring="/etc/rauc/k.pem\n[slot.x.0]"))
    with pytest.raises(PartitionTableError, match="not an absolute path"):
        render_system_conf(IMAGE_ROTA, RaucSettings("wardsight-rpi5", data_directory="var/lib/rauc"))


# --- the real RAUC (Debian's rauc 1.8) driving the backend ------------------------------------------------------

REQUIRE_RAUC = os.environ.get("WARDSIGHT_REQUIRE_RAUC") == "1"  # CI: a missing tool fails instead of skipping
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default"><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/></policy>
</busconfig>
"""
BACKEND_WRAPPER = """#!/bin/sh
# What the image installs as /usr/lib/wardsight/rauc-tryboot-backend, with this test's paths.
export {env}
cd '{root}' || exit 1
exec '{python}' -m firmware.system.tryboot "$@"
"""


def _real_rauc_missing() -> str | None:
    for tool, package in (("rauc", "rauc"), ("dbus-daemon", "dbus-daemon"), ("mksquashfs", "squashfs-tools")):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian: {package}) to run the real RAUC against the backend"
    if shutil.which("openssl") is None or os.geteuid() != 0 or not Path("/dev/loop-control").exists():
        return "needs openssl, root and loop devices (rauc install mounts the bundle)"
    return None


class RealRauc:
    """RAUC 1.8's service on a private system bus, configured by :func:`render_system_conf` with file-backed slots."""

    def __init__(self, pi: FakePi, tmp_path: Path) -> None:
        self.pi, self.tmp = pi, tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []
        socket = tmp_path / "bus"
        (tmp_path / "bus.conf").write_text(BUS_CONFIG.format(socket=socket))
        bus = ["dbus-daemon", "--nofork", f"--config-file={tmp_path / 'bus.conf'}"]
        self.procs.append(subprocess.Popen(bus, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_for(socket.exists, "the private D-Bus")
        self.env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={socket}"}
        self.conf = tmp_path / "system.conf"
        self.conf.write_text(self._system_conf())
        self.key, self.cert = tmp_path / "key.pem", tmp_path / "cert.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", self.key, "-out", self.cert, "-subj", "/CN=wardsight-test-release", "-days", "2"],
            check=True, capture_output=True,
        )  # fmt: skip
        self.service: subprocess.Popen[bytes] | None = None

    def _system_conf(self) -> str:
        """The image's system.conf with this test's paths: the partitions are files ``dev/mmcblk0pN``, reached (as
        udev makes them on the device) through the symlinks ``by-partlabel/<label>``."""
        disk, by_label, backend = self.tmp / "dev", self.tmp / "by-partlabel", self.tmp / "rauc-tryboot-backend"
        disk.mkdir()
        by_label.mkdir()
        for part in IMAGE_ROTA:
            (disk / f"mmcblk0p{part.number}").write_bytes(f"1.0 {part.label}".encode())
            (by_label / part.label).symlink_to(disk / f"mmcblk0p{part.number}")
        env = {tryboot.ENV_BOOTFS: self.pi.bootfs, tryboot.ENV_DT: self.pi.dt, tryboot.ENV_RUN: self.pi.run_dir}
        exports = " ".join(f"{k}='{v}'" for k, v in env.items())
        backend.write_text(BACKEND_WRAPPER.format(env=exports, root=ROOT, python=sys.executable))
        backend.chmod(0o755)
        settings = RaucSettings(
            compatible="wardsight-rpi5",
            keyring=str(self.tmp / "cert.pem"),
            backend=str(backend),
            data_directory=str(self.tmp / "rauc-data"),
            mountprefix=str(self.tmp / "mnt"),
            disk_by_label=str(by_label),
        )
        text = render_system_conf(IMAGE_ROTA, settings)
        # This machine has no device-mapper, so verity bundles cannot be mounted here: plain ones are allowed.
        assert "bundle-formats=-plain\n" in text
        return text.replace("bundle-formats=-plain\n", "")

    def partition(self, label: str) -> Path:
        return self.tmp / "by-partlabel" / label

    def start(self) -> None:
        """rauc.service as it starts at boot. RAUC 1.8 finds the booted slot from the kernel command line's
        ``root=/dev/disk/by-slot/active/system`` (image-rota), which it resolves to the partition's device and
        compares with each slot's resolved ``device``: here, the partition the fake firmware booted."""
        self.stop()
        pair = IMAGE_ROTA_SLOTS.by_boot_partition(self.pi.partition)
        assert pair is not None
        root = (self.tmp / "dev" / f"mmcblk0p{pair.system.number}").resolve()
        self.service = subprocess.Popen(
            ["rauc", f"--conf={self.conf}", "service", f"--override-boot-slot={root}"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_for(lambda: self.run("status").returncode == 0, "rauc service")

    def stop(self) -> None:
        if self.service is not None:
            self.service.terminate()
            self.service.wait(timeout=10)
            self.service = None

    def close(self) -> None:
        self.stop()
        for proc in self.procs:
            proc.terminate()
            proc.wait(timeout=10)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = ["rauc", f"--conf={self.conf}", *args]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=120, check=False)

    def status(self) -> dict[str, object]:
        proc = self.run("status", "--output-format=json")
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        slots = {name: fields for entry in data["slots"] for name, fields in entry.items()}
        states = {slots[f"rootfs.{i}"]["bootname"]: slots[f"rootfs.{i}"]["boot_status"] for i in (0, 1)}
        [booted] = [fields["bootname"] for fields in slots.values() if fields["state"] == "booted"]
        return {"booted": booted, "primary": data["boot_primary"], **states}

    def bundle(self, version: str) -> Path:
        content = self.tmp / f"bundle-{version}"
        content.mkdir()
        (content / "system.img").write_bytes(f"{version} system ".encode() * 512)
        (content / "boot.vfat").write_bytes(f"{version} boot ".encode() * 512)
        (content / "manifest.raucm").write_text(
            f"[update]\ncompatible=wardsight-rpi5\nversion={version}\n\n[bundle]\nformat=plain\n\n"
            "[image.rootfs]\nfilename=system.img\n\n[image.boot]\nfilename=boot.vfat\n"
        )
        out = self.tmp / f"wardsight-{version}.raucb"
        command = ["rauc", "bundle", f"--cert={self.cert}", f"--key={self.key}", str(content), str(out)]
        subprocess.run(command, check=True, capture_output=True)
        return out


def _wait_for(ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not ready():
        assert time.monotonic() < deadline, f"{what} did not come up"
        time.sleep(0.1)


@pytest.fixture
def real_rauc(tmp_path: Path) -> Iterator[RealRauc]:
    missing = _real_rauc_missing()
    if missing is not None:
        if REQUIRE_RAUC:
            pytest.fail(missing)
        pytest.skip(missing)
    rauc = RealRauc(FakePi(tmp_path), tmp_path)
    try:
        yield rauc
    finally:
        rauc.close()


def test_the_real_rauc_installs_into_the_other_slot_tries_it_once_and_commits_it_on_mark_good(
    real_rauc: RealRauc, tmp_path: Path
) -> None:
    pi, rauc = real_rauc.pi, real_rauc
    manager = FakeRauc(pi, tmp_path)  # for the backend's own reboot command (fake systemctl)
    rauc.start()
    assert rauc.status() == {"booted": "A", "primary": "rootfs.0", "A": "good", "B": "good"}
    proc = rauc.run("install", str(rauc.bundle("2.0")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert rauc.partition("system_b").read_bytes() == b"2.0 system " * 512
    assert rauc.partition("boot_b").read_bytes() == b"2.0 boot " * 512
    assert rauc.partition("system_a").read_bytes() == b"1.0 system_a"
    assert pi.autoboot() == Autoboot(committed=2, trial=3)  # installed and primary, not permanent
    assert rauc.status() == {"booted": "A", "primary": "rootfs.1", "A": "good", "B": "good"}
    assert manager.manager_reboot() == "0 tryboot"
    rauc.start()
    assert (pi.partition, pi.tryboot) == (3, True)
    assert rauc.status() == {"booted": "B", "primary": "rootfs.0", "A": "good", "B": "good"}
    refused = rauc.run("install", str(rauc.bundle("2.1")))  # during the trial: A is what a reset falls back to
    assert refused.returncode != 0
    assert "Failed marking slot rootfs.0 non-bootable" in refused.stdout + refused.stderr
    assert rauc.partition("system_a").read_bytes() == b"1.0 system_a"
    proc = rauc.run("status", "mark-good")
    assert proc.returncode == 0, proc.stderr
    assert pi.autoboot() == Autoboot(committed=3, trial=2)
    assert rauc.status() == {"booted": "B", "primary": "rootfs.1", "A": "good", "B": "good"}
    assert manager.manager_reboot() == ""
    assert (pi.partition, pi.tryboot) == (3, False)


def test_the_real_rauc_marks_a_failed_trial_bad_and_the_device_boots_back(real_rauc: RealRauc, tmp_path: Path) -> None:
    pi, rauc = real_rauc.pi, real_rauc
    manager = FakeRauc(pi, tmp_path)
    rauc.start()
    assert rauc.run("install", str(rauc.bundle("2.0"))).returncode == 0
    manager.manager_reboot()
    rauc.start()
    assert rauc.run("status", "mark-bad").returncode == 0  # the health check failed on B
    assert rauc.status() == {"booted": "B", "primary": "rootfs.0", "A": "good", "B": "bad"}
    assert manager.manager_reboot() == ""
    rauc.start()
    assert rauc.status() == {"booted": "A", "primary": "rootfs.0", "A": "good", "B": "bad"}
    assert rauc.run("status", "mark-bad", "booted").returncode != 0  # never the only slot known to boot
    assert pi.autoboot() == Autoboot(committed=2, trial=2)


def test_the_updater_leaves_a_committed_new_slot_whose_trial_failed_through_a_tryboot_of_the_old_one(
    real_rauc: RealRauc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The system updater (firmware/ota/system_update.py) on the real RAUC and this backend: the trial's mark-good
    landed (an agent killed right after it), then the trial failed. RAUC cannot mark the committed slot bad and a
    normal reboot comes back to it; the updater activates the old slot (a one-shot try), asks for a tryboot, and
    commits the old slot with mark-good once it runs."""
    pi, rauc = real_rauc.pi, real_rauc
    manager = FakeRauc(pi, tmp_path)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", rauc.env["DBUS_SYSTEM_BUS_ADDRESS"])
    reboots: list[str] = []
    verdict: list[str | None] = [None]

    def updater() -> SystemUpdater:
        return SystemUpdater(tmp_path / "device", Rauc(("rauc", f"--conf={rauc.conf}")), reboot=reboots.append,
                             self_test=lambda: SelfTestOutcome(True, "ok", ""), health=lambda: verdict[0],
                             boot_id=lambda: str(len(pi.boots)), running_version=lambda: "1.0")  # fmt: skip

    def reboot() -> None:
        if reboots[-1] == "tryboot":  # the image's wardsight-tryboot.service: this backend's own reboot command
            manager.manager_reboot()
        else:
            pi.reboot("")
            pi.finish_reboot()
        rauc.start()

    rauc.start()
    u = updater()
    u.stage(rauc.bundle("2.0"), SystemOffer(rollout_id="r1", version="2.0", compatible="wardsight-rpi5"))
    assert [r.state for r in u.step()] == ["installed", "rebooting"]
    reboot()
    assert (pi.partition, pi.tryboot) == (3, True)
    assert [r.state for r in updater().step()] == ["trial"]  # the health check has not decided yet
    assert rauc.run("status", "mark-good").returncode == 0  # what the killed agent's mark-good did
    assert pi.autoboot() == Autoboot(committed=3, trial=2)
    verdict[0] = "too_few_frames"
    u = updater()
    assert u.step() == [] and u.state.phase == "reverting" and reboots[-1] == "normal"
    reboot()
    assert pi.partition == 3, "a normal boot starts the committed slot"
    assert updater().step() == [] and reboots[-1] == "tryboot"
    reboot()
    assert (pi.partition, pi.tryboot) == (2, True)
    (report,) = updater().step()
    assert (report.state, report.reason) == ("rolled_back", "health_check_failed: too_few_frames")
    assert pi.autoboot() == Autoboot(committed=2, trial=2), "the old slot committed, the new one never tried again"
    assert rauc.status() == {"booted": "A", "primary": "rootfs.0", "A": "good", "B": "bad"}
    pi.power_cut()
    assert pi.partition == 2
