"""RAUC's custom bootloader backend on the Raspberry Pi firmware: ``autoboot.txt`` and the one-shot ``tryboot``.

RAUC (``bootloader=custom``, ``[handlers] bootloader-custom-backend=``; src/bootloaders/custom.c) runs the backend
as ``<backend> <command> [args]``, reads one line of standard output and treats any non-zero exit status as an
error it reports with the command:

    get-primary                    prints the bootname the next boot starts
    set-primary <bootname>         makes it the next boot (after an install: the slot just written)
    get-state <bootname>           prints good or bad
    set-state <bootname> good|bad  (``rauc status mark-good|mark-bad``; before writing a slot, RAUC marks it bad)
    get-current                    prints the bootname that booted (RAUC 1.10+; 1.8 reads ``rauc.slot=``/``root=``)

and two of ours: ``reboot`` (the reboot the state asks for: ``systemctl reboot --reboot-argument="0 tryboot"`` while
a trial is requested, a plain reboot otherwise) and ``status`` (one JSON object, for the update manager).

The firmware (Raspberry Pi docs: "autoboot.txt", "Fail-safe OS updates (tryboot)") reads ``autoboot.txt`` on the
first partition: ``[all] tryboot_a_b=1 boot_partition=N`` boots partition N; a reboot with the argument
``"0 tryboot"`` sets a one-shot flag under which the ``[tryboot]`` section's ``boot_partition`` wins, once: any
other reset, a crash or a power cut clears it. ``/proc/device-tree/chosen/bootloader/partition`` (and ``tryboot``)
say what booted, as 32-bit big-endian integers. Here, the file is the whole persistent state:

- ``[all] boot_partition`` is the **committed** slot: every normal boot starts it, so it is what a failed trial
  falls back to. It changes in one place only: ``set-state X good`` while X is the running slot (a trial that
  passed its checks) makes X committed, with the slot it leaves in ``[tryboot]``.
- ``[tryboot] boot_partition`` names the other slot while that slot may be tried (state ``good``) and the
  committed slot again when it may not (``bad``): then even a stray ``reboot "0 tryboot"`` cannot start it.
- ``set-primary`` of the other slot points ``[tryboot]`` at it and records a one-shot request in a run directory
  (tmpfs, gone at the next boot like the firmware's flag): ``get-primary`` then answers that slot and ``reboot``
  uses ``"0 tryboot"``. It never makes the slot permanent.
- ``set-state`` of the committed slot ``bad`` is refused: nothing else is known to boot (this also stops an
  install while an uncommitted trial runs, which would overwrite the slot the device falls back to).

The file is read and written by :mod:`firmware.system.autoboot` (one form, parsed strictly; replaced atomically on
its FAT). A missing, oversized or unparseable ``autoboot.txt`` is an error (exit 1, one line on stderr), never
replaced by a default. Commands run one at a time (a lock in the run directory).

:func:`decide` is pure (the facts and the command in, an :class:`Outcome` out); :func:`main` reads, locks, writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from firmware.system.autoboot import (
    Autoboot,
    AutobootError,
    parse_autoboot,
    read_autoboot,
    render_autoboot,
    write_autoboot,
)
from firmware.system.raucconf import IMAGE_ROTA_SLOTS, SlotTable
from wardsight.errors import WardSightError
from wardsight.paths import write_file_atomically

TRYBOOT_ARGUMENT = "0 tryboot"  # partition 0: the one autoboot.txt chooses; tryboot: its [tryboot] section, once
REQUEST_FILE = "request"
LOCK_FILE = "lock"
DEFAULT_BOOTFS = Path("/bootfs")  # image-rota mounts partition 1 here, read-write
DEFAULT_DT = Path("/proc/device-tree/chosen/bootloader")
DEFAULT_RUN = Path("/run/wardsight-tryboot")
ENV_BOOTFS, ENV_DT, ENV_RUN = "WARDSIGHT_TRYBOOT_BOOTFS", "WARDSIGHT_TRYBOOT_DT", "WARDSIGHT_TRYBOOT_RUN"
USAGE = (
    "usage: python -m firmware.system.tryboot get-primary | set-primary BOOTNAME | get-state BOOTNAME"
    " | set-state BOOTNAME good|bad | get-current | reboot | status"
)
_ARITY = {
    "get-primary": 0,
    "set-primary": 1,
    "get-state": 1,
    "set-state": 2,
    "get-current": 0,
    "reboot": 0,
    "status": 0,
}
_NEEDS_BOOTED = frozenset({"get-current", "set-state", "status"})


class TrybootError(WardSightError):
    """The boot state cannot be read, or the command does not fit it."""


class UsageError(TrybootError):
    """The command line is not one of the commands (exit status 2)."""


@dataclass(frozen=True)
class Booted:
    partition: int  # /proc/device-tree/chosen/bootloader/partition
    tryboot: bool | None  # .../tryboot (None: the bootloader does not say)


@dataclass(frozen=True)
class Facts:
    slots: SlotTable
    autoboot: Autoboot
    request: str | None = None  # the bootname a one-shot tryboot was requested for, this boot
    booted: Booted | None = None
    booted_error: str | None = None  # why ``booted`` is None, when it was asked for


@dataclass(frozen=True)
class Outcome:
    autoboot: Autoboot  # the state to hold (written when it differs)
    request: str | None
    output: str = ""  # for standard output
    reboot: str | None = None  # reboot with this argument ("": a plain reboot); None: no reboot


# --- decisions (pure) ----------------------------------------------------------------------------------------------


def _partition(facts: Facts, bootname: str) -> int:
    pair = facts.slots.by_bootname(bootname)
    if pair is None:
        raise TrybootError(f"no slot has bootname {bootname!r} (this system has {', '.join(facts.slots.bootnames())})")
    return pair.boot.number


def _bootname(facts: Facts, partition: int) -> str:
    pair = facts.slots.by_boot_partition(partition)
    if pair is None:
        raise TrybootError(f"partition {partition} is no slot's boot partition")
    return pair.bootname


def primary(facts: Facts) -> str:
    """The slot the next boot starts: the requested trial while its request stands, else the committed one."""
    state, request = facts.autoboot, facts.request
    if request is not None and state.trial != state.committed and _partition(facts, request) == state.trial:
        return request
    return _bootname(facts, state.committed)


def state_of(facts: Facts, bootname: str) -> str:
    return "good" if _partition(facts, bootname) in (facts.autoboot.committed, facts.autoboot.trial) else "bad"


def booted(facts: Facts) -> str:
    if facts.booted is None:
        raise TrybootError(f"cannot tell which slot booted: {facts.booted_error or 'not read'}")
    return _bootname(facts, facts.booted.partition)


def set_primary(facts: Facts, bootname: str) -> Outcome:
    """The slot boots next: the committed one (a pending trial is dropped), or the other one once, by tryboot."""
    partition, state = _partition(facts, bootname), facts.autoboot
    if partition == state.committed:
        return Outcome(state, None)
    return Outcome(replace(state, trial=partition), bootname)


def set_state(facts: Facts, bootname: str, good: bool) -> Outcome:
    partition, state = _partition(facts, bootname), facts.autoboot
    if partition == state.committed:
        if good:
            return Outcome(state, facts.request)
        trial = facts.booted is not None and facts.booted.partition == state.trial != state.committed
        running = f"; this boot is an uncommitted trial of {_bootname(facts, state.trial)}" if trial else ""
        raise TrybootError(
            f"refusing to mark {bootname} bad: it is the committed slot (autoboot.txt [all] boot_partition="
            f"{partition}), the one every normal boot falls back to{running}"
        )
    if not good:
        request = None if facts.request == bootname else facts.request
        return Outcome(replace(state, trial=state.committed), request)
    if booted(facts) == bootname:  # this boot is the slot, and it passed: commit, keep the old one as the other
        return Outcome(Autoboot(committed=partition, trial=state.committed), None)
    return Outcome(replace(state, trial=partition), facts.request)  # may be tried; not permanent


def status(facts: Facts) -> dict[str, object]:
    state = facts.autoboot
    try:
        running: str | None = booted(facts)
        error = None
    except TrybootError as e:
        running, error = None, str(e)
    return {
        "committed": _bootname(facts, state.committed),
        "trial": None if state.trial == state.committed else _bootname(facts, state.trial),
        "primary": primary(facts),
        "request": facts.request,
        "booted": running,
        "tryboot": facts.booted.tryboot if facts.booted else None,
        "booted_error": error,
        "states": {name: state_of(facts, name) for name in facts.slots.bootnames()},
    }


def check_usage(argv: Sequence[str]) -> None:
    if not argv or argv[0] not in _ARITY or len(argv) - 1 != _ARITY[argv[0]]:
        raise UsageError(f"not a command: {' '.join(argv) or '(none)'}")
    if argv[0] == "set-state" and argv[2] not in ("good", "bad"):
        raise UsageError(f"set-state takes good or bad, not {argv[2]!r}")


def decide(facts: Facts, argv: Sequence[str]) -> Outcome:
    """What ``argv`` (RAUC's command and arguments, or ours) answers and changes, given ``facts``."""
    check_usage(argv)
    command, args = argv[0], list(argv[1:])
    keep = Outcome(facts.autoboot, facts.request)
    if command == "get-primary":
        return replace(keep, output=primary(facts) + "\n")
    if command == "get-current":
        return replace(keep, output=booted(facts) + "\n")
    if command == "get-state":
        return replace(keep, output=state_of(facts, args[0]) + "\n")
    if command == "set-primary":
        return set_primary(facts, args[0])
    if command == "set-state":
        return set_state(facts, args[0], args[1] == "good")
    if command == "reboot":
        tried = primary(facts) != _bootname(facts, facts.autoboot.committed)
        return replace(keep, reboot=TRYBOOT_ARGUMENT if tried else "")
    return replace(keep, output=json.dumps(status(facts), sort_keys=True) + "\n")


# --- I/O -----------------------------------------------------------------------------------------------------------


def read_request(run_dir: Path, slots: SlotTable) -> str | None:
    try:
        value = (run_dir / REQUEST_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    if value not in slots.bootnames():
        raise TrybootError(f"{run_dir / REQUEST_FILE} holds {value!r}, not a bootname")
    return value


def write_request(run_dir: Path, request: str | None) -> None:
    if request is None:
        (run_dir / REQUEST_FILE).unlink(missing_ok=True)
    else:
        write_file_atomically(run_dir / REQUEST_FILE, f"{request}\n".encode())


def _u32(path: Path) -> int:
    data = path.read_bytes()
    if len(data) != 4:
        raise TrybootError(f"{path} is not a 32-bit integer ({len(data)} bytes)")
    return int.from_bytes(data, "big")


def read_bootloader(dt_dir: Path = DEFAULT_DT) -> Booted:
    """What the firmware booted, from its device-tree node (``/proc/device-tree/chosen/bootloader``)."""
    try:
        partition = _u32(dt_dir / "partition")
    except FileNotFoundError:
        raise TrybootError(f"{dt_dir / 'partition'} is missing: not booted by the Raspberry Pi firmware") from None
    try:
        tryboot: bool | None = _u32(dt_dir / "tryboot") != 0
    except FileNotFoundError:
        tryboot = None
    return Booted(partition, tryboot)


def systemctl_reboot(argument: str, *, run: Callable[[list[str]], object] | None = None) -> None:
    """Reboot through systemd, passing ``argument`` to reboot(2) (the Pi firmware driver hands it to the firmware).
    systemd 252 (Bookworm) takes ``--reboot-argument=``; the positional form is deprecated there."""
    command = ["systemctl", "reboot"] + ([f"--reboot-argument={argument}"] if argument else [])
    if run is None:
        subprocess.run(command, check=True)
    else:
        run(command)


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (run_dir / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        yield


def _facts(argv: Sequence[str], bootfs: Path, run_dir: Path, slots: SlotTable, reader: Callable[[], Booted]) -> Facts:
    facts = Facts(slots, parse_autoboot(read_autoboot(bootfs), slots), read_request(run_dir, slots))
    if argv[0] not in _NEEDS_BOOTED:
        return facts
    try:
        return replace(facts, booted=reader())
    except (TrybootError, OSError) as e:
        return replace(facts, booted_error=str(e))


def main(
    argv: Sequence[str],
    *,
    bootfs: Path,
    run_dir: Path,
    booted_partition_reader: Callable[[], Booted],
    reboot_requester: Callable[[str], None],
    slots: SlotTable = IMAGE_ROTA_SLOTS,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one backend command; 0 done, 1 refused or unreadable state (one line on stderr), 2 not a command."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        check_usage(argv)
        with _locked(run_dir):
            facts = _facts(argv, bootfs, run_dir, slots, booted_partition_reader)
            outcome = decide(facts, argv)
            if outcome.autoboot != facts.autoboot:
                write_autoboot(bootfs, render_autoboot(outcome.autoboot), slots)
            if outcome.request != facts.request:
                write_request(run_dir, outcome.request)
            out.write(outcome.output)
            out.flush()
            if outcome.reboot is not None:
                reboot_requester(outcome.reboot)
    except UsageError as e:
        print(f"tryboot: {e}\n{USAGE}", file=err)
        return 2
    except (TrybootError, AutobootError, OSError, subprocess.CalledProcessError) as e:
        print(f"tryboot: {argv[0]}: {e}", file=err)
        return 1
    return 0


def cli() -> int:
    """``python -m firmware.system.tryboot``: paths from the environment (tests point them at temporary directories),
    the firmware's device-tree node, systemd's reboot."""
    env = os.environ
    dt_dir = Path(env.get(ENV_DT) or DEFAULT_DT)
    return main(
        sys.argv[1:],
        bootfs=Path(env.get(ENV_BOOTFS) or DEFAULT_BOOTFS),
        run_dir=Path(env.get(ENV_RUN) or DEFAULT_RUN),
        booted_partition_reader=lambda: read_bootloader(dt_dir),
        reboot_requester=systemctl_reboot,
    )


if __name__ == "__main__":
    sys.exit(cli())
