"""Replay issue 14's ten attacks against a real fleet server on loopback and print expected versus observed.

    .venv/bin/python bench/attack.py [--only N] [--show-log]

Run by hand, never in CI (it times real sockets and uploads about 100 MB over loopback). It starts its own fleet
server in this process (``fleet.server.BackgroundServer``: TLS with the fleet's own CA, as the server runs by
default) on a free loopback port with a temporary data directory, creates two admins (alice, bob), an operator and
a viewer (API tokens; alice also signs in with a password), enrolls simulated devices through the device API, runs
each case and prints one table: case, what was sent, expected, observed, PASS/FAIL. Exit status 1 if any row
FAILs. A case whose API is not in the tree yet (case 3's two-admin approval) shows "not available" and does not
fail the run.

The server's configuration differs from the shipped one where a case needs it, and the output says so: loopback is
*not* exempt from the per-address connection cap (``connection_cap_exempt = []``, cap 8), the header and TLS
handshake timeouts are 1 s, ``max_login_failures = 3``, and password hashing is cheap. Clients bind their own
source address in 127.0.0.0/8 (127.0.0.2, 127.0.0.3, ...), so the server sees them as different clients.

Bounded: at most 2,000 requests and 90 s in all, each case with its own timeout; ``--only N`` runs case N alone.
``--show-log`` prints the server's log (captured in-process) after the table.

Needs: the repository's virtualenv (aiohttp, the fleet's dependencies), to be run from anywhere inside the
checkout (the repository root is put on ``sys.path``; ``tests/fleet/helpers.py`` is reused), Linux (every
127.0.0.x address is local), and about 100 MB of free space in ``$TMPDIR`` for case 4's package.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import shutil
import ssl
import sys
import tarfile
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import DummyCookieJar  # noqa: E402
from yarl import URL  # noqa: E402

from fleet.accounts import service as operators  # noqa: E402
from fleet.config import ServerConfig  # noqa: E402
from fleet.server import BackgroundServer  # noqa: E402
from fleet.store.db import FleetDB  # noqa: E402
from tests.fleet.helpers import JOSE, DeviceSession, bearer, enrollment, issue_token  # noqa: E402
from wardsight import modelpkg, wire  # noqa: E402
from wardsight.tls import pinned_context  # noqa: E402

MAX_REQUESTS = 2000
MAX_SECONDS = 90.0
PASSWORD = "correct horse battery"  # noqa: S105 - the script's throwaway accounts
WRONG = "guess guess guess"
TIMEOUT = 1.0  # header and TLS handshake timeouts of the server under attack
PER_ADDRESS = 8  # its max_connections_per_address
CLI_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # as `wardsight` configures logging
HUGE = "9" * 400
JOBS = wire.JOBS_PATH


class BudgetError(Exception):
    """The run's request budget is spent."""


class AppClock:
    """The app's clock: real time, or frozen while a case needs throttle waits not to run out under it."""

    def __init__(self) -> None:
        self.frozen: float | None = None

    def __call__(self) -> float:
        return self.frozen if self.frozen is not None else time.time()


@dataclass
class Row:
    case: str
    sent: str
    expected: str
    observed: str
    result: str  # PASS, FAIL, N/A


