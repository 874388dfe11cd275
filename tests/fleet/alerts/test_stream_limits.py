"""The live alert streams' slots (issue 14, item 2): a few per session or API token and per account (429 naming the
cap), a server-wide number of which viewers cannot take the admins' reserve (503), and a slot freed the moment its
client's socket closes. Real app on loopback, streams opened over raw sockets; the slot-freeing test runs the
production server (fleet.server), since aiohttp's test server cancels a handler whose client left and so hides
what a deployed server does."""

import asyncio
import json
import logging
import ssl
import time

import pytest

from fleet.accounts import service as operators
from fleet.alerts.streams import BROKER_KEY
from fleet.auth.operator import COOKIE_NAME
from fleet.config import ServerConfig
from fleet.server import BackgroundServer
from fleet.store.db import FleetDB
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY
from tests.fleet.helpers import api_headers, bearer, live_db, start_app

PASSWORD = "correct horse battery"


class RawStream:
    """One GET /api/v1/alerts/stream over its own socket: the status, and the JSON body of a refusal."""

    def __init__(self, reader, writer, status, body) -> None:
        self.reader, self.writer, self.status, self.body = reader, writer, status, body

    def close(self) -> None:
        self.writer.close()


async def open_raw(client, headers, *, port=None, tls=None) -> RawStream:
    port = port or client.server.port
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls, server_hostname="127.0.0.1" if tls else None
    )
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"GET /api/v1/alerts/stream HTTP/1.1\r\nHost: fleet\r\n{lines}\r\n".encode())
    await writer.drain()

    async def head():
        status = int((await reader.readline()).split()[1])
        fields = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            fields[name.strip().lower()] = value.strip()
        if status != 200:
            return status, json.loads(await reader.readexactly(int(fields["content-length"])))
        while not (await reader.readline()).startswith(b"data:"):  # the stream's "ready" message
            pass
        return status, None

    status, body = await asyncio.wait_for(head(), 5)
    return RawStream(reader, writer, status, body)


async def open_many(client, headers, n) -> list[RawStream]:
    return [await open_raw(client, headers) for _ in range(n)]


async def login(client, username, role="viewer", create=True) -> dict[str, str]:
    app = client.server.app
    if create:
        operators.create_operator(live_db(client), username, PASSWORD, role, app[CLOCK_KEY](), app[CONFIG_KEY])
    resp = await client.post("/api/v1/session", json={"username": username, "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    return {"Cookie": f"{COOKIE_NAME}={resp.cookies[COOKIE_NAME].value}"}


def broker(client):
    return client.server.app[BROKER_KEY]


async def eventually(condition, timeout=2.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_the_shipped_stream_caps():
    config = ServerConfig()
    assert config.alert_streams_per_token == 4
    assert config.alert_streams_per_account == 8
    assert config.alert_streams_max == 200 and config.alert_streams_admin_reserve == 20
    with pytest.raises(ValueError, match="alert_streams_admin_reserve"):
        ServerConfig(alert_streams_max=10, alert_streams_admin_reserve=10)


async def test_one_viewer_token_holds_only_a_few_streams_and_the_next_is_a_429_naming_the_cap(
    aiohttp_client, tmp_path, clock
):
    client = await start_app(aiohttp_client, tmp_path, clock)
    broker(client).heartbeat_seconds = 3600
    attacker = api_headers(client, "viewer", "greedy")
    opened = await open_many(client, attacker, 4)
    assert [s.status for s in opened] == [200] * 4
    refused = await open_raw(client, attacker)
    assert refused.status == 429
    assert refused.body["code"] == "alert_streams_per_token"
    assert "alert_streams_per_token: at most 4" in refused.body["error"]
    # the attacker's streams are its own: everyone else, an admin too, still gets one
    for role in ("viewer", "operator", "admin"):
        other = await open_raw(client, api_headers(client, role, f"other-{role}"))
        assert other.status == 200
        other.close()
    for s in [*opened, refused]:
        s.close()


async def test_one_account_is_capped_across_its_sessions(aiohttp_client, tmp_path, clock):
    client = await start_app(aiohttp_client, tmp_path, clock, alert_streams_per_token=2, alert_streams_per_account=3)
    broker(client).heartbeat_seconds = 3600
    first = await login(client, "nurse")
    second = await login(client, "nurse", create=False)
    opened = await open_many(client, first, 2)
    assert (await open_raw(client, first)).body["code"] == "alert_streams_per_token"
    opened.append(await open_raw(client, second))
    assert opened[-1].status == 200
    refused = await open_raw(client, second)  # this session has one, but the account has three
    assert refused.status == 429 and refused.body["code"] == "alert_streams_per_account"
    assert "user:nurse (alert_streams_per_account: at most 3)" in refused.body["error"]
    assert (await open_raw(client, await login(client, "someone-else"))).status == 200
    for s in opened:
        s.close()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_a_slot_is_freed_the_moment_its_socket_closes(tmp_path, tls, caplog):
    config = ServerConfig(port=0, database=tmp_path / "fleet.db", insecure_http=not tls, alert_streams_per_token=2)
    server = BackgroundServer(config).start()
    try:
        db = FleetDB(config.database)
        viewer = bearer(operators.create_api_token(db.db, "viewer", "viewer", "test", time.time()))
        db.close()
        broker = server.app[BROKER_KEY]
        broker.heartbeat_seconds = 3600  # no keepalive write will notice: only the closed socket can
        port = int(server.url.rsplit(":", 1)[1])
        context = ssl.create_default_context(cadata=server.ca_pem) if tls else None
        opened = [await open_raw(None, viewer, port=port, tls=context) for _ in range(2)]
        assert [s.status for s in opened] == [200, 200] and len(broker.streams) == 2
        opened.pop().close()
        await eventually(lambda: len(broker.streams) == 1, timeout=1.0)
        again = await open_raw(None, viewer, port=port, tls=context)  # the token's second slot is free again
        assert again.status == 200
        for stream in [*opened, again]:
            stream.close()
        await eventually(lambda: not broker.streams and not broker.by_token and not broker.by_account, timeout=1.0)
        assert broker.by_others == 0
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]  # a quiet goodbye
    finally:
        server.stop()


async def test_viewers_cannot_take_the_admins_reserve(aiohttp_client, tmp_path, clock):
    client = await start_app(
        aiohttp_client, tmp_path, clock, alert_streams_max=6, alert_streams_admin_reserve=2, alert_streams_per_token=2
    )
    broker(client).heartbeat_seconds = 3600
    viewers = [api_headers(client, "viewer", f"viewer-{i}") for i in range(3)]
    held = [s for v in viewers[:2] for s in await open_many(client, v, 2)]
    assert [s.status for s in held] == [200] * 4
    for role in ("viewer", "operator"):  # the non-admins' share (6 - 2) is used up
        full = await open_raw(client, api_headers(client, role, f"late-{role}"))
        assert full.status == 503 and full.body["code"] == "alert_streams_full"
        assert "viewers and operators are in use (at most 4)" in full.body["error"]
    admin = api_headers(client, "admin")
    held += await open_many(client, admin, 2)
    assert [s.status for s in held[-2:]] == [200, 200]
    second_admin = await open_raw(client, api_headers(client, "admin", "admin-2"))
    assert second_admin.status == 503  # now everything is in use
    held.pop(0).close()  # a viewer leaves: a viewer may come in again
    await eventually(lambda: len(broker(client).streams) == 5, timeout=1.0)
    assert (await open_raw(client, viewers[2])).status == 200
    for s in held:
        s.close()
