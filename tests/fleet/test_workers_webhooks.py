"""``wardsight fleet serve --workers 2`` with a webhook receiver: the worker holding a delivery is SIGKILLed while
the receiver still holds the request; the other worker delivers it and the rest, each once, in order."""

from __future__ import annotations

import http.server
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.webhooks.envelope import msg_id_for
from tests.fleet.test_workers import post_until, wait_for, workers_of, workers_server

pytestmark = pytest.mark.sqlite_only  # (several workers: PostgreSQL, chosen by the test)


class Receiver(http.server.ThreadingHTTPServer):
    """Answers 200 and records (webhook-id, the sender's port) per request; the first request is held until
    ``release`` is set (or its sender goes away)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.arrived: list[tuple[str, int]] = []
        self.answered: list[str] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        msg_id = self.headers["webhook-id"]
        first = not self.server.arrived
        self.server.arrived.append((msg_id, self.client_address[1]))
        if first:
            self.server.release.wait(60)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")
        self.server.answered.append(msg_id)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.release.set()
    server.shutdown()


def owner_of_port(pids: set[int], port: int) -> int | None:
    """The process with a TCP socket whose local port is ``port`` (from /proc: the socket's inode)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    for pid in pids:
        with os.scandir(f"/proc/{pid}/fd") as fds:
            for fd in fds:
                try:
                    if os.readlink(fd.path) in {f"socket:[{i}]" for i in inodes}:
                        return pid
                except OSError:
                    continue
    return None


def test_a_worker_killed_mid_delivery_the_other_delivers_each_once_in_order(
    tmp_path: Path, pg_url: str, receiver: Receiver
) -> None:
    with workers_server(tmp_path, pg_url, extra_toml="webhook_allow_insecure = true\n") as (server, device):
        status, created = server.api("/api/v1/webhooks", {"name": "nurse-call", "url": receiver.url})
        assert status == 201, created
        post_until(device, 1)
        assert wait_for(lambda: len(receiver.arrived) == 1)
        post_until(device, 4)  # queued behind the held one (one endpoint: in order)
        [(held, port)] = receiver.arrived
        holder = owner_of_port(workers_of(server.proc.pid), port)
        assert holder is not None
        os.kill(holder, signal.SIGKILL)
        assert wait_for(lambda: len(receiver.answered) == 4, timeout=60), receiver.arrived
        expected = [msg_id_for(e) for e in device.accepted]
        assert held == expected[0]
        assert receiver.answered == expected  # each once, in order (the killed worker's request never answered)
        assert [m for m, _ in receiver.arrived] == [expected[0], *expected]  # (sent again: at least once)
        status, listing = server.api("/api/v1/webhooks")
        assert status == 200
        [endpoint] = listing["webhooks"]
        assert endpoint["delivered_count"] == 4, endpoint
        assert wait_for(lambda: len(workers_of(server.proc.pid)) == 2)  # the supervisor restarted it