class Client:
    """An aiohttp session on the server under attack, taking paths (sent as written: already percent-encoded)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    def url(self, path: str | URL) -> URL:
        return URL(self.base + path, encoded=True) if isinstance(path, str) else path

    def request(self, method: str, path: str | URL, **kwargs: Any) -> Any:
        return self.session.request(method, self.url(path), **kwargs)

    def get(self, path: str | URL, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str | URL, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    async def fetch(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
        """(status, headers, body) of one request, its body read."""
        async with self.request(method, path, allow_redirects=False, **kwargs) as resp:
            return resp.status, resp.headers, await resp.read()


@dataclass
class Ctx:
    server: BackgroundServer
    config: ServerConfig
    clock: AppClock
    tls: ssl.SSLContext
    log: io.StringIO
    work: Path
    rows: list[Row] = field(default_factory=list)
    requests: int = 0
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> API token headers
    main: Client | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def db_path(self) -> Path:
        assert self.config.database is not None
        return self.config.database

    def spend(self, n: int = 1) -> None:
        self.requests += n
        if self.requests > MAX_REQUESTS:
            raise BudgetError(f"request budget ({MAX_REQUESTS}) spent")

    def row(self, case: str, sent: str, expected: str, observed: str, ok: bool | None) -> None:
        self.rows.append(Row(case, sent, expected, observed, "N/A" if ok is None else "PASS" if ok else "FAIL"))

    def client(self, local: str | None = None, **connector: Any) -> Client:
        """A new session (closed at the end), from ``local`` (a 127.0.0.x source address) if given."""
        trace = aiohttp.TraceConfig()

        async def counted(*_: Any) -> None:
            self.spend()

        trace.on_request_start.append(counted)
        conn = aiohttp.TCPConnector(ssl=self.tls, local_addr=(local, 0) if local else None, **connector)
        session = aiohttp.ClientSession(connector=conn, cookie_jar=DummyCookieJar(), trace_configs=[trace])
        self.sessions.append(session)
        return Client(session, self.url)

    async def open(self, local: str, *, tls: bool = True) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A raw connection from ``local`` (TLS unless ``tls`` is False)."""
        self.spend()
        return await asyncio.open_connection(
            "127.0.0.1",
            self.port,
            ssl=self.tls if tls else None,
            server_hostname="127.0.0.1" if tls else None,
            local_addr=(local, 0),
        )

    async def device(self, name: str) -> tuple[DeviceSession, Any]:
        """A device enrolled through the API with a credential: (its session, the server's job key)."""
        assert self.main is not None
        key, body = enrollment(issue_token(self.db_path, self.clock, ttl=600.0), name=name)
        resp = await self.main.post("/api/v1/enroll", data=body, headers=JOSE)
        answer = await resp.json()
        assert resp.status == 201, f"enroll: {resp.status} {answer}"
        session = DeviceSession(self.main, key, answer["device_id"], device_clock=time.time)
        got = await session.obtain_credential()
        assert got.status == 200, f"credential: {got.status} {await got.text()}"
        return session, wire.decode_public_key(answer["job_key"])


def error_of(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", ""))
    except (ValueError, AttributeError):
        return body[:80].decode(errors="replace")


def short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def statuses(values: list[int]) -> str:
    """``[401, 401, 429]`` as ``401x2 429``."""
    out: list[str] = []
    for value in values:
        if out and out[-1].split("x")[0] == str(value):
            head, _, count = out[-1].partition("x")
            out[-1] = f"{head}x{int(count or 1) + 1}"
        else:
            out.append(str(value))
    return " ".join(out)


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes (b"" if it closed without a word)."""
    data = b""
    with contextlib.suppress(ConnectionResetError, ssl.SSLError, asyncio.IncompleteReadError):
        while chunk := await reader.read(65536):
            data += chunk
    return data


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response on a kept connection (its length from Content-Length)."""
    status = int((await reader.readline()).split()[1])
    fields: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(fields.get("content-length", "0")))
    return status, fields, body


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, asyncio.TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 1)


# ---- 1: odd numbers -------------------------------------------------------------------------------------------


async def case_1(ctx: Ctx) -> None:
    from tests.fleet.test_query_bounds import ODD_VALUES

    c, admin = ctx.main, ctx.headers["admin"]
    assert c is not None
    groups = [
        ("1a", "alerts, audit: limit/before = 400 digits", [
            f"/api/v1/alerts?limit={HUGE}", f"/api/v1/alerts?before={HUGE}",
            f"/api/v1/audit?limit={HUGE}", f"/api/v1/audit?before={HUGE}",
        ], 400),
        ("1b", "alerts, audit: before=99999999999999999999999999", [
            "/api/v1/alerts?before=99999999999999999999999999", "/api/v1/audit?before=99999999999999999999999999",
        ], 400),
        ("1c", "reports/{hygiene,occupancy,falls}?from=0001-01-01", [
            f"/api/v1/reports/{kind}?from=0001-01-01" for kind in ("hygiene", "occupancy", "falls")
        ], 400),
        ("1d", "control: alerts?limit=500&before=2^63-1", [
            "/api/v1/alerts?limit=500&before=9223372036854775807",
        ], 200),
    ]  # fmt: skip
    for label, sent, paths, want in groups:
        got = [(await c.fetch("GET", path, headers=admin))[0] for path in paths]
        ctx.row(label, sent, f"{want} each", statuses(got), all(s == want for s in got))
    # A wider sweep: the test suite's odd values in each of these routes' numeric and date parameters.
    params = {
        "/api/v1/alerts": ("limit", "before", "since"),
        "/api/v1/audit": ("limit", "before", "since", "until"),
        "/api/v1/reports/hygiene": ("from", "to"),
    }
    urls = [f"{path}?{name}={value}" for path, names in params.items() for name in names for value in ODD_VALUES]
    semaphore = asyncio.Semaphore(4)

    async def one(path: str) -> int:
        async with semaphore:
            return (await c.fetch("GET", path, headers=admin))[0]

    got = await asyncio.gather(*(one(u) for u in urls))
    five = sorted({s for s in got if s >= 500})
    seen = " ".join(f"{s}x{got.count(s)}" for s in sorted(set(got)))
    sent = f"{len(ODD_VALUES)} odd values x {sum(map(len, params.values()))} params of alerts, audit, hygiene"
    ctx.row("1e", sent, "no 5xx (400 or 200)", seen + (f"; 5xx: {five}" if five else ""), not five)


