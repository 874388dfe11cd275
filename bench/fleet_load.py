"""Fleet server load benchmark: signed events ingested per second while thousands of devices heartbeat.

    python bench/fleet_load.py [--devices 2000] [--events 5000] [--concurrency 32] [--clients 1]
                               [--event-devices N] [--heartbeat-interval 30] [--max-seconds 60] [--tls]
                               [--profile FILE] [--data-dir DIR] [--keep]

What it does, in one run:

- Setup (timed, reported, not part of the figures): a fresh data directory (under ``$TMPDIR``, or
  ``--data-dir``; put it on the disk you care about: the server's SQLite fsyncs on every commit, so
  ``--data-dir /dev/shm`` shows the server's CPU-bound ceiling instead), one enrollment token per device
  written straight into ``fleet.db`` (``tokens.new_token`` + ``FleetDB.add_token``), the real fleet server
  started in its own process (the same ``BackgroundServer`` that ``wardsight fleet serve`` runs, plain HTTP
  unless ``--tls``), then every device enrolls (``POST /api/v1/enroll``) and obtains its first credential
  (``POST /api/v1/device/credential`` with a proof) through the real API. Each device has its own Ed25519
  key and room. Event JWS bodies are signed here, in advance (a device signs an event when it happens);
  proofs are signed at send time with the device's latest server nonce, as a device does.
- Phase 1, the ceiling: a bare aiohttp app in its own process (one handler: read the body, answer 201
  JSON) gets exactly the same requests from the same client at the same concurrency.
- Phase 2, the real server: every device heartbeats once per ``--heartbeat-interval`` seconds (evenly
  spread, open loop: the offered rate is printed) while the first ``--event-devices`` devices (default a
  tenth) send the pre-signed events as fast as ``--concurrency`` requests in flight allow (closed loop;
  heartbeats have their own pool of ``--heartbeat-connections``). A phase stops sending events after
  ``--max-seconds``; the events actually sent are then reported.

It prints events/s, heartbeats/s, p50/p95/p99/max latency of each (from just before the request is sent to
the end of the response body; proof signing excluded), errors (any non-2xx, with the server's reason), the
CPU use of the server and of each client process with the time each spent runnable but waiting for a core
(other work on the machine), and the ratio of events/s on the fleet server to requests/s on the bare app.
At the end it counts the events in the server's database: they must equal the events the server
acknowledged. Exit status 1 if any request failed or the count differs.

``--clients N`` splits the devices and the concurrency over N client processes (default 1). On a 2-core
machine one core serves, one drives the load; the bare phase is usually client-bound (client CPU near 100%).
The fleet server reads ``WARDSIGHT_SERVER_*`` overrides from the environment, as ``wardsight fleet serve``
does (host, port and plain HTTP are set here). ``--profile FILE`` runs the fleet server under cProfile
(the server thread; it slows the server) and prints the functions with the most own time; ``FILE`` keeps
the stats for ``python -m pstats``. Timings depend on the machine: run it by hand, never in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import json
import logging
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

from fleet.enrollment import tokens  # noqa: E402
from fleet.store.db import FleetDB  # noqa: E402
from wardsight import wire  # noqa: E402

EVENTS_PATH = "/api/v1/device/events"
HEARTBEAT_PATH = "/api/v1/device/heartbeat"
JOSE = "application/jose"
MAX_SHOWN_ERRORS = 10


# ---- servers (each in its own process: `python bench/fleet_load.py _serve KIND DATA_DIR [--tls] [--profile F]`) ----


def _wait_for_stdin_eof() -> None:
    """The parent stops a server by closing its stdin (works the same under cProfile and on any platform)."""
    while sys.stdin.readline():
        pass


def serve_fleet(data_dir: Path, tls: bool, profile: Path | None) -> None:
    from fleet.config import load_server_config
    from fleet.server import BackgroundServer

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_server_config(data_dir, None, dict(os.environ))  # WARDSIGHT_SERVER_* apply, as in the CLI
    config.port = 0
    config.insecure_http = not tls
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
    """A server child process: its URL, its CPU time (from /proc), and a log file for its stderr."""

    def __init__(self, kind: str, data_dir: Path, tls: bool, profile: Path | None = None) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "_serve", kind, str(data_dir)]
        if tls:
            cmd.append("--tls")
        if profile is not None:
            cmd += ["--profile", str(profile)]
        self.log_path = data_dir / f"{kind}-server.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("URL "):
            self.proc.kill()
            sys.exit(f"{kind} server did not start:\n{self.log_path.read_text()[-3000:]}")
        self.url = line.split()[1]

    def runqueue_seconds(self) -> float:
        return runqueue_seconds(self.proc.pid)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

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


def runqueue_seconds(pid: int) -> float:
    """Seconds all threads of ``pid`` were runnable but not running (Linux schedstat; 0 if unavailable)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(stat.read_text().split()[1])
    return total / 1e9


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


