"""The host's side of the twin test: a fleet server on loopback (``wardsight fleet serve``), the enrollment bundle
(``wardsight provision bundle``) on a FAT disk made with mtools, an NTP answer, and two TCP listeners the guest
must not reach. QEMU's user networking shows the host's loopback to the guest as 10.0.2.2.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

GUEST_HOST = "10.0.2.2"  # the host's loopback as QEMU's user networking shows it to the guest
NTP_EPOCH = 2208988800


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FleetServer:
    """``wardsight fleet serve`` in its own data directory, TLS for the name the guest uses (10.0.2.2)."""

    def __init__(self, wardsight: Path, data: Path) -> None:
        self.wardsight, self.data = wardsight, data
        self.port = free_port()
        self.url = f"https://{GUEST_HOST}:{self.port}"
        data.mkdir(parents=True, exist_ok=True)
        (data / "server.toml").write_text(
            f'port = {self.port}\ntls_hostnames = ["{GUEST_HOST}", "localhost", "127.0.0.1"]\n'
            f'public_url = "{self.url}"\n'
        )
        self.log = (data / "serve.log").open("w")
        self.process = subprocess.Popen(
            [str(wardsight), "--data-dir", str(data), "fleet", "serve"], stdout=self.log, stderr=subprocess.STDOUT
        )
        if not wait_for_port(self.port, 60):
            self.stop()
            raise RuntimeError(f"the fleet server did not start; see {data / 'serve.log'}")

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.wardsight), "--data-dir", str(self.data), *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def bundle(self, out: Path) -> str:
        """A one-time token for room twin-101 and the bundle for it; returns the token."""
        token = self.cli("fleet", "token", "create", "--site", "twin", "--ward", "T", "--room", "twin-101").strip()
        ca = self.data / "fleet-keys" / "ca.crt"
        self.cli("provision", "bundle", "--server", self.url, "--token", token, "--ca", str(ca), "--out", str(out))
        return token

    def devices(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.cli("fleet", "devices").splitlines() if line.strip()]

    def events(self, device_id: str, since: float = 0.0) -> list[dict[str, object]]:
        """Events the device sent (not the server's own "system" events about it, such as device_offline)."""
        lines = self.cli("fleet", "events", "--limit", "10000").splitlines()
        found = [json.loads(line) for line in lines if line.strip()]
        return [
            e for e in found
            if e.get("device_id") == device_id and e.get("app") != "system" and float(str(e["received_at"])) >= since
        ]

    def stop(self) -> None:
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self.log.close()


def wait_for_port(port: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
        time.sleep(0.3)
    return False


class NtpServer:
    """Answers SNTP requests on the host's loopback port 123 with the host's clock (the guest's timesyncd asks
    10.0.2.2:123; the device waits for a synchronised clock before the agent starts)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind(("127.0.0.1", 123))
        except OSError as exc:
            self.sock.close()
            raise RuntimeError(f"cannot answer NTP on 127.0.0.1:123 ({exc}); the guest would wait for time") from None
        self.answered = 0
        threading.Thread(target=self._serve, name="twin-ntp", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                request, peer = self.sock.recvfrom(512)
            except OSError:
                return
            if len(request) < 48:
                continue
            now = time.time() + NTP_EPOCH
            stamp = struct.pack("!II", int(now), int((now % 1) * 2**32))
            # LI 0, version 4, mode 4 (server); stratum 1; "GPS" reference; origin = the client's transmit time.
            reply = bytes([0x24, 1, request[2], 0xE9]) + bytes(8) + b"GPS\0" + stamp + request[40:48] + stamp + stamp
            self.sock.sendto(reply, peer)
            self.answered += 1

    def stop(self) -> None:
        self.sock.close()


class Listener:
    """A TCP listener on the host's loopback that counts connections and greets each (the guest must not reach it)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        threading.Thread(target=self._serve, name="twin-probe", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.sendall(b"host-probe\n")

    def stop(self) -> None:
        self.sock.close()


def try_inbound(port: int, timeout: float = 10) -> str:
    """Connect to QEMU's host forward to the guest and wait for the guest listener's banner."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            data = conn.recv(64)
    except OSError as exc:
        return f"refused ({type(exc).__name__}: {exc.strerror or exc})"
    if data:
        return f"accepted (the guest answered {data!r})"
    return "refused (QEMU accepted, the guest never answered: connection closed without data)"


def make_fat(image: Path, bundle: Path) -> None:
    """A FAT disk labelled BOOTFS with wardsight/enrollment.json, made with mtools (no mounting)."""
    image.unlink(missing_ok=True)
    subprocess.run(["mkfs.vfat", "-C", "-n", "BOOTFS", str(image), "65536"], check=True, capture_output=True)
    subprocess.run(["mmd", "-i", str(image), "::wardsight"], check=True)
    subprocess.run(["mcopy", "-i", str(image), str(bundle), "::wardsight/enrollment.json"], check=True)


def fat_bundle(image: Path) -> str | None:
    """The bundle file's text read back with mtools, or None when the file is gone."""
    done = subprocess.run(["mtype", "-i", str(image), "::wardsight/enrollment.json"], capture_output=True, check=False)
    return done.stdout.decode(errors="replace") if done.returncode == 0 else None


def fat_listing(image: Path) -> str:
    done = subprocess.run(["mdir", "-i", str(image), "-/", "::"], capture_output=True, text=True, check=False)
    return " ".join((done.stdout + done.stderr).split())
