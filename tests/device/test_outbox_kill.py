"""The device outbox across SIGKILLed processes: real server, real agent, real footage, real SQLite, real TLS.

One story, in order:

A. The server is down. The agent (``wardsight device run`` on the demo clip) queues events in its on-disk
   outbox and is killed with SIGKILL, twice. Every event queued before a kill is still there afterwards,
   in the same order, and the SQLite file is intact.
B. The server comes back (same port, same data directory, same CA). The agent starts again and delivers the
   backlog; the server is SIGKILLed while it does, and restarted; then the agent is SIGKILLed while it
   delivers what waited (an event may be stored but not yet removed from the outbox). Restarted once more,
   the agent plays the clip to its end: the outbox is empty and the server holds every event exactly once,
   in the order the device queued them, none refused.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fleet.helpers import free_port
from wardsight import wire

ROOM = "3B-12"
DEVICE_TOML = """\
heartbeat_seconds = 1.0
[source]
kind = "file"
realtime = false
loop = true
[occupancy]
stable_seconds = 0.2
"""
SUMMARY = re.compile(r"events: (\d+) raised, (\d+) sent, (\d+) refused, (\d+) unsent")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, procs: Procs | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if procs is not None:
            procs.check_alive()
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}" + (procs.tails() if procs else ""))


class Procs:
    """Subprocesses of this test, their output kept in files; whatever is left is SIGKILLed at teardown."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.count = 0
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARDSIGHT_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.env = env

    def files(self, name: str) -> tuple[Path, Path]:
        return self.logs / f"{name}.out", self.logs / f"{name}.err"

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        out, err = self.files(name)
        with out.open("wb") as fo, err.open("wb") as fe:
            proc = subprocess.Popen(
                [sys.executable, "-m", "wardsight", *args],
                stdout=fo,
                stderr=fe,
                stdin=subprocess.DEVNULL,
                env={**self.env, **(env or {})},
            )
        self.running[name] = proc
        return proc

    def run(self, name: str, *args: str, timeout: float = 60.0) -> str:
        proc = self.start(name, *args)
        try:
            rc = proc.wait(timeout)
        finally:
            self.running.pop(name, None)
        out, err = self.files(name)
        assert rc == 0, f"{name} exited {rc}:\n{out.read_text()}\n{err.read_text()}"
        return out.read_text()

    def kill(self, name: str) -> None:
        proc = self.running.pop(name)
        if proc.poll() is not None:
            pytest.fail(f"{name} had already exited with {proc.returncode}" + self.tails())
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL

    def check_alive(self) -> None:
        for name, proc in self.running.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited early with {proc.returncode}" + self.tails())

    def tails(self) -> str:
        parts = []
        for path in sorted(self.logs.iterdir()):
            text = path.read_text(errors="replace")[-2000:]
            parts.append(f"\n--- {path.name} ---\n{text}")
        return "".join(parts)

    def stop_all(self) -> None:
        for proc in self.running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        self.running.clear()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path / "logs")
    try:
        yield p
    finally:
        p.stop_all()


def accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)


