"""PostgreSQL going away under load (a restart, a crash, a fail-over), with ``wardsight fleet serve --workers 2``
as an operator runs it and a real device posting events: requests in flight fail cleanly with a retryable status
(503 with Retry-After, nothing stored) or lose their connection, the workers reconnect by themselves, the device's
next events are stored, and every acknowledged event is stored once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pgcluster
from tests.fleet.store.test_cli_next_to_server import Writer
from tests.fleet.test_workers import stored_events, wait_for, workers_of, workers_server

pytestmark = pytest.mark.sqlite_only  # (PostgreSQL only, on a cluster of its own)


@pytest.fixture
def own_cluster(pg_cluster: pgcluster.Cluster) -> Iterator[pgcluster.Cluster]:
    """A cluster of this test's own (it is restarted under load; the session's cluster serves other tests)."""
    cluster = pgcluster.Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_postgresql_restarted_under_load(tmp_path: Path, own_cluster: pgcluster.Cluster) -> None:
    url = own_cluster.new_database_url()
    with workers_server(tmp_path, url) as (server, device), Writer(device):
        assert wait_for(lambda: len(device.accepted) >= 20)
        own_cluster.restart()
        before = len(device.accepted)
        assert wait_for(lambda: len(device.accepted) >= before + 20, timeout=60), device.refused[-5:]
        assert len(workers_of(server.proc.pid)) == 2  # no worker died of it
    failed = [status for status, _ in device.refused]
    assert set(failed) <= {503, -1}, failed  # retryable, or the connection cut (a device sends it again)
    assert all("try again" in error for status, error in device.refused if status == 503), device.refused[:3]
    stored = stored_events(url)
    assert set(device.accepted) <= set(stored) and len(stored) == len(set(stored))  # each acknowledged one, once
    assert len(stored) - len(device.accepted) <= len(failed)  # (stored, but its reply was lost)
