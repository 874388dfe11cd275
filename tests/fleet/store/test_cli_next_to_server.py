"""Every ``wardsight fleet`` command that opens ``fleet.db``, each run as its own process against the data directory
of a live server that keeps writing (issue 15, item 1).

The server runs in a subprocess in two ways: as ``wardsight demo`` runs it (``BackgroundServer`` in its own
process, which then opens the database itself for its set-up, as the demo does) and as ``wardsight fleet serve``.
A device posts signed events all along. After each command: ``fleet.db``, ``-wal`` and ``-shm`` are the same files
the server opened (none deleted or replaced under it), ``PRAGMA integrity_check`` is ok, every event the server
accepted before and after is stored, and the server's API answers and sees what the command wrote.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from firmware.identity import IdentityStore
from firmware.transport import CredentialFile, FleetClient
from fleet.accounts import service as accounts
from fleet.cli import create_token
from fleet.config import ServerConfig, load_server_config
from fleet.store.db import FleetDB
from tests.conftest import ROOT
from wardsight import wire
from wardsight.bundle import Bundle

pytestmark = pytest.mark.sqlite_only  # SQLite WAL files next to a running server

SERVER_TOML = """\
host = "127.0.0.1"
port = 0
insecure_http = true
password_memory_kib = 1024
password_time_cost = 1
"""

# The server as ``wardsight demo`` runs it: in this process, which then opens the database itself (an API token
# and an enrollment token, as the demo's set-up does) while the server has it open.
DEMO_LIKE_SERVER = """\
import json, os, sys, time
from pathlib import Path
from fleet.accounts import service as accounts
from fleet.cli import create_token
from fleet.config import load_server_config
from fleet.server import BackgroundServer
from fleet.store.db import FleetDB

config = load_server_config(Path(sys.argv[1]), None, os.environ)
server = BackgroundServer(config).start()
db = FleetDB(config.database)
try:
    api_token = accounts.create_api_token(db.db, "demo-ota", "admin", "system", time.time())
finally:
    db.close()
enroll_token = create_token(config, "room-1", ttl=600)
print(json.dumps({"url": server.url, "api_token": api_token, "enroll_token": enroll_token}), flush=True)
sys.stdin.read()  # until the test closes it
server.stop()
print("stopped", flush=True)
"""

PASSWORD = "correct horse battery staple\n"


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("WARDSIGHT_")}


@dataclass
class LiveServer:
    how: str  # "demo" or "serve"
    data_dir: Path
    proc: subprocess.Popen[str]
    url: str
    api_token: str
    enroll_token: str
    files: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (device, inode) when it started

    @property
    def db_path(self) -> Path:
        return self.data_dir / "fleet.db"

    def api(self, path: str, body: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET")
        request.add_header("Authorization", f"Bearer {token or self.api_token}")
        if data:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=15) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")


def tokens_for(config: ServerConfig) -> tuple[str, str]:
    """An admin API token and an enrollment token for room-1, made in ``config``'s database before its server starts."""
    db = FleetDB(config.store_location)
    try:
        api_token = accounts.create_api_token(db.db, "script", "admin", "system", time.time())
    finally:
        db.close()
    return api_token, create_token(config, "room-1", ttl=600)


