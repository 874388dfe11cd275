"""Headers (issue 14, item 8): HSTS on the TLS console and API, and a ``Server`` header that names no versions.

Against the real server (:class:`fleet.server.BackgroundServer`) on loopback, over TLS with the fleet's own CA
and over plain HTTP (``insecure_http``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fleet.config import ServerConfig
from fleet.server import BackgroundServer
from wardsight.tls import pinned_context

PATHS = (
    ("GET", "/"),  # the console
    ("GET", "/healthz"),
    ("GET", "/api/v1/devices"),  # 401: not signed in
    ("GET", "/api/v1/no-such-thing"),  # 404
    ("DELETE", "/healthz"),  # 405
    ("GET", "/api/v1/alerts?limit=" + "9" * 400),  # 400 (401 first: not signed in)
    ("POST", "/api/v1/session"),  # 400 or 415: no body
)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    servers: list[BackgroundServer] = []

    def start(**overrides: Any) -> BackgroundServer:
        config = ServerConfig(port=0, database=tmp_path / "fleet.db", **overrides)
        server = BackgroundServer(config).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


async def headers_of(url: str, context: ssl.SSLContext | None) -> list[tuple[str, int, Any]]:
    out = []
    async with aiohttp.ClientSession() as session:
        for method, path in PATHS:
            async with session.request(method, url + path, ssl=context if context else False) as resp:
                out.append((f"{method} {path[:40]}", resp.status, resp.headers))
    return out


async def raw_response(host: str, port: int, request: bytes, context: ssl.SSLContext | None) -> bytes:
    """What the server answers to bytes no client library would send (a malformed request line)."""
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname="127.0.0.1" if context else None
    )
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return data


def header_lines(raw: bytes) -> dict[str, str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    return {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:])}


def versionless(server_header: str | None) -> bool:
    return server_header is None or not any(ch.isdigit() or ch == "/" for ch in server_header)


async def test_the_tls_server_sends_hsts_and_a_versionless_server_header(serve):
    server = serve()
    context = pinned_context(server.ca_pem)
    for what, status, headers in await headers_of(server.url, context):
        assert headers.get("Strict-Transport-Security") == "max-age=31536000", (what, status)
        assert versionless(headers.get("Server")), (what, status, headers.get("Server"))
        assert "aiohttp" not in headers.get("Server", "").lower() and "python" not in headers.get("Server", "").lower()
    port = int(server.url.rsplit(":", 1)[1])
    raw = await raw_response("127.0.0.1", port, b"\x01BAD / HTTP/1.1\r\nHost: x\r\n\r\n", context)
    assert raw.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400")), raw[:80]
    assert versionless(header_lines(raw).get("server")), raw[:300]


async def test_plain_http_sends_no_hsts_and_a_versionless_server_header(serve):
    server = serve(insecure_http=True)
    for what, status, headers in await headers_of(server.url, None):
        assert "Strict-Transport-Security" not in headers, (what, status)  # HSTS over plain HTTP means nothing
        assert versionless(headers.get("Server")), (what, status, headers.get("Server"))
    port = int(server.url.rsplit(":", 1)[1])
    raw = await raw_response("127.0.0.1", port, b"\x01BAD / HTTP/1.1\r\nHost: x\r\n\r\n", None)
    assert raw.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400")), raw[:80]
    assert versionless(header_lines(raw).get("server")), raw[:300]