# ---- 2: alert streams --------------------------------------------------------------------------------------------


@dataclass
class Stream:
    status: int
    body: Any
    writer: asyncio.StreamWriter


async def open_stream(ctx: Ctx, headers: dict[str, str], local: str) -> Stream:
    reader, writer = await ctx.open(local)
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"GET /api/v1/alerts/stream HTTP/1.1\r\nHost: fleet\r\n{lines}\r\n".encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    fields = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        fields[name.strip().lower()] = value.strip()
    if status != 200:
        return Stream(status, json.loads(await reader.readexactly(int(fields["content-length"]))), writer)
    while not (await reader.readline()).startswith(b"data:"):  # the stream's "ready" message
        pass
    return Stream(status, None, writer)


async def case_2(ctx: Ctx) -> None:
    cap = ctx.config.alert_streams_per_token
    held: list[Stream] = []
    try:
        for _ in range(cap + 1):
            held.append(await open_stream(ctx, ctx.headers["viewer"], "127.0.0.21"))
        last = held[-1]
        code = (last.body or {}).get("code", "")
        ctx.row(
            "2a",
            f"one viewer token opens {cap + 1} /api/v1/alerts/stream",
            f"200x{cap}, then 429 alert_streams_per_token",
            f"{statuses([s.status for s in held])} {code}",
            [s.status for s in held] == [200] * cap + [429] and code == "alert_streams_per_token",
        )
        admin = await open_stream(ctx, ctx.headers["admin"], "127.0.0.22")
        held.append(admin)
        ctx.row("2b", "meanwhile an admin opens a stream", "200", str(admin.status), admin.status == 200)
    finally:
        for stream in held:
            await close(stream.writer)


# ---- 3: privacy-reducing pushes ----------------------------------------------------------------------------------

DOOR = [[0.0, 0.0], [0.25, 0.0], [0.25, 0.5], [0.0, 0.5]]
CAMERA = f"""\
server_url = "https://fleet.example.org"
[source]
kind = "stream"
url = "rtsp://viewer:s3cret@10.0.6.42/stream1"
[[privacy_regions]]
name = "bathroom door"
polygon = {json.dumps(DOOR)}
"""
NO_REGIONS = CAMERA.split("[[privacy_regions]]")[0]
METADATA = CAMERA.replace("rtsp://viewer:s3cret@10.0.6.42/stream1", "rtsp://169.254.169.254/latest/meta-data")


def approvals_available(ctx: Ctx) -> bool:
    app = ctx.server.app
    assert app is not None
    return any(
        r.method == "POST" and r.resource is not None and r.resource.canonical == "/api/v1/jobs/{batch_id}/approve"
        for r in app.router.routes()
    )


