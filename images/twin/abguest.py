"""One boot of the A/B twin: QEMU (TCG) with OVMF, the GPT disk (GRUB, system_a, system_b), the persistent disk and
the enrollment FAT; the host's end of the virtio-serial line to the in-guest reporter (twin-ab-check).

The guest reboots by exiting QEMU (``-no-reboot``): each :class:`Machine` is one boot, and the host starts the next
with the same disks (and the same UEFI variables). :meth:`Machine.kill` is a power cut: QEMU killed, whatever the
guest had not written is lost.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from guest import connect

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


@dataclass(frozen=True)
class AbDisks:
    disk: Path
    persistent: Path
    fat: Path
    vars: Path


class Machine:
    """A running boot. ``lines`` holds what the guest said; ``said`` keeps all of it."""

    def __init__(self, disks: AbDisks, work: Path, name: str) -> None:
        self.name, self.t0 = name, time.monotonic()
        self.console = work / f"console-{name}.log"
        path = work / f"{name}.sock"
        drives = []
        for image in (disks.disk, disks.persistent, disks.fat):
            drives += ["-drive", f"file={image},format=raw,if=virtio"]
        command = [
            "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "2048", "-smp", "2",
            "-nographic", "-no-reboot", "-monitor", "none", "-serial", f"file:{self.console}",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={disks.vars}",
            *drives,
            "-nic", "user,model=virtio-net-pci",
            "-device", "i6300esb",
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=twin,path={path},server=on,wait=off",
            "-device", "virtserialport,chardev=twin,name=org.wardsight.twin",
        ]  # fmt: skip
        print(f"twin-ab: {name}: starting QEMU (serial console in {self.console})", flush=True)
        self.qemu = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        self.sock = connect(path, self.qemu)
        self.lines: queue.Queue[str] = queue.Queue()
        self.said: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def stamp(self) -> str:
        return f"[{self.name} +{time.monotonic() - self.t0:.0f}s]"

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self.sock.recv(4096)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                raw, _, buffer = buffer.partition(b"\n")
                line = raw.decode(errors="replace").strip()
                if line:
                    print(f"twin-ab: {self.stamp()} guest: {line}", flush=True)
                    self.said.append(line)
                    self.lines.put(line)

    def expect(self, prefix: str, timeout: float) -> str | None:
        """The next line starting with ``prefix`` (others are skipped), None on timeout or if the machine stopped."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=1.0)
            except queue.Empty:
                if self.qemu.poll() is not None and self.lines.empty():
                    return None
                continue
            if line.startswith(prefix):
                return line
        return None

    def send(self, text: str) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(text.encode() + b"\n")

    def running(self) -> bool:
        return self.qemu.poll() is None

    def wait_exit(self, timeout: float) -> bool:
        """Did the guest stop (a reboot or power-off ends QEMU) within ``timeout``?"""
        try:
            self.qemu.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        print(f"twin-ab: {self.stamp()} QEMU exited ({self.qemu.returncode})", flush=True)
        return True

    def kill(self) -> None:
        """Power cut."""
        if self.qemu.poll() is None:
            self.qemu.kill()
            self.qemu.wait()
            print(f"twin-ab: {self.stamp()} QEMU killed (power cut)", flush=True)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