@dataclass
class PhaseResult:
    event_latencies: list[float] = field(default_factory=list)
    heartbeat_latencies: list[float] = field(default_factory=list)
    events_stored: int = 0  # 201 and stored (on the bare app: 201)
    events_duplicate: int = 0  # 200, stored: false
    events_unsent: int = 0  # left when the phase reached --max-seconds
    heartbeats_scheduled: int = 0
    heartbeat_lateness: list[float] = field(default_factory=list)  # actual send start minus scheduled
    event_errors: int = 0
    heartbeat_errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    nonce_retries: int = 0
    events_seconds: float = 0.0  # first request to last event response
    heartbeat_seconds: float = 0.0  # the heartbeat schedule's span
    sign_seconds: float = 0.0  # proof signing, inside the phase
    cpu_seconds: float = 0.0  # this client process, over ``wall``
    runqueue_seconds: float = 0.0  # runnable but waiting for a core (other processes on the machine), over ``wall``
    wall: float = 0.0  # start to the last response of the phase


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
        gate = asyncio.Semaphore(self.spec["concurrency"])
        async with self._session(self.spec["concurrency"]) as session:

            async def one(dev: Device) -> None:
                async with gate:
                    try:
                        await self._enroll(session, url, dev)
                    except Exception as exc:  # reported, the run fails
                        errors.append(f"device {dev.index}: {exc}")

            await asyncio.gather(*(one(d) for d in self.devices))
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


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values`` in milliseconds; NaN if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


@dataclass
class Phase:
    name: str
    results: list[PhaseResult]
    wall: float
    server_cpu: float
    server_runqueue: float
    load: float  # the machine's 1-minute load average at the end of the phase (other work disturbs the figures)

    @property
    def events_ok(self) -> int:
        return sum(r.events_stored + r.events_duplicate for r in self.results)

    @property
    def events_seconds(self) -> float:
        return max(r.events_seconds for r in self.results)

    @property
    def events_per_s(self) -> float:
        return self.events_ok / self.events_seconds

    @property
    def heartbeats_ok(self) -> int:
        return sum(len(r.heartbeat_latencies) for r in self.results)

    @property
    def heartbeats_per_s(self) -> float:
        return sum(len(r.heartbeat_latencies) / r.heartbeat_seconds for r in self.results if r.heartbeat_seconds)

    @property
    def errors(self) -> int:
        return sum(r.event_errors + r.heartbeat_errors for r in self.results)

    def errors_of(self, kind: str) -> int:
        return sum(getattr(r, f"{kind}_errors") for r in self.results)

    def latencies(self, kind: str) -> list[float]:
        return [x for r in self.results for x in getattr(r, f"{kind}_latencies")]


def run_phase(name: str, server: ServerProcess, pipes: list[Any]) -> Phase:
    start_at = time.time() + 0.5
    for pipe in pipes:
        pipe.send(("phase", server.url, start_at))
    time.sleep(max(0.0, start_at - time.time()))
    cpu0, wait0, t0 = server.cpu_seconds(), server.runqueue_seconds(), time.perf_counter()
    results = [PhaseResult(**pipe.recv()) for pipe in pipes]
    wall = time.perf_counter() - t0
    return Phase(
        name, results, wall, server.cpu_seconds() - cpu0, server.runqueue_seconds() - wait0, os.getloadavg()[0]
    )