async def case_3(ctx: Ctx) -> None:
    sent = [
        ("3a", "operator: push_config dropping the privacy region (privacy_regions = []) to a device", "403"),
        ("3b", "admin: the same push; then a second admin approves", "201 awaiting_approval, device sees it after"),
        ("3c", "admin: push_config source url rtsp://169.254.169.254/", "400"),
    ]
    if not approvals_available(ctx):
        for label, what, expected in sent:
            ctx.row(label, what, expected, "not available (no POST /api/v1/jobs/{batch_id}/approve yet)", None)
        return
    c = ctx.main
    assert c is not None
    device, job_key = await ctx.device("cam-privacy")
    alice, bob, operator = ctx.headers["admin"], ctx.headers["admin2"], ctx.headers["operator"]

    async def push(headers: dict[str, str], config: str) -> tuple[int, Any]:
        body = {"kind": "push_config", "target": {"device_ids": [device.device_id]}, "expires_in_s": 3600}
        status, _, raw = await c.fetch("POST", "/api/v1/jobs", json={**body, "config": config}, headers=headers)
        return status, json.loads(raw)

    async def approve(batch_id: str, headers: dict[str, str]) -> tuple[int, Any]:
        status, _, raw = await c.fetch("POST", f"/api/v1/jobs/{batch_id}/approve", json={}, headers=headers)
        return status, json.loads(raw)

    async def poll() -> list[wire.Job]:
        resp = await device.send("GET", f"{JOBS}?wait=0")
        answer = await resp.json()
        assert resp.status == 200, f"poll: {resp.status} {answer}"
        return [wire.verify_job(token, job_key) for token in answer["jobs"]]

    async def report(job_id: str, state: str) -> None:
        body = wire.JobReport(job_id=job_id, state=state).model_dump_json(exclude_none=True).encode()
        resp = await device.send("POST", f"{JOBS}/{job_id}", body, "application/json")
        assert resp.status == 200, f"report: {resp.status} {await resp.text()}"

    # Commissioning: the device's first whole configuration, with one privacy region, approved and applied.
    status, made = await push(alice, CAMERA)
    assert status == 201, f"commissioning push: {status} {made}"
    if made.get("status") == "awaiting_approval":
        status, answer = await approve(made["batch_id"], bob)
        assert status == 200, f"commissioning approval: {status} {answer}"
    jobs = await poll()
    assert len(jobs) == 1, f"commissioning: the device got {len(jobs)} jobs"
    await report(jobs[0].job_id, "received")
    await report(jobs[0].job_id, "succeeded")

    status, answer = await push(operator, NO_REGIONS)
    why = answer.get("error", "")
    ctx.row(*sent[0][:2], sent[0][2], f"{status} {short(why, 60)}", status == 403 and "second admin" in why)

    status, made = await push(alice, NO_REGIONS)
    waiting = made.get("status")
    before = await poll()
    own, _ = await approve(made["batch_id"], alice) if "batch_id" in made else (0, None)
    second, approved = await approve(made["batch_id"], bob) if "batch_id" in made else (0, {})
    after = await poll()
    with_approval = len(after) == 1 and after[0].privacy_approval is not None
    observed = (
        f"{status} {waiting}; device sees {len(before)} job(s); own approval {own}; second admin {second} "
        f"{approved.get('status')}; device then sees {len(after)} job(s)"
        + (" with the approval" if with_approval else "")
    )
    ok = status == 201 and waiting == "awaiting_approval" and not before and own == 403 and second == 200
    ctx.row(sent[1][0], sent[1][1], sent[1][2] + " (own approval 403)", observed, ok and with_approval)

    status, answer = await push(alice, METADATA)
    why = answer.get("error", "")
    ctx.row(*sent[2][:2], sent[2][2], f"{status} {short(why, 60)}", status == 400 and "metadata" in why)


# ---- 4: a package with 200,000 members ---------------------------------------------------------------------------


def many_member_package(work: Path, count: int) -> Path:
    """A real one-build model package followed by ``count`` empty members (raw 512-byte headers, fast)."""
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model.tflite"
    model.write_bytes(b"pose_net 1.0 weights " * 64)
    digest, size = modelpkg.describe_file(model)
    build = modelpkg.Build(
        backend="cpu", runtime="litert", file="model.tflite", sha256=digest, size=size, decoder="movenet"
    )
    manifest = modelpkg.Manifest(name="pose_net", version="1.0", task="pose", license="Apache-2.0", builds=[build])
    good = work / "good.wsm"
    modelpkg.write_package(good, manifest, {"model.tflite": model})
    with tarfile.open(good) as src:
        head = b""
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            head += member.tobuf(tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512)
    info = tarfile.TarInfo("m0000000")
    info.size = 0
    template = bytearray(info.tobuf(tarfile.USTAR_FORMAT))
    out = work / "many.wsm"
    with open(out, "wb") as fh:
        fh.write(head)
        for i in range(count):
            block = bytearray(template)
            block[0:8] = f"m{i:07d}".encode()
            block[148:156] = b" " * 8
            block[148:155] = b"%06o\0" % sum(block)
            fh.write(block)
        fh.write(b"\0" * 1024)
    return out


