"""PostgreSQL going away under load (a restart, a crash, a fail-over), with ``wardsight fleet serve --workers 2``
as an operator runs it and a real device posting events: requests in flight fail cleanly with a retryable status
(503 with Retry-After, nothing stored) or lose their connection, the workers reconnect by themselves, the device's
next events are stored, and every acknowledged event is stored once."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.accounts import service as accounts
from fleet.cli import create_token
from fleet.config import load_server_config
from fleet.store.db import FleetDB
from tests import pgcluster
from tests.fleet.store.test_cli_next_to_server import Device, LiveServer
from tests.fleet.test_workers import SERVER_TOML, announced, serve, wait_for, workers_of

pytestmark = pytest.mark.sqlite_only  # (PostgreSQL only, on a cluster of its own)


@pytest.fixture
def own_cluster(pg_cluster: pgcluster.Cluster) -> Iterator[pgcluster.Cluster]:
    """A cluster of this test's own (it is restarted under load; the session's cluster serves other tests)."""
    cluster = pgcluster.Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


class Poster:
    """The device posting an event every 20 ms on a thread; every status kept."""

    def __init__(self, device: Device) -> None:
        self.device, self.statuses = device, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.statuses.append(self.device.post())

    def __enter__(self) -> Poster:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_postgresql_restarted_under_load(tmp_path: Path, own_cluster: pgcluster.Cluster) -> None:
    url = own_cluster.new_database_url()
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "server.toml").write_text(SERVER_TOML + f'database_url = "{url}"\n')
    config = load_server_config(data, None, {})
    db = FleetDB(config.store_location)
    try:
        api_token = accounts.create_api_token(db.db, "script", "admin", "system", time.time())
    finally:
        db.close()
    enroll_token = create_token(config, "room-1", ttl=600)
    proc = serve(data, "--workers", "2")
    try:
        line = announced(proc)
        assert wait_for(lambda: len(workers_of(proc.pid)) == 2)
        server = LiveServer("serve", data, proc, line.split()[3], api_token, enroll_token)
        device = Device(server, tmp_path / "device", enroll_token, "cam-1")
        with Poster(device) as poster:
            assert wait_for(lambda: len(device.accepted) >= 20)
            own_cluster.restart()
            restarted = len(poster.statuses)
            assert wait_for(lambda: poster.statuses[restarted:].count(201) >= 20, timeout=60), poster.statuses[-30:]
        assert proc.poll() is None and len(workers_of(proc.pid)) == 2  # no worker died of it
        failed = [s for s in poster.statuses if s != 201]
        assert set(failed) <= {503, -1}, failed  # retryable, or the connection cut (a device sends it again)
        statuses_503 = [error for status, error in device.refused if status == 503]
        assert all("try again" in error for error in statuses_503), statuses_503[:3]
        db = FleetDB(config.store_location)
        try:
            stored = [r[0] for r in db.db.conn.execute("SELECT event_id FROM events WHERE app = 'occupancy'")]
        finally:
            db.close()
        assert set(device.accepted) <= set(stored) and len(stored) == len(set(stored))  # each acknowledged one, once
        assert len(stored) - len(device.accepted) <= len(failed)  # (stored, but its reply was lost)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
