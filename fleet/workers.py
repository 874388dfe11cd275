"""Several server workers on one port: ``wardsight fleet serve --workers N`` (PostgreSQL only).

The supervisor (the process the operator started) prepares what the workers would otherwise race for (the
schema's migrations, the fleet CA and the server certificate, a free port when port 0 was asked for), then starts
N worker processes. Each is a whole fleet server (:class:`fleet.server.BackgroundServer`) bound to the same
address with ``SO_REUSEPORT``, so the kernel spreads new connections over them; they share nothing but the
database and the keys directory. The supervisor announces the server, writes ``server.listening.json``,
restarts a worker that dies (after a pause that grows while workers keep dying, up to
:data:`MAX_RESTART_PAUSE_S`), and on Ctrl-C or SIGTERM stops them all.

A worker gets its configuration (and the supervisor's log level) as JSON on its standard input (never on the command
line or in the environment: the database URL may hold a password) and prints one ``ready <url>`` line when it listens.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from fleet import pki
from fleet.config import ServerConfig
from fleet.server import (
    BackgroundServer,
    Listening,
    describe_store,
    forget_listening,
    keys_dir,
    listening_path,
    stop_on_signals,
    url_host,
    write_listening,
)
from fleet.store.db import FleetDB
from wardsight.errors import WardSightError

log = logging.getLogger("wardsight.fleet.workers")

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
MAX_RESTART_PAUSE_S = 30.0
MAX_WORKERS = 64


def check(config: ServerConfig, workers: int) -> None:
    """Refuse a worker count this configuration cannot run (one clear sentence)."""
    if not 1 <= workers <= MAX_WORKERS:
        raise WardSightError(f"--workers must be between 1 and {MAX_WORKERS}")
    if workers > 1 and config.database_url is None:
        raise WardSightError(
            "several workers need PostgreSQL (database_url in server.toml): the SQLite file is one process's database"
        )


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _prepare(config: ServerConfig) -> tuple[str, str | None]:
    """Migrate once, make the TLS files once, fix the port; returns (url, CA line or None)."""
    FleetDB(config.store_location).close()
    if config.port == 0:
        config.port = _free_port(config.host)
    if config.insecure_http:
        return f"http://{url_host(config.host)}:{config.port}", None
    now = datetime.now(UTC)
    ca = pki.ensure_ca(keys_dir(config), now=now)
    pki.ensure_server_cert(ca, keys_dir(config), config.tls_hostnames, now=now)
    ca_line = f"fleet CA {ca.cert_path} (sha256 {pki.fingerprint(ca.cert)})"
    return f"https://{url_host(config.host)}:{config.port}", ca_line


class Worker:
    """One worker process and its restarts."""

    def __init__(self, number: int, config_json: bytes) -> None:
        self.number, self.config_json = number, config_json
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.failures = 0

    def start(self) -> str:
        """Start the process and wait for its ``ready`` line; the URL it serves."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fleet.workers"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(self.config_json)
        self.process.stdin.close()
        self.started_at = time.monotonic()
        ready, _, _ = select.select([self.process.stdout], [], [], READY_TIMEOUT_S)
        line = self.process.stdout.readline().decode(errors="replace").split() if ready else []
        if len(line) != 2 or line[0] != "ready":
            self.stop()
            raise WardSightError(f"worker {self.number} did not start in {READY_TIMEOUT_S:.0f} s (see its messages)")
        threading.Thread(target=self.process.stdout.read, daemon=True).start()  # drained until the worker ends
        return line[1]

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve_workers(
    config: ServerConfig,
    workers: int,
    *,
    announce: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> None:
    """Run ``workers`` worker processes on the configured port until Ctrl-C, SIGTERM or ``stop``."""
    check(config, workers)
    url, ca_line = _prepare(config)
    assert config.database is not None
    level = logging.getLogger().getEffectiveLevel()  # the workers log as the supervisor does (-v or not)
    config_json = json.dumps({"config": config.model_dump(mode="json"), "log_level": level}).encode()
    pool = [Worker(n + 1, config_json) for n in range(workers)]
    stopping = stop or threading.Event()
    listening = Listening(url=url, host=config.host, port=config.port, insecure_http=config.insecure_http,
                          pid=os.getpid(), database=str(config.database.resolve()))  # fmt: skip
    try:
        with stop_on_signals(stopping):
            for worker in pool:
                worker.start()
            write_listening(listening_path(config), listening)
            announce(f"fleet server on {url} (console: {url}/), {workers} workers, database {describe_store(config)}")
            if ca_line is None:
                announce("WARNING: plain HTTP (insecure_http): for development only; devices send events unencrypted")
            else:
                announce(f"{ca_line}; bundles carry it to devices")
            _supervise(pool, stopping)
    finally:
        forget_listening(listening_path(config), listening)
        for worker in pool:
            worker.stop()


def _supervise(pool: list[Worker], stopping: threading.Event) -> None:
    while not stopping.wait(0.5):
        for worker in pool:
            code = worker.exited()
            if code is None:
                continue
            quick = time.monotonic() - worker.started_at < MAX_RESTART_PAUSE_S
            worker.failures = worker.failures + 1 if quick else 1
            pause = min(MAX_RESTART_PAUSE_S, 2.0 ** (worker.failures - 1))
            log.warning("worker %d ended (exit %s); restarting it in %.0f s", worker.number, code, pause)
            if stopping.wait(pause):
                return
            try:
                worker.start()
            except WardSightError as exc:
                log.warning("%s; trying again", exc)


def _worker_main() -> None:
    """A worker process: the configuration from stdin, one ``ready`` line, serve until SIGTERM."""
    given = json.loads(sys.stdin.buffer.read())
    form = f"worker {os.getpid()}: %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=int(given["log_level"]), format=form)
    config = ServerConfig.model_validate(given["config"])
    stopping = threading.Event()
    with stop_on_signals(stopping):
        server = BackgroundServer(config, worker=True).start()
        try:
            print("ready", server.url, flush=True)
            stopping.wait()
        finally:
            server.stop()


if __name__ == "__main__":
    _worker_main()
