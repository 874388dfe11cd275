"""Fleet server load benchmark: signed events ingested per second while thousands of devices heartbeat.

    python bench/fleet_load.py [--devices 2000] [--events 5000] [--concurrency 32] [--clients 1]
                               [--event-devices N] [--heartbeat-interval 30] [--max-seconds 60] [--tls]
                               [--database sqlite|postgresql] [--workers N] [--pg-setting NAME=VALUE ...]
                               [--enroll-concurrency 16] [--json FILE] [--profile FILE] [--data-dir DIR] [--keep]

What it does, in one run:

- Setup (timed, reported, not part of the figures): a fresh data directory (under ``$TMPDIR``, or
  ``--data-dir``; put it on the disk you care about: the server's SQLite fsyncs on every commit, so
  ``--data-dir /dev/shm`` shows the server's CPU-bound ceiling instead), with ``--database postgresql`` a
  throwaway PostgreSQL cluster of its own next to it (``bench/fleet_load_pg.py``: initdb as an unprivileged
  user, a free loopback port, one empty database, PostgreSQL's durable defaults; ``--pg-setting fsync=off``
  for its ceiling), one enrollment token per device written straight into the database (``tokens.new_token``
  + ``FleetDB.add_token``, the SQLite file or the PostgreSQL URL alike), the real fleet server started in its
  own process (the same ``BackgroundServer`` that ``wardsight fleet serve`` runs; with ``--workers N`` > 1
  that process is the supervisor of ``wardsight fleet serve --workers N``, ``fleet.workers.serve_workers``,
  running N worker processes on one port; PostgreSQL only; the database URL reaches it as
  ``WARDSIGHT_SERVER_DATABASE_URL``; plain HTTP unless ``--tls``), then every device enrolls (``POST
  /api/v1/enroll``) and obtains its first credential (``POST /api/v1/device/credential`` with a proof) through
  the real API, ``--enroll-concurrency`` at a time (progress every 15 s). Each device has its own Ed25519
  key and room. Event JWS bodies are signed here, in advance (a device signs an event when it happens);
  proofs are signed at send time with the device's latest server nonce, as a device does.
- Phase 1, the ceiling: a bare aiohttp app in its own process (one handler: read the body, answer 201
  JSON) gets exactly the same requests from the same client at the same concurrency.
- Phase 2, the real server: every device heartbeats once per ``--heartbeat-interval`` seconds (evenly
  spread, open loop: the offered rate is printed) while the first ``--event-devices`` devices (default a
  tenth) send the pre-signed events as fast as ``--concurrency`` requests in flight allow (closed loop;
  heartbeats have their own pool of ``--heartbeat-connections``). A phase stops sending events after
  ``--max-seconds``; the events actually sent are then reported. A phase lasts as long as its events: to
  have every device heartbeat at least once, send enough events for a phase longer than the interval.

It prints events/s, heartbeats/s, p50/p95/p99/max latency of each (from just before the request is sent to
the end of the response body; proof signing excluded), errors (any non-2xx, with the server's reason), the
CPU used in each phase by each component, in seconds and in % of one core, with the time it spent runnable
but waiting for a core (other work on the machine): the fleet server (its supervisor and each worker), all
PostgreSQL processes (the postmaster from ``postmaster.pid`` and its children, ended ones included: see
``bench/proc_stat.py``) and each client process; and the ratio of events/s on the fleet server to requests/s
on the bare app. It warns when the figures are not at the load it claims: heartbeats starting more than 1 s
late (p99) or fewer acknowledged than offered (the client cannot keep that many devices on schedule: use
``--clients N``), or a client near a full core in the fleet phase (client-bound). At the end it counts the
events in the server's database (read-only on SQLite, with psycopg on PostgreSQL): they must equal the
events the server acknowledged. Exit status 1 if any request failed or the count differs. ``--json FILE``
also writes every figure as JSON (``-``: to stdout, after the summary).

``--clients N`` splits the devices and the concurrency over N client processes (default 1). On a 2-core
machine one core serves, one drives the load; the bare phase is usually client-bound (client CPU near 100%).
The fleet server reads ``WARDSIGHT_SERVER_*`` overrides from the environment, as ``wardsight fleet serve``
does (host, port and plain HTTP are set here; nonce_ttl_seconds is 3600 unless set: see ``server_env``).
``--profile FILE`` runs the fleet server under cProfile (the server thread, one worker only; it slows the
server) and prints the functions with the most own time; ``FILE`` keeps the stats for ``python -m pstats``.
Timings depend on the machine: run it by hand, never in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import json
import logging
import math
import multiprocessing
import os
import pstats
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bench.fleet_load_pg import BenchCluster  # noqa: E402
from bench.fleet_load_report import (  # noqa: E402
    Phase,
    PhaseResult,
    print_cpu,
    print_latency_table,
    schedule_warnings,
)
from bench.proc_stat import TreeSample, runqueue_seconds, sample_tree  # noqa: E402
from fleet.enrollment import tokens  # noqa: E402
from fleet.store.connection import is_postgres  # noqa: E402
from fleet.store.db import FleetDB  # noqa: E402
from fleet.store.schema import transaction  # noqa: E402
from wardsight import wire  # noqa: E402

EVENTS_PATH = "/api/v1/device/events"
HEARTBEAT_PATH = "/api/v1/device/heartbeat"
JOSE = "application/jose"
MAX_SHOWN_ERRORS = 10
PROGRESS_EVERY_S = 15.0
NONCE_TTL_S = 3600  # the server's maximum (see server_env)


# ---- servers (each in its own process: `python bench/fleet_load.py _serve KIND DATA_DIR [--tls] [--profile F]`) ----


def _wait_for_stdin_eof() -> None:
    """The parent stops a server by closing its stdin (works the same under cProfile and on any platform)."""
    while sys.stdin.readline():
        pass


def serve_fleet(data_dir: Path, tls: bool, profile: Path | None, workers: int) -> None:
    from fleet.config import load_server_config
    from fleet.server import BackgroundServer

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_server_config(data_dir, None, dict(os.environ))  # WARDSIGHT_SERVER_* apply, as in the CLI
    config.port = 0
    config.insecure_http = not tls
    if workers > 1:  # as `wardsight fleet serve --workers N` does
        serve_fleet_workers(config, workers)
        return
    prof = cProfile.Profile() if profile else None
    if prof is not None:

        def take_over(frame: Any, event: str, arg: Any) -> None:  # first call in the server thread
            sys.setprofile(None)
            prof.enable()

        threading.setprofile(take_over)
    server = BackgroundServer(config).start()
    threading.setprofile(None)
    print("URL", server.url, flush=True)
    _wait_for_stdin_eof()
    server.stop()
    if prof is not None and profile is not None:
        prof.dump_stats(str(profile))


def serve_fleet_workers(config: Any, workers: int) -> None:
    """``fleet.workers.serve_workers``: this process supervises ``workers`` server processes on one port."""
    from fleet.workers import serve_workers

    stop = threading.Event()

    def announce(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        if line.startswith("fleet server on "):  # "fleet server on URL (console: ...": every worker is ready
            print("URL", line.split()[3], flush=True)

    def stop_at_eof() -> None:
        _wait_for_stdin_eof()
        stop.set()

    threading.Thread(target=stop_at_eof, daemon=True).start()
    serve_workers(config, workers, announce=announce, stop=stop)


def serve_bare(data_dir: Path, tls: bool) -> None:
    """The ceiling: aiohttp with one handler that reads the body and answers 201 JSON."""
    from fleet import pki

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True}, status=201)

    async def main() -> None:
        app = web.Application(client_max_size=16 * 1024)
        app.router.add_post("/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        ssl_context = None
        if tls:  # the certificate the fleet server made for itself, so the client pins the same CA
            keys = data_dir / "fleet-keys"
            ssl_context = pki.server_ssl_context(keys / pki.SERVER_CERT, keys / pki.SERVER_KEY)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]
        print("URL", f"{'https' if tls else 'http'}://127.0.0.1:{port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, _wait_for_stdin_eof)
        await runner.cleanup()

    asyncio.run(main())


class ServerProcess:
    """A server child process: its URL, its CPU time and its workers' (from /proc), a log file for its stderr."""

    def __init__(
        self,
        kind: str,
        data_dir: Path,
        tls: bool,
        profile: Path | None = None,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "_serve", kind, str(data_dir), "--workers", str(workers)]
        if tls:
            cmd.append("--tls")
        if profile is not None:
            cmd += ["--profile", str(profile)]
        self.workers = workers
        self.log_path = data_dir / f"{kind}-server.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("URL "):
            self.proc.kill()
            sys.exit(f"{kind} server did not start:\n{self.log_path.read_text()[-3000:]}")
        self.url = line.split()[1]

    def sample(self) -> TreeSample:
        """CPU of this process and its children (the workers, when there are several)."""
        return sample_tree(self.proc.pid)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text()[-chars:]


