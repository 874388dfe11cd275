"""The fake ``rauc`` command: RAUC's CLI as the agent uses it, over a system kept in one JSON file.

Standard library only (the ``rauc`` script next to this file runs it under any ``python3``). The system file is
``$FAKE_RAUC_STATE`` (made by :class:`tests.device.fakes.rauc.FakeRaucSystem`); it holds what RAUC's
``system.conf`` says (compatible, the keyring, slots ``rootfs.0``/``rootfs.1`` with bootnames A/B), each slot's
RAUC status (the bundle last installed into it), the bootloader (the primary slot, a one-shot *try* armed by
set-primary, each slot good or bad) and which slot the running system booted.

The bootloader is one of two kinds (``bootloader.kind``):

- ``tryboot`` (the default): the Pi's, as firmware/system/tryboot.py is RAUC's custom backend for it. ``primary``
  is the *committed* slot every normal boot starts; set-primary of the other slot arms a one-shot try of it, never
  commits it; set-state good on a slot running by such a try commits it; set-state bad of the committed slot is
  refused (the backend exits 1: RAUC says ``Failed marking slot rootfs.0 as bad: custom backend: Failed to run
  <backend>: Child process exited with code 1``, and an install whose target is that slot, during an uncommitted
  trial, fails with ``Failed marking slot rootfs.0 non-bootable: ...``).
- ``order``: GRUB's (RAUC's grub backend, barebox's bootchooser alike): ``primary`` heads the boot ORDER;
  set-primary puts the slot first (committed), set-state sets its OK flag, and a boot starts the first good slot
  of the order. Its per-slot try counter is left out: a power cut in a trial boots the new slot again.

Behaviour and texts follow RAUC's sources (rauc/rauc ``src/main.c``, ``install.c``, ``mark.c``, ``bundle.c``) and
what the real RAUC 1.8 (Debian bookworm's, so Raspberry Pi OS Bookworm's) prints through its D-Bus service:

- ``info [--output-format=json] BUNDLE``: verifies the signature against the keyring first; stdout the manifest
  as JSON; log lines (``rauc-Message: ...``) and errors on stderr; exit 1 on an error.
- ``install BUNDLE``: signature, then ``Compatible mismatch: Expected 'X' but bundle manifest has 'Y'``; marks the
  target (the inactive slot) bad, writes it, records its slot status, then set-primary: arms a one-shot try of
  it. Progress on stdout; on failure ``LastError: <reason>`` on stdout, ``Installing `B` failed`` on stderr, 1.
- ``status [--detailed] [--output-format=json]`` and ``status mark-good|mark-bad|mark-active [booted|other|SLOT]``.

A fake bundle: ``RAUCFAKE1\\n`` + manifest JSON + ``\\n`` + payload, then (as RAUC's) the signature and its size
as a big-endian uint64 in the last 8 bytes. The signature is an HMAC-SHA256 over everything before it, keyed with
the signer's key: it verifies when that key is the keyring's (compared in constant time).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

MAGIC = b"RAUCFAKE1\n"
BACKEND = "/usr/lib/wardsight/rauc-tryboot-backend"  # the image's bootloader-custom-backend
BACKEND_REFUSED = f"custom backend: Failed to run {BACKEND}: Child process exited with code 1"
ENV = "FAKE_RAUC_STATE"
NO_ISSUER = "signature verification failed: Verify error: unable to get local issuer certificate"


class Failure(Exception):
    """RAUC's error message for this call."""


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def save(path: Path, system: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(system, indent=2))
    os.replace(tmp, path)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def message(text: str) -> None:
    stamp = time.strftime("%H:%M:%S") + ".000"
    print(f"rauc-Message: {stamp}: {text}", file=sys.stderr)


# ---- bundles ------------------------------------------------------------------------------------------------


