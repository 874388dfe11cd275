"""RAUC's command line, thinly: ``rauc info``, ``rauc status``, ``rauc install`` and ``rauc status mark-*``.

What RAUC prints, from its sources (rauc/rauc ``src/main.c``, ``mark.c``, ``install.c``, ``bundle.c``):

- ``rauc info --output-format=json BUNDLE`` checks the bundle's signature against the keyring of ``system.conf``
  first; a bundle that does not verify is refused with the reason on stderr (``signature verification failed:
  Verify error: ...``, ``Invalid bundle format: Signature size is 0``) and exit status 1. Otherwise stdout is one
  JSON object: ``compatible``, ``version``, ``description``, ``build``, ``format``, ``hash``, ``images``. RAUC's
  log lines (``rauc-Message: ...``) go to stderr.
- ``rauc status --detailed --output-format=json``: ``compatible``, ``variant``, ``booted`` (the *bootname* RAUC
  found on the kernel command line), ``boot_primary`` (the *slot name* the bootloader would boot next, or
  null), ``slots``: a list of one-key objects ``{"rootfs.0": {"class", "device", "type", "bootname", "state"
  (booted/active/inactive), "parent", "mountpoint", "boot_status" (good/bad), "slot_status": {"bundle":
  {"compatible", "version", "hash"}, "status", "installed", "activated"}}}`` (``slot_status`` with
  ``--detailed`` only, and only for a slot RAUC has installed: a factory-flashed slot has none).
- ``rauc install BUNDLE`` (through RAUC's D-Bus service) prints progress lines (``" 20% Checking bundle"``) and,
  on failure, ``LastError: <reason>`` on stdout and ``Installing `BUNDLE` failed`` on stderr, exit status 1
  (2 for a D-Bus error). Before writing it marks the target slot bad; after writing it marks it active, which
  calls the bootloader backend's set-primary: the next boot *tries* the new slot.
- ``rauc status mark-good|mark-bad|mark-active [booted|other|SLOT]``: ``rauc status: marked slot(s) rootfs.1 as
  good`` on stdout, or ``rauc mark: <reason>`` on stderr and exit status 1.

Every failure raises :class:`RaucError` with RAUC's own words as ``reason`` (never a traceback for the agent).
The command runner is injected (:data:`Runner`), so tests run a faithful fake ``rauc``.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from wardsight.errors import WardSightError

log = logging.getLogger("wardsight.device.ota")

MAX_REASON = 400  # characters of RAUC's message kept in a reason


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], float], CommandResult]  # (argv, timeout in s) -> result


class RaucError(WardSightError):
    """RAUC refused or failed; ``code`` says what for (a report reason), ``reason`` is RAUC's own message."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason[:MAX_REASON]

    @property
    def retryable(self) -> bool:
        """Whether trying again later may work (RAUC busy, not answering, or not reachable): nothing was decided."""
        return self.code in ("rauc_busy", "rauc_timeout", "rauc_unavailable")


def run_command(argv: Sequence[str], timeout: float) -> CommandResult:
    """Run ``argv`` without a shell, stdin closed, capturing its text output."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise RaucError("rauc_missing", f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise RaucError("rauc_timeout", f"{' '.join(argv[:3])} did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise RaucError("rauc_unavailable", f"cannot run {argv[0]}: {exc}") from None
    return CommandResult(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class BundleInfo:
    """What a verified bundle's manifest says (``rauc info``)."""

    compatible: str
    version: str | None
    hash: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class RaucSlot:
    name: str  # "rootfs.0"
    slot_class: str  # "rootfs"
    device: str
    bootname: str | None
    state: str  # booted, active, inactive
    boot_status: str | None  # good, bad (slots with a bootname)
    parent: str | None = None
    bundle_version: str | None = None  # of the bundle last installed into it (``--detailed``; none when flashed)
    bundle_compatible: str | None = None
    installed_status: str | None = None  # "ok", or why the last installation into it failed


@dataclass(frozen=True)
class RaucStatus:
    compatible: str
    booted: str | None  # the bootname (or device) RAUC found on the kernel command line
    boot_primary: str | None  # the slot name the bootloader boots next
    slots: tuple[RaucSlot, ...]

    def slot(self, name: str) -> RaucSlot | None:
        return next((s for s in self.slots if s.name == name), None)

    def booted_slot(self) -> RaucSlot | None:
        """The slot this system runs from, matched as RAUC does: by bootname, name or device."""
        if self.booted is None:
            return None
        for s in self.slots:
            if self.booted in (s.bootname, s.name, s.device):
                return s
        return next((s for s in self.slots if s.state == "booted"), None)

    def other(self) -> RaucSlot | None:
        """RAUC's ``other``: the one bootable slot of the booted slot's class that is not booted (None unless A/B)."""
        booted = self.booted_slot()
        if booted is None:
            return None
        others = [
            s for s in self.slots
            if s.slot_class == booted.slot_class and s.parent is None and s.bootname and s.name != booted.name
        ]  # fmt: skip
        return others[0] if len(others) == 1 else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _slot(name: str, fields: dict[str, Any]) -> RaucSlot:
    status = _object(fields.get("slot_status"))
    bundle = _object(status.get("bundle"))
    return RaucSlot(
        name=name,
        slot_class=_text(fields.get("class")) or name.split(".")[0],
        device=_text(fields.get("device")) or "",
        bootname=_text(fields.get("bootname")),
        state=_text(fields.get("state")) or "inactive",
        boot_status=_text(fields.get("boot_status")),
        parent=_text(fields.get("parent")),
        bundle_version=_text(bundle.get("version")),
        bundle_compatible=_text(bundle.get("compatible")),
        installed_status=_text(status.get("status")),
    )