async def case_4(ctx: Ctx) -> None:
    c = ctx.main
    assert c is not None
    package = await asyncio.to_thread(many_member_package, ctx.work / "pkg", 200_000)
    megabytes = package.stat().st_size / 1e6
    started = time.monotonic()
    with package.open("rb") as fh:
        headers = {**ctx.headers["operator"], "Content-Type": "application/octet-stream"}
        status, _, body = await c.fetch("POST", "/api/v1/models", data=fh, headers=headers)
    took = time.monotonic() - started
    package.unlink()
    why = error_of(body)
    ok = status == 400 and len(body) < 400 and "more than" in why and took < 5.0
    ctx.row(
        "4",
        f"POST /api/v1/models: package + 200,000 empty members ({megabytes:.0f} MB)",
        "400 'more than ...', body < 400 chars, < 5 s",
        f"{status} in {took:.1f} s, {len(body)} chars: {short(why, 50)}",
        ok,
    )


# ---- 5: slow and greedy clients ----------------------------------------------------------------------------------


async def case_5(ctx: Ctx) -> None:
    # 5a: half a request line over TLS, then nothing.
    reader, writer = await ctx.open("127.0.0.51")
    started = time.monotonic()
    writer.write(b"GET /heal")
    await writer.drain()
    data = await asyncio.wait_for(read_all(reader), TIMEOUT + 5)
    took = time.monotonic() - started
    await close(writer)
    status = int(data.split()[1]) if data.startswith(b"HTTP/") else None
    observed = f"{status or 'closed, no answer'} after {took:.2f} s"
    ok = status in (408, None) and took < TIMEOUT + 1.0
    ctx.row("5a", "TLS, then 'GET /heal' and stall", f"408 or closed within {TIMEOUT:g} s (+1 s)", observed, ok)

    # 5b: TCP to the TLS port, no ClientHello.
    reader, writer = await ctx.open("127.0.0.53", tls=False)
    started = time.monotonic()
    data = await asyncio.wait_for(read_all(reader), TIMEOUT + 5)
    took = time.monotonic() - started
    await close(writer)
    observed = f"{'closed' if not data else f'{len(data)} bytes, closed'} after {took:.2f} s"
    ctx.row("5b", "TCP connect, never a TLS handshake", f"closed within {TIMEOUT:g} s (+1 s)", observed,
            not data and took < TIMEOUT + 1.0)  # fmt: skip

    # 5c: one address holds its cap of kept connections; one more is closed at accept; a freed slot works again.
    local, held = "127.0.0.52", []
    request = b"GET /healthz HTTP/1.1\r\nHost: fleet\r\n\r\n"
    try:
        answered = []
        for _ in range(PER_ADDRESS):
            reader, writer = await ctx.open(local)
            held.append(writer)
            writer.write(request)
            answered.append((await asyncio.wait_for(read_response(reader), 5))[0])
        started = time.monotonic()
        try:
            reader, writer = await ctx.open(local)
            writer.write(request)
            extra = f"{len(await asyncio.wait_for(read_all(reader), 5))} bytes then closed"
            await close(writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError) as exc:
            extra = f"closed at connect ({type(exc).__name__})"
        refused = extra.startswith(("0 bytes", "closed")) and time.monotonic() - started < 1.0
        extra += f" in {time.monotonic() - started:.2f} s"
        await close(held.pop())
        again: int | str = "no"
        for _ in range(20):
            try:
                reader, writer = await ctx.open(local)
                writer.write(request)
                again = (await asyncio.wait_for(read_response(reader), 5))[0]
                held.append(writer)
                break
            except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError, IndexError):
                await asyncio.sleep(0.05)  # the server has not seen the close yet
        observed = f"{statuses(answered)}; extra: {extra}; after one closed: {again}"
        ok = answered == [200] * PER_ADDRESS and refused and again == 200
        ctx.row("5c", f"{PER_ADDRESS + 1} kept TLS connections from {local}",
                f"{PER_ADDRESS} served, the next closed at once, a freed slot serves", observed, ok)  # fmt: skip
    finally:
        for writer in held:
            await close(writer)


