"""One boot of the twin under qemu-system-x86_64 (TCG), and the host's end of the virtio-serial line to twin-check.

The guest sends ``HELLO``, ``INFO ...``, ``RESULT PASS|FAIL name | detail``, ``ASK question`` and ``DONE``; the host
prints them, records the results, answers the questions (``events``: did the device's events reach the server;
``outbound-probe``: did the host's probe listener see a connection; ``inbound PORT``: can the host connect in
through QEMU's port forward) and waits for the guest to power off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from assemble import Disks
from host import FleetServer, Listener, free_port, try_inbound
from report import Report

BOOT_TIMEOUT = float(os.environ.get("WARDSIGHT_TWIN_BOOT_TIMEOUT", "3600"))  # TCG on a shared 2-core machine
EVENTS_TIMEOUT = float(os.environ.get("WARDSIGHT_TWIN_EVENTS_TIMEOUT", "900"))
INBOUND_GUEST_PORT = 7777
GUEST_CHECKS = {
    "boot1": ["boot", "root-read-only", "agent-running", "firewall-outbound", "firewall-inbound", "watchdog-restart",
              "system-release", "rauc", "rauc-dbus-policy", "rauc-backend"],
    "boot2": ["boot", "root-read-only", "agent-running", "no-second-enrollment-run"],
}
HOST_CHECKS = {"boot1": ["events-reach-server", "events-after-watchdog-restart"], "boot2": ["events-reach-server"]}


@dataclass
class Context:
    disks: Disks
    fat: Path
    server: FleetServer
    probe: Listener
    report: Report


@dataclass
class BootResult:
    name: str
    started: float = field(default_factory=time.time)
    device_id: str = ""
    done: bool = False


def run_checked(command: list[str]) -> None:
    subprocess.run(command, check=True)


def digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def qemu_command(ctx: Context, boot: str, work: Path, hostfwd: int) -> list[str]:
    cmdline = (
        f"root=/dev/vda ro console=ttyS0 panic=10 wardsight.twin={boot} wardsight.twin.fleet={ctx.server.port}"
        f" wardsight.twin.probe={ctx.probe.port} wardsight.twin.inbound={INBOUND_GUEST_PORT}"
    )
    drives = []
    for image in (ctx.disks.root, ctx.disks.persistent, ctx.fat):
        drives += ["-drive", f"file={image},format=raw,if=virtio"]
    return [
        "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "2048", "-smp", "2",
        "-nographic", "-no-reboot", "-monitor", "none", "-serial", f"file:{work / f'console-{boot}.log'}",
        "-kernel", str(ctx.disks.kernel), "-initrd", str(ctx.disks.initrd), "-append", cmdline,
        *drives,
        "-nic", f"user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{hostfwd}-:{INBOUND_GUEST_PORT}",
        "-device", "i6300esb",  # a hardware watchdog for systemd's RuntimeWatchdogSec (reset: QEMU exits)
        "-device", "virtio-serial-pci",
        "-chardev", f"socket,id=twin,path={work / f'{boot}.sock'},server=on,wait=off",
        "-device", "virtserialport,chardev=twin,name=org.wardsight.twin",
    ]


def connect(path: Path, qemu: subprocess.Popen[bytes]) -> socket.socket:
    for _ in range(300):
        if qemu.poll() is not None:
            raise RuntimeError(f"QEMU exited with status {qemu.returncode} before the guest channel opened")
        with contextlib.suppress(OSError):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(path))
            return sock
        time.sleep(0.2)
    raise RuntimeError(f"no QEMU channel at {path}")


def answer(ctx: Context, result: BootResult, question: str, hostfwd: int) -> str:
    prefix = "" if result.name == "boot1" else f"{result.name}:"
    if question == "outbound-probe":
        return f"seen {ctx.probe.connections}"
    if question.startswith("inbound"):
        return try_inbound(hostfwd)
    if question in ("events", "events-after-restart"):
        since = result.started if question == "events" else time.time()
        name = "events-reach-server" if question == "events" else "events-after-watchdog-restart"
        events, waited = wait_events(ctx.server, result.device_id, since)
        kinds = sorted({f"{e.get('app')}/{e.get('type')}" for e in events})
        ctx.report.check(
            prefix + name, bool(events),
            f"{len(events)} event(s) from {result.device_id or '(no identity)'} on the server after {waited:.0f} s"
            f" ({', '.join(kinds) or 'none'})",
        )
        return f"{len(events)} event(s)"
    return "unknown question"


def wait_events(server: FleetServer, device_id: str, since: float) -> tuple[list[dict[str, object]], float]:
    start = time.monotonic()
    events: list[dict[str, object]] = []
    while device_id and time.monotonic() - start < EVENTS_TIMEOUT:
        events = server.events(device_id, since)
        if events:
            break
        time.sleep(5)
    return events, time.monotonic() - start


def handle(ctx: Context, result: BootResult, line: str, sock: socket.socket, hostfwd: int, t0: float) -> None:
    prefix = "" if result.name == "boot1" else f"{result.name}:"
    kind, _, rest = line.partition(" ")
    stamp = f"[{result.name} +{time.monotonic() - t0:.0f}s]"
    if kind == "RESULT":
        verdict, _, text = rest.partition(" ")
        name, _, detail = text.partition(" | ")
        ctx.report.check(prefix + name.strip(), verdict == "PASS", f"{detail.strip()} {stamp}")
    elif kind == "ASK":
        print(f"twin: {stamp} guest asks: {rest}", flush=True)
        reply = answer(ctx, result, rest.strip(), hostfwd)
        sock.sendall(reply.encode() + b"\n")
    elif kind == "DONE":
        result.done = True
    else:
        if line.startswith("INFO device-id "):
            result.device_id = line.split()[2] if line.split()[2] != "-" else ""
        print(f"twin: {stamp} {line}", flush=True)


def lines(sock: socket.socket, deadline: float) -> Iterator[str]:
    buffer = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(1.0, min(30.0, deadline - time.monotonic())))
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, _, buffer = buffer.partition(b"\n")
            yield line.decode(errors="replace").strip()


def boot(ctx: Context, name: str, work: Path) -> BootResult:
    result = BootResult(name)
    hostfwd = free_port()
    t0 = time.monotonic()
    print(f"twin: {name}: starting QEMU (TCG; serial console in {work / f'console-{name}.log'})", flush=True)
    qemu = subprocess.Popen(qemu_command(ctx, name, work, hostfwd), stdin=subprocess.DEVNULL)
    try:
        sock = connect(work / f"{name}.sock", qemu)
        for line in lines(sock, t0 + BOOT_TIMEOUT):
            if line:
                handle(ctx, result, line, sock, hostfwd, t0)
            if result.done:
                break
        sock.close()
        qemu.wait(timeout=180)
        print(f"twin: {name}: powered off after {time.monotonic() - t0:.0f} s", flush=True)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"twin: {name}: {type(exc).__name__}: {exc}", flush=True)
    finally:  # also on SIGTERM / Ctrl-C: never leave QEMU running
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
    missing(ctx.report, result, work)
    return result


def missing(report: Report, result: BootResult, work: Path) -> None:
    prefix = "" if result.name == "boot1" else f"{result.name}:"
    for name in GUEST_CHECKS[result.name] + HOST_CHECKS[result.name]:
        if not report.seen(prefix + name):
            report.check(prefix + name, False, f"no result: the guest did not get there (see {work}/console-"
                         f"{result.name}.log and journal.txt)")


def save_journal(persistent: Path, work: Path) -> None:
    """The guest's journal (kept on the persistent disk) as text in the work directory, read with debugfs."""
    out = work / "journal"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    subprocess.run(["debugfs", "-R", f"rdump /log/journal {out}", str(persistent)], capture_output=True, check=False)
    with (work / "journal.txt").open("w") as text:
        subprocess.run(["journalctl", "-D", str(out / "journal"), "--no-pager", "-o", "short-monotonic"],
                       stdout=text, stderr=subprocess.STDOUT, check=False)
