"""Slow clients are cut off and one address holds a few sockets (issue 14, item 5): the real server
(fleet.server.BackgroundServer, so fleet.web.connections) on loopback with short timeouts, and a handful of raw sockets
that send half a request line, trickle headers or a body, never start TLS, or open one connection too many; a normal
request and a device's long poll still work."""

import asyncio
import json
import logging
import socket
import ssl
import time

import aiohttp
import pytest

from fleet.config import ServerConfig
from fleet.server import BackgroundServer
from tests.fleet.helpers import enroll_device

TIMEOUT = 0.5  # the header, body and handshake timeouts in these tests
SHORT = {
    "header_timeout_seconds": TIMEOUT,
    "body_idle_timeout_seconds": TIMEOUT,
    "tls_handshake_timeout_seconds": TIMEOUT,
    "connection_cap_exempt": [],  # loopback is exempt by default; here it stands for any client
}


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(*, tls=False, clock=None, **over):
        config = ServerConfig(port=0, database=tmp_path / "fleet.db", insecure_http=not tls, **{**SHORT, **over})
        server = BackgroundServer(config, app_clock=clock).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def port_of(server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port_of(server)), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock) -> bytes:
    """Everything the server sends until it closes the connection (b"" if it closed without a word)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def answer(data: bytes) -> tuple[int, dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_the_shipped_defaults():
    config = ServerConfig()
    assert config.header_timeout_seconds == 10.0
    assert config.body_idle_timeout_seconds == 30.0 and config.body_min_bytes_per_second == 500
    assert config.tls_handshake_timeout_seconds == 10.0
    assert config.keepalive_timeout_seconds == 75.0
    assert config.max_connections_per_address == 32
    assert config.connection_cap_exempt == ["127.0.0.0/8", "::1/128"]


def test_half_a_request_line_gets_a_408_within_the_header_timeout(serve):
    server = serve()
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(b"GET /heal")
    data = read_all(sock)
    took = time.monotonic() - started
    status, body = answer(data)
    assert status == 408 and body["code"] == "request_timeout"
    assert "headers not received within 0.5 s" in body["error"]
    assert b"Connection: close" in data
    assert TIMEOUT * 0.9 <= took < TIMEOUT + 1.0


def test_headers_trickling_in_are_cut_off_although_bytes_keep_coming(serve):
    server = serve()
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: fleet\r\nX-Slow: ")
    sock.settimeout(0.1)
    data = b""
    while time.monotonic() - started < TIMEOUT + 1.5 and not data:
        try:
            sock.sendall(b"a")  # a byte every 0.1 s: never idle, never done
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    assert answer(data)[0] == 408
    assert time.monotonic() - started < TIMEOUT + 1.0


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(serve):
    server = serve()
    sock = connect(server)
    started = time.monotonic()
    assert read_all(sock) == b""
    assert time.monotonic() - started < TIMEOUT + 1.0


POST_HEAD = (
    b"POST /api/v1/enroll HTTP/1.1\r\nHost: fleet\r\nContent-Type: application/jose\r\nContent-Length: 1000\r\n\r\n"
)


def test_a_stalled_body_gets_a_408(serve, caplog):
    server = serve()
    sock = connect(server)
    sock.sendall(POST_HEAD + b"x" * 10)
    started = time.monotonic()
    status, body = answer(read_all(sock))
    assert status == 408 and "request body too slow" in body["error"]
    assert TIMEOUT * 0.9 <= time.monotonic() - started < TIMEOUT + 1.0
    time.sleep(0.2)  # the handler that was reading the body hears of it too: a 408 in the log, not a traceback
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("POST /api/v1/enroll from 127.0.0.1 rejected (408)" in r.getMessage() for r in caplog.records)


def test_a_body_trickling_below_the_minimum_rate_gets_a_408(serve):
    server = serve(body_min_bytes_per_second=100)  # 1000 bytes may take 0.5 s + 10 s; 20 bytes/s is too slow
    sock = connect(server)
    sock.sendall(POST_HEAD)
    sock.settimeout(0.05)
    started, data = time.monotonic(), b""
    while time.monotonic() - started < 5 and not data:
        try:
            sock.sendall(b"x")  # never idle for 0.5 s
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    assert answer(data)[0] == 408
    assert time.monotonic() - started < TIMEOUT + 1.0


def test_a_tls_connection_that_never_handshakes_is_closed_and_a_real_one_works(serve):
    server = serve(tls=True)
    stalled = connect(server)  # TCP only: no ClientHello
    started = time.monotonic()
    assert read_all(stalled) == b""
    assert time.monotonic() - started < TIMEOUT + 1.0
    context = ssl.create_default_context(cadata=server.ca_pem)
    with context.wrap_socket(connect(server), server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: fleet\r\nConnection: close\r\n\r\n")
        assert answer(read_all(tls)) == (200, {"status": "ok"})


def test_one_address_gets_at_most_its_cap_of_connections_counted_before_tls(serve):
    server = serve(tls=True, max_connections_per_address=3, header_timeout_seconds=30,
                   tls_handshake_timeout_seconds=30)  # fmt: skip
    held = [connect(server) for _ in range(3)]  # all three still before their TLS handshake
    extra = connect(server)
    extra.settimeout(2)
    started = time.monotonic()
    assert read_all(extra) == b""  # closed at once
    assert time.monotonic() - started < 1.0
    held.pop().close()  # a slot comes free when its socket closes
    context = ssl.create_default_context(cadata=server.ca_pem)
    for _ in range(50):
        try:
            with context.wrap_socket(connect(server), server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: fleet\r\nConnection: close\r\n\r\n")
                assert answer(read_all(tls))[0] == 200
                break
        except (ssl.SSLError, ConnectionResetError, OSError):  # the server has not seen the close yet
            time.sleep(0.02)
    else:
        pytest.fail("no connection after one was closed")
    for sock in held:
        sock.close()


def test_loopback_is_exempt_from_the_cap_by_default(serve):
    server = serve(max_connections_per_address=2, connection_cap_exempt=["127.0.0.0/8", "::1/128"])
    held = [connect(server) for _ in range(4)]
    for sock in held:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: fleet\r\nConnection: close\r\n\r\n")
        assert answer(read_all(sock))[0] == 200


def read_response(sock) -> tuple[int, bytes]:
    """One response on a kept connection (its length from Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), body


def test_a_kept_connection_idle_between_requests_is_not_a_slow_request(serve):
    server = serve()
    sock = connect(server)
    for attempt in range(2):  # the same connection, idle for twice the header timeout between the two
        if attempt:
            time.sleep(TIMEOUT * 2)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: fleet\r\n\r\n")
        assert read_response(sock) == (200, b'{"status": "ok"}')


async def test_a_device_long_poll_outlasts_the_timeouts(serve, tmp_path, clock):
    server = serve(clock=clock)
    async with aiohttp.ClientSession(base_url=server.url) as client:
        device = await enroll_device(client, tmp_path / "fleet.db", clock)
        started = asyncio.get_running_loop().time()
        target = "/api/v1/device/jobs?wait=2"
        resp = await device.send("GET", target, proof=device.proof("GET", target))
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["jobs"] == []
        assert asyncio.get_running_loop().time() - started >= 1.9  # waited four timeouts' worth, and answered