# ---- 6: log injection --------------------------------------------------------------------------------------------


async def case_6(ctx: Ctx) -> None:
    c = ctx.main
    assert c is not None
    mark = len(ctx.log.getvalue())
    status, _, _ = await c.fetch("GET", "/api/v1/devices/x%0a%3Cfake%20line%3E")
    await asyncio.sleep(0.1)
    lines = ctx.log.getvalue()[mark:].splitlines()
    about = [line for line in lines if "/api/v1/devices/x" in line]
    forged = [line for line in lines if line.startswith("<fake line>")]
    escaped = len(about) == 1 and "/api/v1/devices/x\\n<fake line> from" in about[0]
    observed = f"{status}; {len(about)} line(s): " + (about[0].split(": ", 1)[-1] if about else "none")
    observed += f"; {len(forged)} forged" if forged else ""
    ctx.row("6", "GET /api/v1/devices/x%0a<fake line>", "401; one log line with \\n escaped", short(observed, 90),
            status == 401 and escaped and not forged)  # fmt: skip


# ---- 7: SSRF -----------------------------------------------------------------------------------------------------


async def case_7(ctx: Ctx) -> None:
    c = ctx.main
    assert c is not None
    admin = ctx.headers["admin"]
    for label, url, want in [
        ("7a", "https://[fd20:ce::254]/", 400),
        ("7b", "https://[2002:7f00:1::]/", 400),
        ("7c", "https://168.63.129.16/", 400),
        ("7d", "https://192.168.1.10/h", 201),
    ]:
        status, _, body = await c.fetch("POST", "/api/v1/webhooks", json={"name": label, "url": url}, headers=admin)
        why = error_of(body) if status >= 400 else ""
        sent = f"webhook {url}" + (" (control: a LAN target)" if want == 201 else "")
        ok = status == want and (want != 400 or "url refused" in why)
        ctx.row(label, sent, str(want), f"{status} {short(why, 60)}".strip(), ok)


# ---- 8: headers ----------------------------------------------------------------------------------------------------


def versionless(server: str | None) -> bool:
    return server is None or not any(ch.isdigit() or ch == "/" for ch in server)


async def case_8(ctx: Ctx) -> None:
    c = ctx.main
    assert c is not None
    paths = [("GET", "/"), ("GET", "/healthz"), ("GET", "/api/v1/devices"), ("GET", "/api/v1/no-such-thing"),
             ("DELETE", "/healthz")]  # fmt: skip
    hsts, servers, seen = [], set(), []
    for method, path in paths:
        status, headers, _ = await c.fetch(method, path)
        seen.append(status)
        hsts.append(headers.get("Strict-Transport-Security"))
        servers.add(headers.get("Server"))
    good = [h for h in hsts if h and h.startswith("max-age=") and int(h.split("=")[1].split(";")[0]) >= 31536000]
    ctx.row("8a", f"{len(paths)} requests over TLS ({statuses(seen)})", "Strict-Transport-Security max-age>=1 year",
            f"{len(good)}/{len(paths)}: {sorted({str(h) for h in hsts})}", len(good) == len(paths))  # fmt: skip
    reader, writer = await ctx.open("127.0.0.1")
    writer.write(b"\x01BAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = await asyncio.wait_for(reader.read(65536), 5)
    await close(writer)
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:] if ":" in line)}
    servers.add(fields.get("server"))
    ok = all(versionless(s) for s in servers) and raw.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400"))
    ctx.row("8b", "the same, and a malformed request line", "Server header without versions; 400",
            f"Server: {sorted(str(s) for s in servers)}; {head[0][:16]}", ok)  # fmt: skip


# ---- 9: sign-in throttling ------------------------------------------------------------------------------------------


