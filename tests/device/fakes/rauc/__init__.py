"""A fake RAUC system for the system-update tests: the ``rauc`` command (``cli.py``, run as a real process) and the
boot a test performs (:meth:`FakeRaucSystem.boot`: what the Pi's firmware and bootloader would do on a reboot).

The boot follows the Pi's tryboot as the RAUC backend drives it (firmware/system/tryboot.py): set-primary of the
other slot *arms a one-shot try*; a ``tryboot`` reboot boots the armed slot once (the flag is consumed); any other
boot (a normal reboot, a power cut, the watchdog resetting the board) boots the primary (committed) slot;
``mark-good`` on a slot booted by a try makes it the primary, and the primary is never marked bad (refused, as the
backend refuses it). With ``bootloader="order"`` it is GRUB's instead: every boot starts the first good slot of the
boot order, which set-primary commits (cli.py says more). A slot marked :meth:`broken` never comes up: the
watchdog resets the board and the firmware boots the primary. Every boot has a new boot id
(``/proc/sys/kernel/random/boot_id``).
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any, Literal

from tests.device.fakes.rauc import cli

SCRIPT = Path(__file__).resolve().parent / "rauc"
ENV = cli.ENV
KEY = bytes(range(32))  # the keyring's key; bundles signed with another one do not verify

BootKind = Literal["tryboot", "normal", "power_cut"]
Bootloader = Literal["tryboot", "order"]


def make_bundle(
    path: Path, *, compatible: str, version: str | None, key: bytes | None = KEY, payload: bytes = b"rootfs" * 512
) -> Path:
    """A fake bundle: signed with ``key`` (None: unsigned, a zero signature size as RAUC reads it)."""
    manifest = {"compatible": compatible, "version": version, "description": f"WardSight system {version}"}
    body = cli.MAGIC + json.dumps(manifest).encode() + b"\n" + payload
    signature = cli.sign(body, key) if key is not None else b""
    path.write_bytes(body + signature + len(signature).to_bytes(8, "big"))
    return path


class FakeRaucSystem:
    """Slots ``rootfs.0`` (bootname A) and ``rootfs.1`` (B), booted from A, A flashed at the factory with
    ``factory_version`` (no RAUC slot status: RAUC never installed it)."""

    def __init__(
        self,
        root: Path,
        *,
        compatible: str = "wardsight-rpi5",
        factory_version: str = "1.0.0",
        bootloader: Bootloader = "tryboot",
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / "system.json"
        slots = {
            name: {"class": "rootfs", "device": f"/dev/mmcblk0p{5 + i}", "type": "raw", "bootname": boot,
                   "content": {"version": factory_version if i == 0 else None}}
            for i, (name, boot) in enumerate((("rootfs.0", "A"), ("rootfs.1", "B")))
        }  # fmt: skip
        self.write(
            {
                "compatible": compatible,
                "variant": None,
                "keyring": KEY.hex(),
                "slots": slots,
                "bootloader": {
                    "kind": bootloader,
                    "primary": "rootfs.0",
                    "armed": None,
                    "good": {"rootfs.0": True, "rootfs.1": False},
                },
                "booted": "rootfs.0",
                "tryboot": False,
                "boot_id": str(uuid.uuid4()),
                "broken": [],
                "log": [],
            }
        )

    @property
    def command(self) -> tuple[str, ...]:
        """argv for :class:`firmware.ota.rauc.Rauc`: the script under this Python."""
        return (sys.executable, str(SCRIPT))

    def read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text())

    def write(self, system: dict[str, Any]) -> None:
        cli.save(self.path, system)

    def update(self, **fields: Any) -> None:
        system = self.read()
        system.update(fields)
        self.write(system)

    # ---- what a test looks at -----------------------------------------------------------------------------------

    @property
    def booted(self) -> str:
        return str(self.read()["booted"])

    def boot_id(self) -> str:
        return str(self.read()["boot_id"])

    def release_version(self) -> str | None:
        """The version the booted slot's image says it is (what ``/etc/wardsight/system-release`` would)."""
        system = self.read()
        return system["slots"][system["booted"]]["content"]["version"]

    @property
    def primary(self) -> str:
        return str(self.read()["bootloader"]["primary"])

    def good(self, slot: str) -> bool:
        return bool(self.read()["bootloader"]["good"].get(slot))

    def calls(self, command: str | None = None) -> list[list[str]]:
        """The argv of every ``rauc`` run (those of one command)."""
        return [argv for argv in self.read()["log"] if command is None or command in argv]

    # ---- what a test does ---------------------------------------------------------------------------------------

    def break_slot(self, slot: str) -> None:
        """``slot``'s system never comes up (kernel panic, hang): the watchdog resets the board."""
        system = self.read()
        system["broken"].append(slot)
        self.write(system)

    def boot(self, kind: BootKind) -> str:
        """Reboot the board; returns the slot the running system booted."""
        system = self.read()
        loader = system["bootloader"]
        if cli.ordered(system):  # GRUB: the first good slot of the order that comes up
            order = [loader["primary"], *sorted(s for s in system["slots"] if s != loader["primary"])]
            up = [s for s in order if loader["good"].get(s) and s not in system["broken"]]
            if not up:
                raise RuntimeError("no good slot comes up: the board is bricked")
            system.update(booted=up[0], tryboot=False, boot_id=str(uuid.uuid4()))
            self.write(system)
            return str(up[0])
        armed, loader["armed"] = loader["armed"], None  # one-shot: consumed (or lost) by any boot
        slot, tryboot = (armed, True) if kind == "tryboot" and armed else (loader["primary"], False)
        if slot in system["broken"]:  # never comes up: the watchdog resets, the firmware boots the primary
            slot, tryboot = loader["primary"], False
            if slot in system["broken"]:
                raise RuntimeError(f"the primary slot {slot} does not boot either: the board is bricked")
        system.update(booted=slot, tryboot=tryboot, boot_id=str(uuid.uuid4()))
        self.write(system)
        return str(slot)
