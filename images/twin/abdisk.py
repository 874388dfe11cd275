"""The A/B twin's disk: one GPT disk with an EFI system partition (GRUB, its script and grubenv) and the two system
slots, ``system_a`` and ``system_b`` (ext4), beside the persistent disk and the enrollment FAT of the plain twin.
Made without loop devices or mounts (sfdisk on a file, mkfs.vfat + mtools, ``mke2fs -d``, dd).

GRUB (``grub-mkstandalone``, x86_64-efi, booted by QEMU's OVMF) stands in for the Pi firmware, and its script keeps
the Pi's tryboot semantics with RAUC's grub-backend variables (``ORDER``, ``<slot>_OK``, ``<slot>_TRY``, which RAUC
sets: ``install`` marks the target slot bad, writes it, then makes it primary: ``ORDER="B A" B_OK=1 B_TRY=0``;
``mark-good`` sets ``OK=1 TRY=0``; ``mark-bad`` ``OK=0 TRY=0``) plus two of its own, as ``autoboot.txt`` has two
sections:

- ``COMMITTED``: the slot that boots when nothing is being tried (``[all] boot_partition`` on the Pi);
- ``TRIAL``: the slot this boot tries, once (the firmware's one-shot ``tryboot``).

Each boot: a trial that came back marked good (its ``TRY`` cleared by ``rauc status mark-good``) becomes
``COMMITTED``; then the first slot of ``ORDER`` that is good and not yet tried boots; if it is not the committed one,
that boot is its one try (``TRY=1``, ``TRIAL`` set). A trial that crashes, hangs or loses power is therefore never
booted again unless RAUC makes it primary again; the committed slot boots whatever happens to the other one.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

ESP_LABEL = "WSEFI"
ESP_MIB = 64
GRUBENV = "EFI/BOOT/grubenv"
COMPATIBLE = "wardsight-twin-amd64"
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
FIRST_ENV = {"ORDER": "A B", "A_OK": "1", "A_TRY": "0", "B_OK": "0", "B_TRY": "0", "COMMITTED": "A", "TRIAL": ""}

STUB = f"""search --no-floppy --label {ESP_LABEL} --set=esp
export esp
configfile ($esp)/EFI/BOOT/grub.cfg
"""

SCRIPT = """\
# The amd64 twin's boot script (images/twin/abdisk.py): RAUC's grub backend variables, the Pi's tryboot semantics.
set timeout=0
set envfile=($esp)/EFI/BOOT/grubenv
regexp --set=1:disk '^([^,]+),' "$esp"
set ORDER="A B"
set A_OK=0
set B_OK=0
set A_TRY=0
set B_TRY=0
set COMMITTED=A
set TRIAL=
load_env -f $envfile

# A trial that came back marked good (RAUC's mark-good cleared its TRY) is now the committed slot.
if [ "$TRIAL" = "A" ]; then if [ "$A_OK" = "1" ]; then if [ "$A_TRY" = "0" ]; then set COMMITTED=A; fi; fi; fi
if [ "$TRIAL" = "B" ]; then if [ "$B_OK" = "1" ]; then if [ "$B_TRY" = "0" ]; then set COMMITTED=B; fi; fi; fi
set TRIAL=

# The first slot of ORDER that is good and not yet tried; the committed one if none is.
set slot=
for s in $ORDER; do
    if [ -z "$slot" ]; then
        if [ "$s" = "A" ]; then set ok=$A_OK; set try=$A_TRY; fi
        if [ "$s" = "B" ]; then set ok=$B_OK; set try=$B_TRY; fi
        if [ "$ok" = "1" ]; then if [ "$try" = "0" ]; then set slot=$s; fi; fi
    fi
done
if [ -z "$slot" ]; then set slot=$COMMITTED; fi

# Not the committed slot: this boot is its one try.
if [ "$slot" != "$COMMITTED" ]; then
    set TRIAL=$slot
    if [ "$slot" = "A" ]; then set A_TRY=1; fi
    if [ "$slot" = "B" ]; then set B_TRY=1; fi