async def case_9(ctx: Ctx) -> None:
    clients: dict[str, Client] = {}

    async def sign_in(address: str, password: str = PASSWORD) -> tuple[int, str | None]:
        if address not in clients:
            clients[address] = ctx.client(address, force_close=True)
        status, headers, _ = await clients[address].fetch(
            "POST", "/api/v1/session", json={"username": "alice", "password": password}
        )
        return status, headers.get("Retry-After")

    ctx.clock.frozen = time.time()  # waits of a second must not run out between two guesses
    try:
        home = "127.0.0.2"
        first = (await sign_in(home))[0]
        assert first == 200, f"alice's own sign-in from {home}: {first}"
        guesses = [(await sign_in("127.0.0.3", WRONG))[0] for _ in range(ctx.config.max_login_failures)]
        right_late, retry = await sign_in("127.0.0.3")
        n = ctx.config.max_login_failures
        ctx.row("9a", f"{n} wrong passwords for admin alice from 127.0.0.3, then the right one",
                f"401x{n}, then 429 with Retry-After", f"{statuses(guesses)}, then {right_late} Retry-After={retry}",
                guesses == [401] * n and right_late == 429 and retry is not None)  # fmt: skip
        home_status = (await sign_in(home))[0]
        ctx.row("9b", f"alice signs in from {home} (where she signed in before)", "200", str(home_status),
                home_status == 200)  # fmt: skip
        spread = [await sign_in(f"127.0.0.{host}", WRONG) for host in range(10, 30) for _ in range(n)]
        codes = [s for s, _ in spread]
        retries = all(r is not None for s, r in spread if s == 429)
        fresh, fresh_retry = await sign_in("127.0.0.99")
        home_status = (await sign_in(home))[0]
        ok = set(codes) <= {401, 429} and 429 in codes and retries and fresh == 429 and fresh_retry is not None
        ctx.row("9c", f"{len(codes)} wrong passwords from 20 addresses; then 127.0.0.99 and {home} (right password)",
                "401 until the account's free failures are used, then 429 + Retry-After; .99 429; alice 200",
                f"{statuses(codes)}; .99: {fresh} Retry-After={fresh_retry}; alice: {home_status}",
                ok and home_status == 200)  # fmt: skip
    finally:
        ctx.clock.frozen = None


# ---- 10: proofs bind the query string -------------------------------------------------------------------------------


async def case_10(ctx: Ctx) -> None:
    device, _ = await ctx.device("cam-proof")
    await device.fetch_nonce()
    proof = device.proof("GET", f"{JOBS}?wait=1")
    changed = await device.send("GET", f"{JOBS}?wait=25", proof=proof)
    why = (await changed.json()).get("error", "")
    ctx.row("10a", "device proof for ?wait=1 sent with ?wait=25", "401 (query string does not match)",
            f"{changed.status} {why}", changed.status == 401 and "query string" in why)  # fmt: skip
    good = await device.send("GET", f"{JOBS}?wait=1", proof=proof)
    await good.read()
    replay = await device.send("GET", f"{JOBS}?wait=1", proof=proof)
    await replay.read()
    ctx.row("10b", "control: the same proof with ?wait=1, then again", "200, then 401 (replay)",
            f"{good.status}, then {replay.status}", good.status == 200 and replay.status == 401)  # fmt: skip


CASES: dict[int, tuple[str, float, Callable[[Ctx], Awaitable[None]]]] = {
    1: ("odd numbers in queries", 20.0, case_1),
    2: ("live alert streams per token", 10.0, case_2),
    3: ("privacy-reducing config pushes", 15.0, case_3),
    4: ("model package with 200,000 members", 25.0, case_4),
    5: ("slow clients, connections per address", 15.0, case_5),
    6: ("log injection", 5.0, case_6),
    7: ("webhook SSRF", 5.0, case_7),
    8: ("security headers", 5.0, case_8),
    9: ("sign-in lockout as a weapon", 15.0, case_9),
    10: ("device proofs and query strings", 10.0, case_10),
}


# ---- running ----------------------------------------------------------------------------------------------------


def start_server(work: Path, clock: AppClock) -> tuple[BackgroundServer, ServerConfig]:
    config = ServerConfig(
        port=0,
        database=work / "data" / "fleet.db",
        keys_dir=work / "data" / "fleet-keys",
        header_timeout_seconds=TIMEOUT,
        tls_handshake_timeout_seconds=TIMEOUT,
        max_connections_per_address=PER_ADDRESS,
        connection_cap_exempt=[],
        max_login_failures=3,
        login_lockout_seconds=300,
        password_memory_kib=1024,
        password_time_cost=1,
    )
    (work / "data").mkdir(parents=True)
    return BackgroundServer(config, app_clock=clock).start(), config