def sign(body: bytes, key: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()


def read_bundle(path: Path, keyring: bytes) -> dict[str, Any]:
    """The verified manifest (as check_bundle: signature first, then the manifest)."""
    data = path.read_bytes()
    if len(data) < 8:
        raise Failure("Invalid bundle format: Failed to read signature size from bundle: unexpected end of file")
    sigsize = int.from_bytes(data[-8:], "big")
    if sigsize == 0:
        raise Failure("Invalid bundle format: Signature size is 0")
    if sigsize > len(data) - 8:
        raise Failure(f"Invalid bundle format: Signature size ({sigsize}) exceeds bundle size")
    body, signature = data[: -8 - sigsize], data[-8 - sigsize : -8]
    message("Verifying bundle signature... ")
    if not body.startswith(MAGIC) or not hmac.compare_digest(sign(body, keyring), signature):
        raise Failure(NO_ISSUER)
    message("Verified inline signature by 'O = WardSight test, CN = release'")
    manifest_line = body[len(MAGIC) :].split(b"\n", 1)[0]
    manifest = json.loads(manifest_line)
    manifest["hash"] = hashlib.sha256(body).hexdigest()
    return manifest


# ---- slots --------------------------------------------------------------------------------------------------


def booted(system: dict[str, Any]) -> str:
    return str(system["booted"])


def identify(system: dict[str, Any], identifier: str) -> str:
    """mark.c's get_slots_by_identifier, for one slot."""
    slots = system["slots"]
    if identifier == "booted":
        return booted(system)
    if identifier == "other":
        own = slots[booted(system)]["class"]
        others = [n for n, s in slots.items() if s["class"] == own and s.get("bootname") and n != booted(system)]
        if not others:
            raise Failure("No other bootable slot of the same class found")
        return others[0]
    parts = identifier.split(".")
    if len(parts) != 2:
        raise Failure(f"Invalid slot name format: '{identifier}'")
    if identifier not in slots:
        raise Failure(f"No slot with class {parts[0]} and name {identifier} found")
    if not slots[identifier].get("bootname"):
        raise Failure(f"Slot {identifier} has no bootname set")
    return identifier


def ordered(system: dict[str, Any]) -> bool:
    return system["bootloader"].get("kind") == "order"


def next_boot(system: dict[str, Any]) -> str | None:
    """The slot the next boot starts (``rauc status``'s ``boot_primary``; the backend's get-primary)."""
    loader = system["bootloader"]
    if ordered(system):
        order = [loader["primary"], *sorted(s for s in system["slots"] if s != loader["primary"])]
        return next((s for s in order if loader["good"].get(s)), None)
    return loader["armed"] or loader["primary"]


def set_primary(system: dict[str, Any], slot: str) -> None:
    """The bootloader backend's set-primary: the Pi's keeps the committed slot and arms a *try* of another one;
    GRUB's puts the slot first in its boot order."""
    loader = system["bootloader"]
    loader["good"][slot] = True
    if ordered(system):
        loader["primary"], loader["armed"] = slot, None
    else:
        loader["armed"] = None if slot == loader["primary"] else slot
    status = system["slots"][slot].setdefault("status", {})
    status["activated"] = {"timestamp": now_iso(), "count": status.get("activated", {}).get("count", 0) + 1}


def set_state(system: dict[str, Any], slot: str, good: bool) -> None:
    """set-state: on the Pi, good on a tried slot that booted commits it, and the committed slot is never marked
    bad (:class:`Failure` with RAUC's words for the backend's exit status 1); bad disarms a try."""
    loader = system["bootloader"]
    if not ordered(system) and not good and slot == loader["primary"]:
        raise Failure(BACKEND_REFUSED)
    loader["good"][slot] = good
    if not ordered(system) and good and slot == booted(system) and system.get("tryboot") and slot != loader["primary"]:
        loader["primary"] = slot
    if not good and loader["armed"] == slot:
        loader["armed"] = None


# ---- commands -----------------------------------------------------------------------------------------------


def info(system: dict[str, Any], bundle: Path, json_out: bool) -> int:
    message(f"Reading bundle: {bundle}")
    if not bundle.exists():
        raise Failure(f"No such file: {bundle}")
    manifest = read_bundle(bundle, bytes.fromhex(system["keyring"]))
    image = {"variant": None, "filename": "rootfs.img", "checksum": manifest["hash"], "size": 65536}
    doc = {
        "compatible": manifest["compatible"],
        "version": manifest.get("version"),
        "description": manifest.get("description"),
        "build": manifest.get("build"),
        "hooks": [],
        "images": [{"rootfs": {**image, "hooks": [], "adaptive": []}}],
    }
    print(json.dumps(doc) if json_out else f"Compatible:     '{doc['compatible']}'\nVersion:        '{doc['version']}'")
    return 0


def install_steps(system: dict[str, Any], bundle: Path) -> str:
    print("  0% Installing\n  0% Determining slot states\n 20% Determining slot states done.")
    if not bundle.exists():
        raise Failure(f"No such file: {bundle}")
    print(" 20% Checking bundle\n 20% Verifying signature")
    try:
        manifest = read_bundle(bundle, bytes.fromhex(system["keyring"]))
    except Failure:
        print(" 40% Verifying signature failed.\n 40% Checking bundle failed.")
        raise
    print(" 40% Verifying signature done.\n 40% Checking bundle done.\n 40% Checking manifest contents")
    if manifest["compatible"] != system["compatible"]:
        raise Failure(
            f"Compatible mismatch: Expected '{system['compatible']}' but bundle manifest has '{manifest['compatible']}'"
        )
    print(" 60% Checking manifest contents done.\n 60% Determining target install group")
    target = identify(system, "other")
    print(" 80% Determining target install group done.\n 80% Updating slots")
    try:
        set_state(system, target, False)  # mark the target non-bootable (bad) before writing it
    except Failure as exc:  # the Pi: the target is the committed slot (a trial of the other one runs)
        raise Failure(f"Installation error: Failed marking slot {target} non-bootable: {exc}") from None
    if system.get("install_error"):
        raise Failure(f"Installation error: Failed updating slot {target}: {system['install_error']}")
    slot = system["slots"][target]
    count = slot.get("status", {}).get("installed", {}).get("count", 0) + 1
    slot["content"] = {"version": manifest.get("version")}
    slot["status"] = {
        "bundle": {"compatible": manifest["compatible"], "version": manifest.get("version"), "hash": manifest["hash"]},
        "status": "ok",
        "installed": {"timestamp": now_iso(), "count": count},
    }
    print(f" 90% Copying image to {target}\n 99% Copying image to {target} done.\n 99% Updating slots done.")
    set_primary(system, target)  # activate_installed: the next boot tries it
    print("100% Installing done.")
    return target


def install(path: Path, system: dict[str, Any], bundle: Path) -> int:
    print("installing")
    try:
        install_steps(system, bundle)
    except Failure as exc:
        save(path, system)  # the target stays marked bad, as with RAUC
        print(f"100% Installing failed.\nLastError: {exc}")
        print("idle")
        print(f"Installing `{bundle}` failed", file=sys.stderr)
        return 1
    save(path, system)
    print("idle")
    print(f"Installing `{bundle}` succeeded")
    return 0


def slot_json(system: dict[str, Any], name: str, detailed: bool) -> dict[str, Any]:
    slot = system["slots"][name]
    fields: dict[str, Any] = {
        "class": slot["class"],
        "device": slot["device"],
        "type": slot.get("type", "raw"),
        "bootname": slot.get("bootname"),
        "state": "booted" if name == booted(system) else "inactive",
        "parent": None,
        "mountpoint": "/" if name == booted(system) else None,
        "boot_status": ("good" if system["bootloader"]["good"].get(name) else "bad") if slot.get("bootname") else None,
    }
    if detailed:  # RAUC 1.8 prints a bundle with a null compatible for a slot it never installed
        fields["slot_status"] = slot.get("status") or {"bundle": {"compatible": None}}
    return {name: fields}


def status(system: dict[str, Any], detailed: bool, json_out: bool) -> int:
    primary = next_boot(system)
    doc = {
        "compatible": system["compatible"],
        "variant": system.get("variant") or "",
        "booted": system["slots"][booted(system)]["bootname"],
        "boot_primary": primary,
        "slots": [slot_json(system, name, detailed) for name in sorted(system["slots"])],
    }
    if json_out:
        print(json.dumps(doc))
    else:
        print(f"=== System Info ===\nCompatible:  {doc['compatible']}\nBooted from: {booted(system)} ({doc['booted']})")
    return 0


def mark(path: Path, system: dict[str, Any], state: str, identifier: str) -> int:
    try:
        slot = identify(system, identifier)
    except Failure as exc:
        print(f"rauc mark: {exc}", file=sys.stderr)
        return 1
    try:
        if state in ("good", "bad"):
            set_state(system, slot, state == "good")
        else:
            set_primary(system, slot)
    except Failure as exc:
        print(f"rauc mark: Failed marking slot {slot} as {state}: {exc}", file=sys.stderr)
        return 1
    save(path, system)
    print(f"rauc status: activated slot {slot}" if state == "active" else f"rauc status: marked slot {slot} as {state}")
    return 0


def main(argv: list[str]) -> int:
    path = Path(os.environ[ENV])
    system = load(path)
    system.setdefault("log", []).append(argv)
    save(path, system)
    options = {a.split("=")[0]: a.partition("=")[2] for a in argv if a.startswith("-")}
    args = [a for a in argv if not a.startswith("-")]
    json_out = options.get("--output-format", "readable") in ("json", "json-pretty")
    command = args[0] if args else ""
    try:
        if command == "info" and len(args) == 2:
            return info(system, Path(args[1]).absolute(), json_out)
        if command == "install" and len(args) == 2:
            return install(path, system, Path(args[1]).absolute())
        if command == "status" and len(args) == 1:
            return status(system, "--detailed" in options, json_out)
        if command == "status" and len(args) in (2, 3) and args[1].startswith("mark-"):
            return mark(path, system, args[1].removeprefix("mark-"), args[2] if len(args) == 3 else "booted")
        if command == "status" and len(args) >= 2:
            print(f"unknown subcommand {args[1]}", file=sys.stderr)
            return 1
    except Failure as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print("Usage: rauc [OPTION?] <COMMAND>", file=sys.stderr)
    return 1