def start_server(data_dir: Path, how: str) -> LiveServer:
    data_dir.mkdir(mode=0o700)
    (data_dir / "server.toml").write_text(SERVER_TOML)
    if how == "demo":
        argv = [sys.executable, "-c", DEMO_LIKE_SERVER, str(data_dir)]
    else:
        # `wardsight fleet serve` opens the database once; the test makes its token and the device's before.
        api_token, enroll_token = tokens_for(load_server_config(data_dir, None, {}))
        argv = [sys.executable, "-m", "wardsight", "--data-dir", str(data_dir), "fleet", "serve"]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=environment(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if how == "demo":
        try:
            started = json.loads(line)
        except ValueError:
            proc.kill()
            raise AssertionError(f"the server did not start: {line}{proc.stdout.read()}") from None
        url, api_token, enroll_token = started["url"], started["api_token"], started["enroll_token"]
    else:
        if not line.startswith("fleet server on "):
            proc.kill()
            raise AssertionError(f"the server did not start: {line}{proc.stdout.read()}")
        url = line.split()[3]
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
    return LiveServer(how, data_dir, proc, url.rstrip("/"), api_token, enroll_token)


def stop_server(server: LiveServer) -> int:
    if server.proc.poll() is None:
        if server.how == "demo":
            assert server.proc.stdin is not None
            server.proc.stdin.close()  # the demo-like server stops when its stdin closes
        else:
            server.proc.send_signal(signal.SIGINT)  # `wardsight fleet serve` stops on Ctrl-C
        try:
            return server.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            return server.proc.wait()
    return server.proc.returncode


class Device:
    """An enrolled device posting signed events to the server, accepted ids kept."""

    def __init__(self, server: LiveServer, directory: Path, token: str, name: str) -> None:
        store = IdentityStore(directory)
        self.identity, _ = store.enroll(Bundle(server.url, token, None, insecure_http=True), name)
        self.key = store.load_or_create_key()
        self.client = FleetClient(
            server.url, self.identity.device_id, self.key, CredentialFile(directory / "credential"), context=None
        )
        self.accepted: list[str] = []
        self.refused: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def post(self) -> int:
        event = wire.Event(
            event_id=wire.new_event_id(),
            device_id=self.identity.device_id,
            room=self.identity.room,
            app="occupancy",
            type="count_changed",
            time=time.time(),
            data={"count": 1, "previous": 0},
        )
        try:
            reply = self.client.post_event("", wire.sign_event(event, self.key))
            status, error = reply.status, reply.error
        except Exception as exc:  # the server gone or its database broken: recorded, the test fails on it
            status, error = -1, repr(exc)
        with self._lock:
            if status == 201:
                self.accepted.append(event.event_id)
            else:
                self.refused.append((status, error))
        return status


class Writer:
    """Events from a device every 50 ms, on a thread, while commands run."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.device.post()

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=20)


def identities(server: LiveServer) -> dict[str, tuple[int, int]]:
    """(device, inode) of fleet.db, -wal and -shm (by name: nothing is opened)."""
    out = {}
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{server.db_path}{suffix}")
        st = os.stat(path) if path.exists() else None
        out[path.name] = (st.st_dev, st.st_ino) if st else (0, 0)
    return out


def stored_event_ids(db_path: Path) -> set[str]:
    # Read only: this connection can neither checkpoint nor delete the WAL when it closes.
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        return {row[0] for row in conn.execute("SELECT event_id FROM events")}
    finally:
        conn.close()


def check(server: LiveServer, device: Device, after: str) -> None:
    """Everything the issue asks after one command; ``after`` names it in the failure."""
    assert server.proc.poll() is None, f"after {after}: the server exited with {server.proc.returncode}"
    assert identities(server) == server.files, f"after {after}: fleet.db, -wal or -shm deleted or replaced"
    assert device.post() == 201, f"after {after}: an event was refused: {device.refused[-1:]}"
    with device._lock:
        accepted, refused = list(device.accepted), list(device.refused)
    assert not refused, f"after {after}: the server refused events: {refused[:3]}"
    stored = stored_event_ids(server.db_path)
    missing = set(accepted) - stored
    assert not missing, f"after {after}: {len(missing)} of {len(accepted)} accepted events are not stored"
    status, body = server.api("/api/v1/devices")
    assert status == 200, f"after {after}: the API answered {status}: {body}"


def wardsight(server: LiveServer, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "wardsight", "--data-dir", str(server.data_dir), "fleet", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=environment(),
    )
    assert done.returncode == 0, f"wardsight fleet {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def device_status(server: LiveServer, device_id: str) -> str:
    status, body = server.api("/api/v1/devices")
    assert status == 200, body
    return next(d["status"] for d in body["devices"] if d["id"] == device_id)


# Every `wardsight fleet` command that opens fleet.db (`wardsight fleet --help` and its groups' --help list them);
# a new one belongs here.
DATABASE_COMMANDS = {
    ("token", "create"),
    ("token", "revoke"),
    ("device", "approve"),
    ("device", "quarantine"),
    ("device", "release"),
    ("device", "revoke"),
    ("devices",),
    ("events",),
    ("operator", "add"),
    ("operator", "list"),
    ("operator", "set-role"),
    ("operator", "disable"),
    ("operator", "enable"),
    ("operator", "api-token", "create"),
    ("migrate",),
    ("export",),
    ("import",),
}


def test_the_list_names_every_database_command():
    from wardsight_cli.main import cli

    def leaves(group: Any, prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from leaves(command, (*prefix, name))
            else:
                yield (*prefix, name)

    assert set(leaves(cli.commands["fleet"], ())) - {("serve",)} == DATABASE_COMMANDS


@contextmanager
def live_server(tmp_path: Path, how: str) -> Iterator[tuple[LiveServer, Device]]:
    server = start_server(tmp_path / "data", how)
    try:
        device = Device(server, tmp_path / "device", server.enroll_token, "cam-writer")
        for _ in range(3):
            assert device.post() == 201, device.refused
        server.files = identities(server)
        assert (0, 0) not in server.files.values(), server.files  # the server has its WAL open
        yield server, device
    finally:
        code = stop_server(server)
    assert code in (0, 130), f"the server ended with {code}"


class Commands:
    """Runs ``wardsight fleet ...`` in its own process and checks the server after it."""

    def __init__(self, server: LiveServer, device: Device) -> None:
        self.server, self.device = server, device
        self.ran: set[tuple[str, ...]] = set()

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        out = wardsight(self.server, *args, stdin=stdin)
        self.ran.add(next(c for c in DATABASE_COMMANDS if args[: len(c)] == c))
        check(self.server, self.device, "wardsight fleet " + " ".join(args))
        return out


def finish(server: LiveServer, *devices: Device) -> None:
    """After the commands: the checks once more; then, the server stopped (it checkpoints), every accepted event is
    in fleet.db."""
    check(server, devices[0], "all of them")
    assert len(devices[0].accepted) > 10, "the device kept writing while the commands ran"
    assert stop_server(server) in (0, 130)
    assert {e for d in devices for e in d.accepted} <= stored_event_ids(server.db_path)


def test_every_fleet_command_is_safe_next_to_the_server_as_the_demo_runs_it(tmp_path):
    """The issue's case: ``wardsight demo``'s server (in the demo's process, which opens the database again for its
    set-up). Before the fix the first command deleted the server's -wal and -shm when it closed the database."""
    with live_server(tmp_path, "demo") as (server, writer_device):
        with Writer(writer_device):
            run = Commands(server, writer_device)
            # Enrollment tokens: one the server then consumes, one revoked.
            token = run("token", "create", "--room", "room-2", "--approval").strip()
            second = Device(server, tmp_path / "second", token, "cam-second")  # the server writes: enrollment
            device_id = second.identity.device_id
            spare = run("token", "create", "--room", "room-3", "--ttl", "600").strip()
            run("token", "revoke", spare.split(".")[1])

            # The second device through every status change, each seen by the server's API.
            for action, status in (("approve", "active"), ("quarantine", "quarantined"), ("release", "active")):
                run("device", action, device_id, "--reason", "test")
                assert device_status(server, device_id) == status
                if status == "active":
                    assert second.post() == 201, second.refused
            listed = [json.loads(line) for line in run("devices").splitlines()]
            assert {d["id"] for d in listed} >= {device_id, writer_device.identity.device_id}
            assert run("events", "--limit", "5").count("\n") == 5
            run("device", "revoke", device_id, "--reason", "test")
            assert device_status(server, device_id) == "revoked"

            # Operators and API tokens, with the server adding one of its own in between.
            run("operator", "add", "alice", "--role", "admin", "--password-stdin", stdin=PASSWORD)
            bob = {"username": "bob", "password": PASSWORD.strip(), "role": "viewer"}
            status, body = server.api("/api/v1/operators", bob)
            assert status == 201, body
            operators = {json.loads(line)["username"] for line in run("operator", "list").splitlines()}
            assert operators >= {"alice", "bob"}
            run("operator", "set-role", "bob", "--role", "operator")
            run("operator", "disable", "bob")
            run("operator", "enable", "bob")
            viewer = run("operator", "api-token", "create", "--name", "nightly", "--role", "viewer").strip()
            assert server.api("/api/v1/devices", token=viewer)[0] == 200  # the server knows the CLI's token
            assert "already at schema version" in run("migrate")
            assert "up to date" in run("migrate", "--check")
            run("export", "--to", str(tmp_path / "live.jsonl"))
            other = tmp_path / "other.toml"
            other.write_text(f'database = "{tmp_path / "other.db"}"\n')
            run("migrate", "--config", str(other))
            run("import", "--from", str(tmp_path / "live.jsonl"), "--config", str(other))

            assert run.ran == DATABASE_COMMANDS
        finish(server, writer_device, second)


def test_fleet_commands_are_safe_next_to_wardsight_fleet_serve(tmp_path):
    """The same next to ``wardsight fleet serve`` (a command of each kind: every one opens the database the same
    way, :func:`fleet.store.db.connect`; all of them are run above)."""
    with live_server(tmp_path, "serve") as (server, writer_device):
        with Writer(writer_device):
            run = Commands(server, writer_device)
            token = run("token", "create", "--room", "room-2", "--approval").strip()
            second = Device(server, tmp_path / "second", token, "cam-second")
            run("device", "approve", second.identity.device_id)
            assert second.post() == 201, second.refused
            assert run("events", "--limit", "3").count("\n") == 3
            run("operator", "add", "alice", "--role", "admin", "--password-stdin", stdin=PASSWORD)
            viewer = run("operator", "api-token", "create", "--name", "nightly", "--role", "viewer").strip()
            assert server.api("/api/v1/devices", token=viewer)[0] == 200
        finish(server, writer_device, second)