def outbox_rows(path: Path) -> list[tuple[int, str]]:
    """(seq, jws) in order, from an outbox no process is writing to; the file must be intact."""
    db = read_only(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [(int(seq), str(jws)) for seq, jws in db.execute("SELECT seq, jws FROM outbox ORDER BY seq")]
    finally:
        db.close()


def count(path: Path, sql: str, params: tuple[str, ...] = ()) -> int:
    """A count from a database another process may be writing (0 while it does not exist yet)."""
    if not path.exists():
        return 0
    db = read_only(path)
    try:
        return int(db.execute(sql, params).fetchone()[0])
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # not created yet
            return 0
        raise
    finally:
        db.close()


def stored_events(path: Path, device_id: str, *, with_time: bool = False) -> list:
    """The device's events on the server, in the order they were received."""
    db = read_only(path)
    try:
        rows = db.execute(
            "SELECT event_id, time FROM events WHERE device_id = ? ORDER BY received_at, rowid", (device_id,)
        ).fetchall()
    finally:
        db.close()
    return rows if with_time else [event_id for event_id, _ in rows]


def test_outbox_survives_killed_agent_and_killed_server(tmp_path: Path, data_dir_with_models: Path, procs: Procs):
    server_dir, device_dir = tmp_path / "server", data_dir_with_models
    (device_dir / "device.toml").write_text(DEVICE_TOML)
    outbox, fleet_db = device_dir / "device" / "outbox.db", server_dir / "fleet.db"
    port = free_port()
    serve = ("-v", "--data-dir", str(server_dir), "fleet", "serve", "--port", str(port))
    agent = ("-v", "--data-dir", str(device_dir), "device", "run")

    def start_server(name: str) -> None:
        procs.start(name, *serve)
        wait_for(lambda: accepts(port), 30, f"{name} to listen on {port}", procs)

    # Set up: a TLS server with its own CA, a token and bundle, an enrolled device; then the server dies.
    start_server("server-1")
    ca = (server_dir / "fleet-keys" / "ca.crt").read_bytes()
    bundle = tmp_path / "bundle.json"
    procs.run(
        "token", "--data-dir", str(server_dir), "fleet", "token", "create", "--room", ROOM,
        "--bundle", str(bundle), "--server", f"https://127.0.0.1:{port}",
    )  # fmt: skip
    enrolled = procs.run("enroll", "--data-dir", str(device_dir), "device", "enroll", "--bundle", str(bundle))
    device_id = re.search(r"enrolled as (dev-[0-9a-f]+) in room 3B-12 at https://", enrolled)
    assert device_id, enrolled
    device_id = device_id.group(1)
    public_key = wire.load_private_key(device_dir / "device" / "key.pem").public_key()
    procs.kill("server-1")
    assert not accepts(port)

    def event(jws: str) -> wire.Event:
        return wire.verify_event(jws, lambda kid: public_key if kid == device_id else None)

    queued = "SELECT count(*) FROM outbox"

    # A1: the agent queues events while the server is down and is killed.
    procs.start("agent-1", *agent)
    wait_for(lambda: count(outbox, queued) >= 3, 60, "agent-1 to queue 3 events", procs)
    procs.kill("agent-1")
    first = outbox_rows(outbox)
    assert len(first) >= 3
    events = [event(jws) for _, jws in first]
    assert {(e.device_id, e.room, e.app) for e in events} == {(device_id, ROOM, "occupancy")}

    # A2: restarted, it keeps every earlier event, in order, adds its own after them and is killed again.
    procs.start("agent-2", *agent)
    wait_for(lambda: count(outbox, queued) >= len(first) + 3, 60, "agent-2 to queue 3 more events", procs)
    procs.kill("agent-2")
    second = outbox_rows(outbox)
    assert second[: len(first)] == first
    assert len(second) >= len(first) + 3
    assert [seq for seq, _ in second] == sorted({seq for seq, _ in second})
    backlog = [event(jws).event_id for _, jws in second]
    assert len(set(backlog)) == len(backlog)
    # While the server was down nothing was sent, and each run said why.
    for name in ("agent-1", "agent-2"):
        assert "cannot reach" in procs.files(name)[1].read_text()

    # B1: the server comes back (same port, data directory and CA); the agent drains the backlog while still
    # producing, and the server is SIGKILLed in the middle of that, then restarted.
    start_server("server-2")
    assert (server_dir / "fleet-keys" / "ca.crt").read_bytes() == ca
    mine = ("SELECT count(*) FROM events WHERE device_id = ?", (device_id,))
    procs.start("agent-3", *agent)
    wait_for(lambda: count(fleet_db, *mine) >= 2 and count(outbox, queued) > 0, 60, "the backlog to flow", procs)
    procs.kill("server-2")
    delivered_before_kill = count(fleet_db, *mine)
    print(f"backlog {len(backlog)}; the server was killed after storing {delivered_before_kill}")
    time.sleep(0.3)  # the agent finds the server gone and keeps its events
    start_server("server-3")

    # B2: while the restarted server receives what waited, the agent is SIGKILLed in the middle of that.
    base = count(fleet_db, *mine)
    wait_for(lambda: count(fleet_db, *mine) > base and count(outbox, queued) > 0, 60, "delivery to resume", procs)
    procs.kill("agent-3")
    assert "cannot reach" in procs.files("agent-3")[1].read_text()  # it saw the server die
    time.sleep(0.3)  # a request the agent sent before dying may still be committed by the server
    on_server = stored_events(fleet_db, device_id)
    left = [event(jws).event_id for _, jws in outbox_rows(outbox)]
    assert left, "the agent was killed with an empty outbox"
    # Sent but not yet removed when the agent died: only the head of the outbox, at most one event.
    both = [i for i in left if i in set(on_server)]
    assert both == left[: len(both)] and len(both) <= 1
    print(f"agent-3 killed: {len(on_server)} stored, {len(left)} queued, {len(both)} stored and queued")
    expected = on_server + left[len(both) :]  # what the device queued, in order, delivered or not
    assert len(set(expected)) == len(expected)
    assert expected[: len(backlog)] == backlog

    # B3: the agent, restarted, sends the rest and plays the clip once to its end.
    procs.start("agent-4", *agent, env={"WARDSIGHT_DEVICE_SOURCE__LOOP": "false"})
    agent_4 = procs.running["agent-4"]
    assert agent_4.wait(90) == 0, procs.tails()
    procs.running.pop("agent-4")
    out = procs.files("agent-4")[0].read_text()
    summary = SUMMARY.search(out)
    assert summary, out
    raised, sent, refused, unsent = map(int, summary.groups())
    assert raised > 0 and refused == 0 and unsent == 0
    assert sent == len(left) + raised  # each entry sent once (the duplicate, if any, answered 200, not refused)
    assert outbox_rows(outbox) == []

    db = read_only(fleet_db)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        total = db.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        db.close()
    rows = stored_events(fleet_db, device_id, with_time=True)
    stored = [event_id for event_id, _ in rows]
    # Every event exactly once, in the order the device queued them: the backlog, agent-3's, agent-4's.
    assert len(stored) == len(set(stored)) == total
    assert stored[: len(expected)] == expected
    assert len(stored) == len(expected) + raised
    for run in (rows[len(backlog) : len(expected)], rows[len(expected) :]):
        times = [t for _, t in run]
        assert times == sorted(times)
    for name in ("agent-1", "agent-2", "agent-3", "agent-4"):
        assert "server refused an event" not in procs.files(name)[1].read_text()
    for path in procs.logs.iterdir():
        assert "Traceback" not in path.read_text(), path.name