def add_tokens(db_path: Path, devices: int) -> list[tuple[int, str, str]]:
    """One one-time token per device, each for its own room, written straight into the server's database."""
    db = FleetDB(db_path)
    db.db.conn.execute("PRAGMA synchronous = OFF")  # this setup connection only; the server's keeps its own
    out = []
    now = time.time()
    for i in range(devices):
        room = f"room-{i:05d}"
        plaintext, record = tokens.new_token(room, now, 3600.0, site="bench", ward="load")
        db.add_token(record)
        out.append((i, plaintext, room))
    db.close()
    return out


def db_counts(db_path: Path, device_ids: set[str]) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=2000, help="simulated devices, all heartbeating")
    parser.add_argument("--events", type=int, default=5000, help="signed events sent in each phase")
    parser.add_argument("--event-devices", type=int, default=0, help="devices sending events (default devices/10)")
    parser.add_argument("--concurrency", type=int, default=32, help="event requests in flight (all clients)")
    parser.add_argument("--heartbeat-interval", type=float, default=30.0, help="seconds between a device's beats")
    parser.add_argument("--heartbeat-connections", type=int, default=128, help="heartbeat connection pool size")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="stop sending events after this long")
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--tls", action="store_true", help="HTTPS with the fleet CA pinned (default plain HTTP)")
    parser.add_argument("--profile", type=Path, default=None, help="run the fleet server under cProfile")
    parser.add_argument("--data-dir", type=Path, default=None, help="parent of the fresh data directory")
    parser.add_argument("--keep", action="store_true", help="keep the data directory (database, server logs)")
    args = parser.parse_args()
    if args.devices < 1 or args.events < 1 or args.clients < 1 or args.concurrency < args.clients:
        sys.exit("need --devices >= 1, --events >= 1, --clients >= 1 and --concurrency >= --clients")
    event_devices = min(args.devices, args.event_devices or max(1, args.devices // 10))
    data_dir = Path(tempfile.mkdtemp(prefix="wardsight-fleet-load-", dir=args.data_dir))
    try:
        ok = run(args, data_dir, event_devices)
    finally:
        if args.keep:
            print(f"data directory kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    sys.exit(0 if ok else 1)


def run(args: argparse.Namespace, data_dir: Path, event_devices: int) -> bool:
    scheme = "HTTPS (fleet CA pinned)" if args.tls else "plain HTTP"
    print(
        f"WardSight fleet load: {args.devices} devices heartbeating every {args.heartbeat_interval:g} s, "
        f"{event_devices} of them sending {args.events} signed events at concurrency {args.concurrency}; "
        f"{args.clients} client process(es); {scheme}; {os.cpu_count()} cores (load average"
        f" {os.getloadavg()[0]:.1f} before the run); data in {data_dir}",
        flush=True,
    )
    t0 = time.perf_counter()
    token_rows = add_tokens(data_dir / "fleet.db", args.devices)
    tokens_s = time.perf_counter() - t0
    fleet = ServerProcess("fleet", data_dir, args.tls, args.profile.resolve() if args.profile else None)
    ca_pem = (data_dir / "fleet-keys" / "ca.crt").read_text() if args.tls else None

    # Devices are dealt round-robin to the clients, so each client holds its share of event devices.
    ctx = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for c in range(args.clients):
        mine = token_rows[c :: args.clients]
        spec = {
            "devices": mine,
            "event_devices": len([row for row in mine if row[0] < event_devices]),
            "events": args.events // args.clients + (1 if c < args.events % args.clients else 0),
            "concurrency": args.concurrency // args.clients + (1 if c < args.concurrency % args.clients else 0),
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
    bare: ServerProcess | None = None
    try:
        t1 = time.perf_counter()
        for pipe in pipes:
            pipe.send(("setup", fleet.url, ca_pem))
        setups = [pipe.recv() for pipe in pipes]
        enroll_s = time.perf_counter() - t1
        setup_errors = [e for s in setups for e in s["errors"]]
        print(
            f"setup: {args.devices} tokens into fleet.db {tokens_s:.1f} s; enroll + first credential through the API"
            f" {enroll_s:.1f} s ({args.devices / enroll_s:.0f} devices/s); {args.events} events pre-signed"
            f" {max(s['sign_seconds'] for s in setups):.1f} s",
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
        real = run_phase("fleet server", fleet, pipes)
    finally:
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.send(("quit",))
        for proc in procs:
            proc.join(timeout=10)
        if bare is not None:
            bare.stop()
        fleet.stop()

    offered = args.devices / args.heartbeat_interval
    print(f"\noffered heartbeats: {args.devices} devices / {args.heartbeat_interval:g} s = {offered:.1f}/s")
    print(f"{'':<14}{'':<11}{'ok':>7}{'per s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
    for phase in (baseline, real):
        for kind, count, rate in (
            ("events", phase.events_ok, phase.events_per_s),
            ("heartbeats", phase.heartbeats_ok, phase.heartbeats_per_s),
        ):
            lat = phase.latencies("event" if kind == "events" else "heartbeat")
            errors = phase.errors_of(kind[:-1])
            print(
                f"{phase.name if kind == 'events' else '':<14}{kind:<11}{count:>7}{rate:>9.1f}{pct(lat, 50):>9.1f}"
                f"{pct(lat, 95):>9.1f}{pct(lat, 99):>9.1f}{pct(lat, 100):>9.1f}{errors:>8}"
            )
    for phase in (baseline, real):
        client_cpu = ", ".join(
            f"{100 * r.cpu_seconds / r.wall:.0f}% (+{100 * r.runqueue_seconds / r.wall:.0f}% waiting)"
            for r in phase.results
        )
        sign = sum(r.sign_seconds for r in phase.results)
        late = [x for r in phase.results for x in r.heartbeat_lateness]
        print(
            f"{phase.name}: {phase.wall:.1f} s; CPU of one core: server {100 * phase.server_cpu / phase.wall:.0f}%"
            f" (+{100 * phase.server_runqueue / phase.wall:.0f}% waiting for a core),"
            f" client(s) {client_cpu} (proof signing {sign:.1f} s); heartbeat send lateness p99"
            f" {pct(late, 99):.0f} ms; nonce retries {sum(r.nonce_retries for r in phase.results)};"
            f" load average {phase.load:.1f}"
        )
    ratio = real.events_per_s / baseline.events_per_s
    print(
        f"ratio: fleet events/s / bare aiohttp requests/s = {real.events_per_s:.0f} / {baseline.events_per_s:.0f}"
        f" = {ratio:.3f}"
    )

    ok = True
    failed = [s for phase in (baseline, real) for r in phase.results for s in r.error_samples]
    errors = baseline.errors + real.errors
    if errors:
        ok = False
        print(f"\nFAILED: {errors} request(s) failed; first ones:", *failed[:MAX_SHOWN_ERRORS], sep="\n  ")
        print(f"fleet server log tail:\n{fleet.log_tail()}")
    stored = sum(r.events_stored for r in real.results)
    duplicates = sum(r.events_duplicate for r in real.results)
    sent = args.events - sum(r.events_unsent for r in real.results)
    if sent < args.events:
        print(f"note: the fleet phase reached --max-seconds {args.max_seconds:g}; {sent} of {args.events} events sent")
    # The device ids live in the client processes; every enrolled device is one of ours in this fresh database.
    conn = sqlite3.connect(f"file:{data_dir / 'fleet.db'}?mode=ro", uri=True)
    ids = {row[0] for row in conn.execute("SELECT id FROM devices")}
    conn.close()
    counts = db_counts(data_dir / "fleet.db", ids)
    print(
        f"database: {counts['events']} device events stored (server acknowledged {stored} as stored,"
        f" {duplicates} as duplicates; {sent} sent), {counts['heartbeat_samples']} heartbeat samples"
        f" ({real.heartbeats_ok} acknowledged), {counts['system_events']} system events (offline/online)"
    )
    if counts["events"] != stored or stored != sent - real.errors_of("event"):
        ok = False
        print("FAILED: the database does not hold exactly the events sent")
    if args.profile:
        print_profile(args.profile)
    return ok


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        serve_args = argparse.ArgumentParser()
        serve_args.add_argument("_serve")
        serve_args.add_argument("kind", choices=["fleet", "bare"])
        serve_args.add_argument("data_dir", type=Path)
        serve_args.add_argument("--tls", action="store_true")
        serve_args.add_argument("--profile", type=Path, default=None)
        a = serve_args.parse_args()
        if a.kind == "fleet":
            serve_fleet(a.data_dir, a.tls, a.profile)
        else:
            serve_bare(a.data_dir, a.tls)
    else:
        main()
