"""``wardsight fleet serve --workers N``: N processes on one port sharing a PostgreSQL database, run as an operator
runs them (the real command, a real device). A worker killed mid-load is restarted; a nonce it minted is accepted
by the other; every acknowledged event is stored once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.config import load_server_config
from fleet.store.db import FleetDB
from tests.conftest import ROOT
from tests.fleet.store.test_cli_next_to_server import SERVER_TOML, Device, LiveServer, environment, tokens_for

pytestmark = pytest.mark.sqlite_only  # (each test chooses its backend itself)



def workers_of(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return {int(p) for p in out.split()}


def wait_for(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def post_until(device: Device, accepted: int) -> None:
    """Post until ``accepted`` events were acknowledged; a request cut off with a killed worker may fail (a device
    sends it again from its outbox), at most a few."""
    while len(device.accepted) < accepted:
        device.post()
        assert len(device.refused) <= 3, device.refused


def serve(data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wardsight", "--data-dir", str(data_dir), "fleet", "serve", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=environment(),
    )


def announced(proc: subprocess.Popen[str]) -> str:
    """The supervisor's "fleet server on ..." line (workers' log lines may come first: they share the pipe)."""
    assert proc.stdout is not None
    seen = []
    for _ in range(200):
        line = proc.stdout.readline()
        if not line or line.startswith("fleet server on "):
            break
        seen.append(line)
    assert line.startswith("fleet server on "), "".join(seen) + line
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
    return line


@contextlib.contextmanager
def workers_server(
    tmp_path: Path, database_url: str, workers: int = 2, extra_toml: str = ""
) -> Iterator[tuple[LiveServer, Device]]:
    """``wardsight fleet serve --workers N`` on ``database_url`` as an operator starts it, and one enrolled device;
    stopped with Ctrl-C at the end (it must exit 0 and leave no worker behind)."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "server.toml").write_text(SERVER_TOML + f'database_url = "{database_url}"\n' + extra_toml)
    api_token, enroll_token = tokens_for(load_server_config(data, None, {}))
    proc = serve(data, "--workers", str(workers))
    try:
        line = announced(proc)
        assert f"{workers} workers" in line and "database postgresql://" in line
        assert wait_for(lambda: len(workers_of(proc.pid)) == workers)
        server = LiveServer("serve", data, proc, line.split()[3], api_token, enroll_token)
        yield server, Device(server, tmp_path / "device", enroll_token, "cam-1")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    assert not workers_of(proc.pid)


def stored_events(database_url: str) -> list[str]:
    db = FleetDB(database_url)
    try:
        return [r[0] for r in db.db.conn.execute("SELECT event_id FROM events WHERE app = 'occupancy'")]
    finally:
        db.close()


def test_several_workers_on_sqlite_are_refused_with_the_reason(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "server.toml").write_text(SERVER_TOML)
    proc = serve(data, "--workers", "2")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "several workers need PostgreSQL" in out


def test_workers_share_one_port_and_one_database_and_survive_a_killed_worker(tmp_path: Path, pg_url: str) -> None:
    with workers_server(tmp_path, pg_url) as (server, device):
        post_until(device, 20)
        # Kill one worker: the device's next request carries a nonce that worker may have minted; the other answers.
        victim = min(workers_of(server.proc.pid))
        os.kill(victim, signal.SIGKILL)
        post_until(device, 40)
        assert wait_for(lambda: len(workers_of(server.proc.pid)) == 2 and victim not in workers_of(server.proc.pid))
        post_until(device, 60)
    stored = stored_events(pg_url)
    assert set(device.accepted) <= set(stored) and len(device.accepted) == 60  # every acknowledged event, once
    assert len(stored) - len(device.accepted) <= len(device.refused)  # (stored, but the reply was lost)