def add_people(ctx: Ctx) -> None:
    db = FleetDB(ctx.db_path)
    try:
        now = ctx.clock()
        for name, role, key in [("alice", "admin", "admin"), ("bob", "admin", "admin2"),
                                ("oscar", "operator", "operator"), ("vera", "viewer", "viewer")]:  # fmt: skip
            operators.create_operator(db.db, name, PASSWORD, role, now, ctx.config)
            token = operators.create_api_token(db.db, f"{name}-script", role, f"user:{name}", now)
            ctx.headers[key] = bearer(token)
    finally:
        db.close()


def capture_log() -> tuple[io.StringIO, logging.Handler]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(CLI_FORMAT))
    for name in ("wardsight.fleet", "fleet", "aiohttp"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return out, handler


async def run(ctx: Ctx, only: int | None) -> None:
    ctx.main = ctx.client("127.0.0.1", limit=4)
    deadline = time.monotonic() + MAX_SECONDS
    try:
        for number, (title, budget, case) in CASES.items():
            if only is not None and number != only:
                continue
            left = deadline - time.monotonic()
            before = len(ctx.rows)
            if left <= 0:
                ctx.row(str(number), title, "-", f"not run: the run's {MAX_SECONDS:g} s are spent", False)
                continue
            limit = min(budget, left)
            try:
                await asyncio.wait_for(case(ctx), limit)
            except TimeoutError:
                ctx.row(str(number), title, f"done within {limit:.0f} s", "timed out", False)
            except Exception as exc:  # one case's surprise is that case's FAIL, not the run's end
                observed = f"error: {type(exc).__name__}: {exc}"
                ctx.row(str(number), title, "(see the rows above)" if len(ctx.rows) > before else "-",
                        short(observed, 200), False)  # fmt: skip
    finally:
        for session in ctx.sessions:
            await session.close()


def table(rows: list[Row]) -> str:
    heads = ("case", "sent", "expected", "observed", "result")
    widths = (4, 44, 40, 52, 6)
    sep = "-+-".join("-" * w for w in widths)
    out = [" | ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)), sep]
    for row in rows:
        cells = [textwrap.wrap(str(v), w, break_on_hyphens=False) or [""] for v, w in zip(
            (row.case, row.sent, row.expected, row.observed, row.result), widths, strict=True)]  # fmt: skip
        for i in range(max(map(len, cells))):
            out.append(" | ".join((c[i] if i < len(c) else "").ljust(w) for c, w in zip(cells, widths, strict=True)))
    return "\n".join(line.rstrip() for line in out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", type=int, choices=sorted(CASES), help="run this case alone")
    parser.add_argument("--show-log", action="store_true", help="print the server's log after the table")
    args = parser.parse_args(argv)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="wardsight-attack-"))
    log, handler = capture_log()
    clock = AppClock()
    server = None
    try:
        server, config = start_server(work, clock)
        assert server.ca_pem is not None
        ctx = Ctx(server, config, clock, pinned_context(server.ca_pem), log, work)
        add_people(ctx)
        print(f"fleet server {server.url} (in-process BackgroundServer, TLS with its own CA; data in {work})")
        print(
            f"server config for this run: loopback NOT exempt from the per-address cap (connection_cap_exempt = [], "
            f"max_connections_per_address = {PER_ADDRESS}); header and TLS handshake timeouts {TIMEOUT:g} s; "
            f"max_login_failures = {config.max_login_failures}; cheap password hashing; clients bind 127.0.0.x"
        )
        print()
        asyncio.run(run(ctx, args.only))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(table(ctx.rows))
    counts = {r: sum(row.result == r for row in ctx.rows) for r in ("PASS", "FAIL", "N/A")}
    print()
    print(
        f"{counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['N/A']} not available; "
        f"{ctx.requests} requests (at most {MAX_REQUESTS}), {time.monotonic() - started:.1f} s"
    )
    if args.show_log:
        print("\n---- server log ----\n" + log.getvalue())
    for name in ("wardsight.fleet", "fleet", "aiohttp"):
        logging.getLogger(name).removeHandler(handler)
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