def parse_status(text: str) -> RaucStatus:
    """``rauc status --output-format=json`` (with or without ``--detailed``)."""
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or not isinstance(doc.get("slots"), list):
            raise ValueError("no slots list")
        slots = []
        for entry in doc["slots"]:
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ValueError(f"a slot entry is not a one-key object: {entry!r}"[:120])
            ((name, fields),) = entry.items()
            if not isinstance(fields, dict):
                raise ValueError(f"slot {name} is not an object")
            slots.append(_slot(name, fields))
        compatible = _text(doc.get("compatible"))
        if not compatible:
            raise ValueError("no compatible")
    except (ValueError, TypeError) as exc:
        raise RaucError("status_unreadable", f"rauc status printed something else than its JSON: {exc}") from None
    return RaucStatus(compatible, _text(doc.get("booted")), _text(doc.get("boot_primary")), tuple(slots))


def parse_info(text: str) -> BundleInfo:
    """``rauc info --output-format=json``."""
    try:
        doc = json.loads(text)
        doc = _object(doc)
        compatible = _text(doc.get("compatible"))
        if not compatible:
            raise ValueError("no compatible")
    except (ValueError, TypeError) as exc:
        raise RaucError("info_unreadable", f"rauc info printed something else than its JSON: {exc}") from None
    return BundleInfo(compatible, _text(doc.get("version")), _text(doc.get("hash")), _text(doc.get("description")))


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def failure_reason(result: CommandResult) -> str:
    """RAUC's reason for a failure: the ``LastError:`` line of an install, else the last line on stderr."""
    for line in reversed(result.stdout.splitlines()):
        if "LastError:" in line:
            return line.split("LastError:", 1)[1].strip()
    return last_line(result.stderr) or last_line(result.stdout) or f"exit status {result.returncode}"


def classify(reason: str, default: str) -> str:
    """A report code for RAUC's message."""
    lowered = reason.lower()
    if "already processing" in lowered or "rauc busy" in lowered:
        return "rauc_busy"
    if "failed to contact rauc service" in lowered or "error creating proxy" in lowered:
        return "rauc_unavailable"
    if "compatible mismatch" in lowered:
        return "compatible_mismatch"
    if "signature" in lowered or "keyring" in lowered:
        return "bundle_signature_invalid"
    return default


class Rauc:
    """The ``rauc`` command (``command``: its argv prefix, e.g. ``("rauc",)``), run through ``runner``."""

    def __init__(
        self,
        command: Sequence[str] = ("rauc",),
        runner: Runner = run_command,
        *,
        timeout: float = 60.0,
        install_timeout: float = 3600.0,
    ) -> None:
        self.command = tuple(command)
        self.runner = runner
        self.timeout = timeout
        self.install_timeout = install_timeout

    def _run(self, args: Sequence[str], code: str, timeout: float | None = None) -> CommandResult:
        result = self.runner([*self.command, *args], timeout or self.timeout)
        if result.returncode != 0:
            reason = failure_reason(result)
            raise RaucError(classify(reason, code), reason)
        return result

    def info(self, bundle: Path) -> BundleInfo:
        """The verified bundle's compatible and version (RAUC checks the signature against its keyring)."""
        return parse_info(self._run(["info", "--output-format=json", str(bundle)], "bundle_invalid").stdout)

    def status(self) -> RaucStatus:
        return parse_status(self._run(["status", "--detailed", "--output-format=json"], "status_failed").stdout)

    def install(self, bundle: Path) -> str:
        """Install into the inactive slot and make it the one the next boot tries; returns RAUC's output."""
        result = self._run(["install", str(bundle)], "install_failed", self.install_timeout)
        log.info("rauc install %s: %s", bundle.name, last_line(result.stdout))
        return result.stdout

    def mark(self, state: Literal["good", "bad", "active"], slot: str = "booted") -> str:
        """``rauc status mark-<state> <slot>`` (``booted``, ``other`` or a slot name); returns RAUC's message."""
        result = self._run(["status", f"mark-{state}", slot], "mark_failed")
        return last_line(result.stdout)

    def mark_good(self, slot: str = "booted") -> str:
        return self.mark("good", slot)

    def mark_bad(self, slot: str = "booted") -> str:
        return self.mark("bad", slot)

    def mark_active(self, slot: str) -> str:
        return self.mark("active", slot)