fi
save_env -f $envfile COMMITTED TRIAL A_TRY B_TRY

if [ "$slot" = "A" ]; then set part=gpt2; set dev=/dev/vda2; else set part=gpt3; set dev=/dev/vda3; fi
echo "wardsight twin: slot $slot (committed $COMMITTED, trial $TRIAL; A_OK=$A_OK A_TRY=$A_TRY B_OK=$B_OK B_TRY=$B_TRY)"
linux ($disk,$part)@KERNEL@ root=$dev ro console=ttyS0 panic=10 rauc.slot=$slot wardsight.ab=1
initrd ($disk,$part)@INITRD@
boot
"""


@dataclass(frozen=True)
class Layout:
    disk: Path
    slot_mib: int
    offsets: dict[str, int]  # partition name -> byte offset


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def grub_efi(out: Path, work: Path) -> Path:
    """GRUB as one EFI program (its modules in a memdisk) that finds the ESP by label and reads its script there."""
    stub = work / "grub-stub.cfg"
    stub.write_text(STUB)
    run("grub-mkstandalone", "-O", "x86_64-efi", "-o", str(out),
        "--modules=part_gpt fat ext2 search search_label regexp loadenv test linux echo configfile normal",
        "--locales=", "--fonts=", "--themes=", f"boot/grub/grub.cfg={stub}")  # fmt: skip
    return out


def grub_cfg(kernel: str, initrd: str) -> str:
    return SCRIPT.replace("@KERNEL@", kernel).replace("@INITRD@", initrd)


def make_esp(image: Path, work: Path, kernel: str, initrd: str) -> None:
    efi = grub_efi(work / "BOOTX64.EFI", work)
    (work / "grub.cfg").write_text(grub_cfg(kernel, initrd))
    env = work / "grubenv"
    env.unlink(missing_ok=True)
    run("grub-editenv", str(env), "create")
    run("grub-editenv", str(env), "set", *(f"{k}={v}" for k, v in FIRST_ENV.items()))
    image.unlink(missing_ok=True)
    run("mkfs.vfat", "-n", ESP_LABEL, "-C", str(image), str(ESP_MIB * 1024))
    run("mmd", "-i", str(image), "::EFI", "::EFI/BOOT")
    for item in (efi, work / "grub.cfg", env):
        run("mcopy", "-i", str(image), str(item), f"::EFI/BOOT/{item.name}")


def read_grubenv(esp_or_disk: Path, offset: int = 0) -> dict[str, str]:
    """grubenv's variables, read from the ESP inside the disk image (mtools at the partition's offset)."""
    text = run("mtype", "-i", f"{esp_or_disk}@@{offset}", f"::{GRUBENV}")
    found = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key] = value
    return found


def make_disk(out: Path, esp: Path, slot_a: Path, slot_mib: int) -> Layout:
    """The GPT disk: esp, system_a (``slot_a`` written in), system_b (empty until RAUC writes it)."""
    out.unlink(missing_ok=True)
    total = 1 + ESP_MIB + 2 * slot_mib + 1
    run("truncate", "-s", f"{total}M", str(out))
    table = (
        "label: gpt\n"
        f"start=2048, size={ESP_MIB}MiB, type={ESP_TYPE}, name=esp\n"
        f"size={slot_mib}MiB, type={LINUX_TYPE}, name=system_a\n"
        f"size={slot_mib}MiB, type={LINUX_TYPE}, name=system_b\n"
    )
    subprocess.run(["sfdisk", "--quiet", str(out)], input=table, text=True, check=True, capture_output=True)
    parts = json.loads(run("sfdisk", "--json", str(out)))["partitiontable"]["partitions"]
    offsets = {p["name"]: int(p["start"]) * 512 for p in parts}
    for name, image in (("esp", esp), ("system_a", slot_a)):
        run("dd", f"if={image}", f"of={out}", "bs=1M", f"seek={offsets[name]}", "oflag=seek_bytes",
            "conv=notrunc,sparse", "status=none")  # fmt: skip
    return Layout(out, slot_mib, offsets)