# ---- the simulated devices (in client processes) ----------------------------------------------------


@dataclass
class Device:
    index: int  # global, 0..devices-1
    token: str
    room: str
    key: Any = None
    device_id: str = ""
    credential: str | None = None
    nonce: str = ""
    started: float = field(default_factory=time.time)
    frames: int = 0


class Client:
    """One client process: a slice of the devices, their share of the events and of the concurrency."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.devices = [Device(i, token, room) for i, token, room in spec["devices"]]
        self.event_devices = self.devices[: spec["event_devices"]]
        self.events: list[tuple[Device, bytes]] = []
        self.ssl: Any = None

    def _session(self, limit: int) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=limit, ssl=self.ssl if self.ssl is not None else True)
        return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))

    def set_ca(self, ca_pem: str | None) -> None:
        if ca_pem is not None:
            from wardsight.tls import pinned_context

            self.ssl = pinned_context(ca_pem)

    # ---- setup: enrollment and first credential through the real API, then pre-signed events ----

    async def setup(self, url: str) -> dict[str, Any]:
        errors: list[str] = []
        t0 = time.perf_counter()
        todo = collections.deque(self.devices)
        done = 0
        concurrency = self.spec["enroll_concurrency"]
        async with self._session(concurrency) as session:

            async def enroller() -> None:  # a fixed pool of enrollers, not one task per device
                nonlocal done
                while todo:
                    dev = todo.popleft()
                    try:
                        await self._enroll(session, url, dev)
                    except Exception as exc:  # reported, the run fails
                        errors.append(f"device {dev.index}: {exc}")
                    done += 1

            async def progress() -> None:  # long setups (10,000 devices) say they are alive
                while True:
                    await asyncio.sleep(PROGRESS_EVERY_S)
                    rate = done / (time.perf_counter() - t0)
                    print(f"  client {self.spec['number']}: {done} of {len(self.devices)} devices enrolled"
                          f" ({rate:.0f}/s)", flush=True)  # fmt: skip

            reporter = asyncio.create_task(progress())
            await asyncio.gather(*(enroller() for _ in range(concurrency)))
            reporter.cancel()
        enrolled = time.perf_counter() - t0
        t1 = time.perf_counter()
        n, per_device = self.spec["events"], len(self.event_devices)
        now = time.time()
        for i in range(n):
            dev = self.event_devices[i % per_device]
            event = wire.Event(
                event_id=wire.new_event_id(),
                device_id=dev.device_id,
                room=dev.room,
                app="occupancy",
                type="count_changed",
                time=now + i * 0.001,
                track_id=i % 1000,
                confidence=0.9,
                data={"count": (i % 4) + 1, "previous": i % 4},
            )
            self.events.append((dev, wire.sign_event(event, dev.key).encode("ascii")))
        return {"enroll_seconds": enrolled, "sign_seconds": time.perf_counter() - t1, "errors": errors}

    async def _enroll(self, session: aiohttp.ClientSession, url: str, dev: Device) -> None:
        dev.key = wire.generate_key()
        request = wire.EnrollmentRequest(
            token=dev.token, public_key=wire.encode_public_key(dev.key.public_key()), name=f"cam-{dev.index}"
        )
        body = wire.sign_enrollment(request, dev.key).encode("ascii")
        async with session.post(url + "/api/v1/enroll", data=body, headers={"Content-Type": JOSE}) as resp:
            text = await resp.text()
            if resp.status != 201:
                raise RuntimeError(f"enroll {resp.status}: {text}")
            dev.device_id = json.loads(text)["device_id"]
            dev.nonce = resp.headers[wire.NONCE_HEADER]
        path = "/api/v1/device/credential"
        proof = wire.sign_proof(
            dev.key,
            dev.device_id,
            method="POST",
            path=path,
            body=b"",
            nonce=dev.nonce,
            credential=None,
            now=time.time(),
        )
        async with session.post(url + path, data=b"", headers={wire.PROOF_HEADER: proof}) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise RuntimeError(f"credential {resp.status}: {text}")
            dev.credential = json.loads(text)["credential"]
            dev.nonce = resp.headers[wire.NONCE_HEADER]

    # ---- one measured phase ----

    def _heartbeat_body(self, dev: Device) -> bytes:
        now = time.time()
        dev.frames += 300
        report = wire.Health(
            device_id=dev.device_id,
            sent_at=now,
            uptime_s=now - dev.started,
            agent_version="0.1.0",
            accelerator="cpu",
            cpu_temp_c=52.5,
            mem_used_mb=310.0,
            mem_total_mb=3800.0,
            fps=10.0,
            frames_processed=dev.frames,
            frames_dropped=dev.frames // 100,
            stage_ms={"pose": 55.0, "tracking": 1.2},
            models={"movenet": "1"},
        )
        return report.model_dump_json().encode("utf-8")

    async def _send(
        self, session: aiohttp.ClientSession, url: str, dev: Device, path: str, body: bytes, ctype: str, r: PhaseResult
    ) -> tuple[int, float, bytes]:
        for attempt in (0, 1):
            s0 = time.perf_counter()
            proof = wire.sign_proof(
                dev.key,
                dev.device_id,
                method="POST",
                path=path,
                body=body,
                nonce=dev.nonce,
                credential=dev.credential,
                now=time.time(),
            )
            headers = {
                wire.PROOF_HEADER: proof,
                "Authorization": f"{wire.AUTH_SCHEME} {dev.credential}",
                "Content-Type": ctype,
            }
            t0 = time.perf_counter()
            r.sign_seconds += t0 - s0
            async with session.post(url + path, data=body, headers=headers) as resp:
                payload = await resp.read()
                status = resp.status
                nonce = resp.headers.get(wire.NONCE_HEADER)
            latency = time.perf_counter() - t0
            if nonce:
                dev.nonce = nonce
            if status == 401 and attempt == 0 and b'"use_nonce"' in payload:  # like the real client: retry once
                r.nonce_retries += 1
                continue
            return status, latency, payload
        raise AssertionError("unreachable")

    def _failed(self, r: PhaseResult, what: str, status: int | str, detail: bytes | str) -> None:
        if what == "event":
            r.event_errors += 1
        else:
            r.heartbeat_errors += 1
        if len(r.error_samples) < MAX_SHOWN_ERRORS:
            text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else detail
            r.error_samples.append(f"{what} -> {status}: {text[:300]}")

    async def phase(self, url: str, start_at: float) -> PhaseResult:
        r = PhaseResult()
        concurrency = self.spec["concurrency"]
        interval = self.spec["heartbeat_interval"]
        total_devices = self.spec["total_devices"]
        pending = collections.deque(self.events)
        done = asyncio.Event()
        deadline = 0.0
        # Separate pools: exactly `concurrency` event requests in flight; heartbeats (open loop) have their own.
        async with self._session(concurrency) as events, self._session(self.spec["heartbeat_connections"]) as beats:

            async def event_sender() -> None:
                while pending and time.perf_counter() < deadline:
                    dev, body = pending.popleft()
                    try:
                        status, latency, payload = await self._send(events, url, dev, EVENTS_PATH, body, JOSE, r)
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        self._failed(r, "event", type(exc).__name__, str(exc))
                        continue
                    if status == 201:
                        r.events_stored += 1
                        r.event_latencies.append(latency)
                    elif status == 200:
                        r.events_duplicate += 1
                        r.event_latencies.append(latency)
                    else:
                        self._failed(r, "event", status, payload)

            async def heartbeat(dev: Device, scheduled: float) -> None:
                r.heartbeat_lateness.append(time.perf_counter() - scheduled)
                try:
                    status, latency, payload = await self._send(
                        beats, url, dev, HEARTBEAT_PATH, self._heartbeat_body(dev), "application/json", r
                    )
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self._failed(r, "heartbeat", type(exc).__name__, str(exc))
                    return
                if 200 <= status < 300:
                    r.heartbeat_latencies.append(latency)
                else:
                    self._failed(r, "heartbeat", status, payload)

            async def heartbeat_schedule(t0: float) -> None:
                # Device g heartbeats at t0 + (g / total) * interval + k * interval: a constant offered rate.
                tasks: set[asyncio.Task[None]] = set()
                order = sorted(self.devices, key=lambda d: d.index)
                k = 0
                while not done.is_set():
                    for dev in order:
                        due = t0 + (k + dev.index / total_devices) * interval
                        delay = due - time.perf_counter()
                        if delay > 0:
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(done.wait(), delay)
                        if done.is_set():
                            break
                        r.heartbeats_scheduled += 1
                        task = asyncio.create_task(heartbeat(dev, due))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    k += 1
                r.heartbeat_seconds = time.perf_counter() - t0
                await asyncio.gather(*tasks)

            await asyncio.sleep(max(0.0, start_at - time.time()))
            cpu0, wait0 = time.process_time(), runqueue_seconds(os.getpid())
            t0 = time.perf_counter()
            deadline = t0 + self.spec["max_seconds"]
            schedule = asyncio.create_task(heartbeat_schedule(t0))
            await asyncio.gather(*(event_sender() for _ in range(concurrency)))
            r.events_seconds = time.perf_counter() - t0
            r.events_unsent = len(pending)
            done.set()
            await schedule
            r.cpu_seconds = time.process_time() - cpu0
            r.runqueue_seconds = runqueue_seconds(os.getpid()) - wait0
            r.wall = time.perf_counter() - t0
        return r


def client_main(conn: Any, spec: dict[str, Any]) -> None:
    """A client process: obeys ("setup", url, ca_pem), ("phase", url, start_at) and ("quit",)."""
    client = Client(spec)
    while True:
        command = conn.recv()
        if command[0] == "setup":
            client.set_ca(command[2])
            conn.send(asyncio.run(client.setup(command[1])))
        elif command[0] == "phase":
            conn.send(asdict(asyncio.run(client.phase(command[1], command[2]))))
        else:
            return


# ---- the run ------------------------------------------------------------------------------------------


def run_phase(name: str, server: ServerProcess, pipes: list[Any], db: BenchCluster | None = None) -> Phase:
    start_at = time.time() + 0.5
    for pipe in pipes:
        pipe.send(("phase", server.url, start_at))
    time.sleep(max(0.0, start_at - time.time()))
    db_pid = db.postmaster_pid() if db is not None else None
    server0, db0, t0 = server.sample(), sample_tree(db_pid) if db_pid else None, time.perf_counter()
    results = [PhaseResult(**pipe.recv()) for pipe in pipes]
    wall = time.perf_counter() - t0
    server_used = server.sample().minus(server0)
    db_used = sample_tree(db_pid).minus(db0) if db_pid and db0 else None
    return Phase(name, results, wall, server_used, db_used, os.getloadavg()[0], server.workers)


def add_tokens(location: Path | str, devices: int) -> list[tuple[int, str, str]]:
    """One one-time token per device, each for its own room, written straight into the server's database (the
    SQLite file or the PostgreSQL URL: ``FleetDB`` opens either, and migrates it), in one transaction."""
    db = FleetDB(location)
    conn = db.db.conn
    if not is_postgres(conn):
        conn.execute("PRAGMA synchronous = OFF")  # this setup connection only; the server's keeps its own
    out = []
    now = time.time()
    with transaction(conn):
        for i in range(devices):
            room = f"room-{i:05d}"
            plaintext, record = tokens.new_token(room, now, 3600.0, site="bench", ward="load")
            db.add_token(record)
            out.append((i, plaintext, room))
    db.close()
    return out


def db_counts(location: Path | str) -> dict[str, int]:
    """Events of our devices, system events and heartbeat samples in the server's database (read-only on SQLite,
    through psycopg on PostgreSQL). The devices are all ours: the database is fresh."""
    if isinstance(location, Path):
        conn: Any = sqlite3.connect(f"file:{location}?mode=ro", uri=True)
    else:
        import psycopg

        conn = psycopg.connect(location)
    try:
        device_ids = {row[0] for row in conn.execute("SELECT id FROM devices").fetchall()}
        rows = conn.execute("SELECT device_id, app, count(*) FROM events GROUP BY device_id, app").fetchall()
        samples = conn.execute("SELECT count(*) FROM health_samples").fetchone()[0]
    finally:
        conn.close()
    device_events = sum(n for dev, app, n in rows if app != "system" and dev in device_ids)
    system = sum(n for _, app, n in rows if app == "system")
    return {"events": device_events, "system_events": system, "heartbeat_samples": samples}


def print_profile(path: Path, top: int = 25) -> None:
    stats = pstats.Stats(str(path))
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"\nserver profile (cProfile, server thread, {total:.1f} s of own time; own time per function):")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    for (filename, line, func), (_, calls, tottime, cumtime, _) in rows:
        where = f"{Path(filename).name}:{line}({func})" if line else func
        print(f"  {100 * tottime / total:5.1f}%  {tottime:6.2f} s own  {cumtime:6.2f} s cum  {calls:>8}  {where[:90]}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--devices", type=int, default=2000, help="simulated devices, all heartbeating")
    add("--events", type=int, default=5000, help="signed events sent in each phase")
    add("--event-devices", type=int, default=0, help="devices sending events (default devices/10)")
    add("--concurrency", type=int, default=32, help="event requests in flight (all clients)")
    add("--enroll-concurrency", type=int, default=16, help="enrollments in flight during setup (all clients)")
    add("--heartbeat-interval", type=float, default=30.0, help="seconds between a device's beats")
    add("--heartbeat-connections", type=int, default=128, help="heartbeat connection pool size (per client)")
    add("--max-seconds", type=float, default=60.0, help="stop sending events after this long (each phase)")
    add("--clients", type=int, default=1, help="client processes")
    add("--database", choices=["sqlite", "postgresql"], default="sqlite", help="the fleet server's database")
    add("--workers", type=int, default=1, help="fleet server processes on the port (more than 1: postgresql)")
    add("--pg-setting", action="append", default=[], metavar="NAME=VALUE", help="postgresql.conf line (repeat)")
    add("--tls", action="store_true", help="HTTPS with the fleet CA pinned (default plain HTTP)")
    add("--profile", type=Path, default=None, help="run the fleet server under cProfile (one worker only)")
    add("--data-dir", type=Path, default=None, help="parent of the fresh data directory (and PostgreSQL's)")
    add("--keep", action="store_true", help="keep the data directory (database, server logs)")
    add("--json", type=Path, default=None, metavar="FILE", help="also write the results as JSON ('-': stdout)")
    args = parser.parse_args()
    if args.devices < 1 or args.events < 1 or args.clients < 1 or args.concurrency < args.clients:
        sys.exit("need --devices >= 1, --events >= 1, --clients >= 1 and --concurrency >= --clients")
    if args.enroll_concurrency < args.clients:
        sys.exit("need --enroll-concurrency >= --clients")
    if not 1 <= args.workers <= 64:
        sys.exit("--workers must be between 1 and 64")
    if args.workers > 1 and args.database != "postgresql":
        sys.exit("--workers > 1 needs --database postgresql (the SQLite file is one process's database)")
    if args.profile is not None and args.workers > 1:
        sys.exit("--profile runs one server process: use it with --workers 1")
    if args.pg_setting and args.database != "postgresql":
        sys.exit("--pg-setting needs --database postgresql")
    return args


def main() -> None:
    args = parse_args()
    event_devices = min(args.devices, args.event_devices or max(1, args.devices // 10))
    data_dir = Path(tempfile.mkdtemp(prefix="wardsight-fleet-load-", dir=args.data_dir))
    cluster: BenchCluster | None = None
    try:
        if args.database == "postgresql":
            t0 = time.perf_counter()
            cluster = BenchCluster(args.data_dir, args.pg_setting)
            print(f"PostgreSQL {cluster.server_version()} started in {time.perf_counter() - t0:.1f} s:"
                  f" {cluster.url} (data in {cluster.data})", flush=True)  # fmt: skip
        ok = run(args, data_dir, event_devices, cluster)
        if not ok and cluster is not None:
            print(f"PostgreSQL log tail:\n{cluster.log_tail()}")
    finally:
        if cluster is not None:
            cluster.stop(keep=args.keep)
        if args.keep:
            print(f"data directory kept: {data_dir}" + (f"; PostgreSQL's: {cluster.root}" if cluster else ""))
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    sys.exit(0 if ok else 1)


def start_clients(
    args: argparse.Namespace, token_rows: list[tuple[int, str, str]], event_devices: int
) -> tuple[list[Any], list[Any]]:
    """The client processes; devices are dealt round-robin, so each client holds its share of event devices."""
    ctx = multiprocessing.get_context("spawn")
    pipes, procs = [], []

    clients: int = args.clients

    def share(total: int, c: int) -> int:
        return total // clients + (1 if c < total % clients else 0)

    for c in range(args.clients):
        mine = token_rows[c :: args.clients]
        spec = {
            "number": c,
            "devices": mine,
            "event_devices": len([row for row in mine if row[0] < event_devices]),
            "events": share(args.events, c),
            "concurrency": share(args.concurrency, c),
            "enroll_concurrency": share(args.enroll_concurrency, c),
            "heartbeat_connections": args.heartbeat_connections,
            "max_seconds": args.max_seconds,
            "heartbeat_interval": args.heartbeat_interval,
            "total_devices": args.devices,
        }
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=client_main, args=(child, spec), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    return pipes, procs


def server_env(cluster: BenchCluster | None) -> dict[str, str]:
    """The fleet server's environment: ours, with the database URL set for PostgreSQL (and never inherited), and
    unless set, the longest nonce lifetime: the nonce a device got at enrollment must outlive a long setup (10,000
    devices take minutes), as a device heartbeating every 30 s always holds a fresh one. Nonces are stateless
    HMACs (``fleet.auth.device.NonceIssuer``): their lifetime costs nothing per request."""
    env = {k: v for k, v in os.environ.items() if k != "WARDSIGHT_SERVER_DATABASE_URL"}
    env.setdefault("WARDSIGHT_SERVER_NONCE_TTL_SECONDS", str(NONCE_TTL_S))
    if cluster is not None:
        env["WARDSIGHT_SERVER_DATABASE_URL"] = cluster.url
    return env


def describe(args: argparse.Namespace, data_dir: Path, event_devices: int, cluster: BenchCluster | None) -> str:
    scheme = "HTTPS (fleet CA pinned)" if args.tls else "plain HTTP"
    if cluster is None:
        database = f"SQLite {data_dir / 'fleet.db'}"
    else:
        extra = f", settings {' '.join(cluster.settings)}" if cluster.settings else ""
        database = f"PostgreSQL {cluster.url} (data in {cluster.data}{extra})"
    workers = f"{args.workers} server workers" if args.workers > 1 else "1 server process"
    return (
        f"WardSight fleet load: {args.devices} devices heartbeating every {args.heartbeat_interval:g} s, "
        f"{event_devices} of them sending {args.events} signed events at concurrency {args.concurrency}; "
        f"{args.clients} client process(es); {workers}; {database}; {scheme}; {os.cpu_count()} cores (load average"
        f" {os.getloadavg()[0]:.1f} before the run)"
    )


def run(args: argparse.Namespace, data_dir: Path, event_devices: int, cluster: BenchCluster | None) -> bool:
    print(describe(args, data_dir, event_devices, cluster), flush=True)
    location: Path | str = cluster.url if cluster is not None else data_dir / "fleet.db"
    t0 = time.perf_counter()
    token_rows = add_tokens(location, args.devices)
    tokens_s = time.perf_counter() - t0
    profile = args.profile.resolve() if args.profile else None
    fleet = ServerProcess("fleet", data_dir, args.tls, profile, args.workers, server_env(cluster))
    ca_pem = (data_dir / "fleet-keys" / "ca.crt").read_text() if args.tls else None
    pipes, procs = start_clients(args, token_rows, event_devices)
    bare: ServerProcess | None = None
    try:
        t1 = time.perf_counter()
        for pipe in pipes:
            pipe.send(("setup", fleet.url, ca_pem))
        setups = [pipe.recv() for pipe in pipes]
        enroll_s = time.perf_counter() - t1
        setup_errors = [e for s in setups for e in s["errors"]]
        setup = {"tokens_seconds": round(tokens_s, 2), "enroll_seconds": round(enroll_s, 2),
                 "sign_seconds": round(max(s["sign_seconds"] for s in setups), 2)}  # fmt: skip
        print(
            f"setup: {args.devices} tokens into the database {tokens_s:.1f} s; enroll + first credential through the"
            f" API {enroll_s:.1f} s ({args.devices / enroll_s:.0f} devices/s, {args.enroll_concurrency} in flight);"
            f" {args.events} events pre-signed {setup['sign_seconds']:.1f} s",
            flush=True,
        )
        if setup_errors:
            print(f"setup failed for {len(setup_errors)} device(s):", *setup_errors[:MAX_SHOWN_ERRORS], sep="\n  ")
            print(fleet.log_tail())
            return False

        bare = ServerProcess("bare", data_dir, args.tls)
        baseline = run_phase("bare aiohttp", bare, pipes)
        bare.stop()
        bare = None
        real = run_phase("fleet server", fleet, pipes, cluster)
    finally:
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.send(("quit",))
        for proc in procs:
            proc.join(timeout=10)
        if bare is not None:
            bare.stop()
        fleet.stop()
    return report(args, location, setup, baseline, real, fleet)


def report(
    args: argparse.Namespace, location: Path | str, setup: dict[str, Any], baseline: Phase, real: Phase,
    fleet: ServerProcess,
) -> bool:  # fmt: skip
    offered = args.devices / args.heartbeat_interval
    print(f"\noffered heartbeats: {args.devices} devices / {args.heartbeat_interval:g} s = {offered:.1f}/s")
    print_latency_table([baseline, real])
    for phase in (baseline, real):
        print_cpu(phase, os.cpu_count() or 1)
    ratio = real.events_per_s / baseline.events_per_s if baseline.events_per_s else float("nan")
    print(
        f"ratio: fleet events/s / bare aiohttp requests/s = {real.events_per_s:.0f} / {baseline.events_per_s:.0f}"
        f" = {ratio:.3f}"
    )
    warnings = schedule_warnings(baseline, args.devices, args.heartbeat_interval, fleet_phase=False)
    warnings += schedule_warnings(real, args.devices, args.heartbeat_interval, fleet_phase=True)
    for warning in warnings:
        print(f"WARNING: {warning}")

    ok = True
    failed = [s for phase in (baseline, real) for r in phase.results for s in r.error_samples]
    errors = baseline.errors + real.errors
    if errors:
        ok = False
        print(f"\nFAILED: {errors} request(s) failed; first ones:", *failed[:MAX_SHOWN_ERRORS], sep="\n  ")
        print(f"fleet server log tail:\n{fleet.log_tail()}")
    database = check_database(args, location, real)
    ok = ok and database["ok"]
    if args.profile:
        print_profile(args.profile)
    if args.json is not None:
        write_json(args, setup, baseline, real, ratio, warnings, database, ok)
    return ok


def check_database(args: argparse.Namespace, location: Path | str, real: Phase) -> dict[str, Any]:
    """Every event the server acknowledged as stored is in the database, once, and nothing else."""
    stored = sum(r.events_stored for r in real.results)
    duplicates = sum(r.events_duplicate for r in real.results)
    sent = args.events - sum(r.events_unsent for r in real.results)
    if sent < args.events:
        print(f"note: the fleet phase reached --max-seconds {args.max_seconds:g}; {sent} of {args.events} events sent")
    counts = db_counts(location)
    print(
        f"database: {counts['events']} device events stored (server acknowledged {stored} as stored,"
        f" {duplicates} as duplicates; {sent} sent), {counts['heartbeat_samples']} heartbeat samples"
        f" ({real.heartbeats_ok} acknowledged), {counts['system_events']} system events (offline/online)"
    )
    ok = counts["events"] == stored and stored == sent - real.errors_of("event")
    if not ok:
        print("FAILED: the database does not hold exactly the events sent")
    return {**counts, "acknowledged_stored": stored, "acknowledged_duplicates": duplicates, "sent": sent, "ok": ok}


def _no_nan(value: Any) -> Any:
    """``value`` with NaN (a percentile of nothing) as null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def write_json(
    args: argparse.Namespace, setup: dict[str, Any], baseline: Phase, real: Phase, ratio: float,
    warnings: list[str], database: dict[str, Any], ok: bool,
) -> None:  # fmt: skip
    doc = {
        "config": {
            "devices": args.devices, "events": args.events, "concurrency": args.concurrency, "clients": args.clients,
            "heartbeat_interval_s": args.heartbeat_interval, "max_seconds": args.max_seconds,
            "database": args.database, "workers": args.workers, "pg_settings": args.pg_setting, "tls": args.tls,
            "cores": os.cpu_count(),
        },
        "offered_heartbeats_per_s": round(args.devices / args.heartbeat_interval, 2),
        "setup": setup,
        "bare": baseline.summary(),
        "fleet": real.summary(),
        "ratio_fleet_to_bare": round(ratio, 4),
        "load_kept": not warnings,
        "warnings": warnings,
        "database_check": database,
        "ok": ok,
    }  # fmt: skip
    text = json.dumps(_no_nan(doc), indent=2, allow_nan=False)
    if str(args.json) == "-":
        print(text)
    else:
        args.json.write_text(text + "\n")
        print(f"results written to {args.json}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        serve_args = argparse.ArgumentParser()
        serve_args.add_argument("_serve")
        serve_args.add_argument("kind", choices=["fleet", "bare"])
        serve_args.add_argument("data_dir", type=Path)
        serve_args.add_argument("--tls", action="store_true")
        serve_args.add_argument("--profile", type=Path, default=None)
        serve_args.add_argument("--workers", type=int, default=1)
        a = serve_args.parse_args()
        if a.kind == "fleet":
            serve_fleet(a.data_dir, a.tls, a.profile, a.workers)
        else:
            serve_bare(a.data_dir, a.tls)
    else:
        main()
