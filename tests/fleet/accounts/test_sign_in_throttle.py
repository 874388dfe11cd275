"""Issue 14, item 9: sign-in throttling instead of a lockout anyone can aim at any account.

The real app on a real loopback server; clients sign in from different loopback addresses (127.0.0.x, bound as
the connection's source address), so the server sees each as its own client. The app's clock is injected.
With ``max_login_failures = 3``: 3 free failures per account and address, 12 per address and per account.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import DummyCookieJar

from fleet.accounts import lockout, throttle
from fleet.accounts import service as operators
from fleet.app import create_app
from fleet.audit import log as audit
from fleet.config import ServerConfig
from fleet.web.appkeys import CLOCK_KEY, CONFIG_KEY, DB_KEY

PASSWORD = "correct horse battery"
WRONG = "guess guess guess"
USER = "127.0.0.2"  # where alice signs in


@pytest.fixture
def config(tmp_path):
    return ServerConfig(
        database=tmp_path / "fleet.db",
        max_login_failures=3,
        login_lockout_seconds=300,
        password_memory_kib=1024,
        password_time_cost=1,
    )


class Site:
    """The running server, and sign-in from any loopback address."""

    def __init__(self, client) -> None:
        self.client = client
        self.sessions: dict[str, aiohttp.ClientSession] = {}

    @property
    def db(self):
        return self.client.server.app[DB_KEY].db

    def add_user(self, username: str, role: str = "admin") -> None:
        app = self.client.server.app
        operators.create_operator(self.db, username, PASSWORD, role, app[CLOCK_KEY](), app[CONFIG_KEY])

    async def sign_in(self, address: str, username: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
        if address not in self.sessions:
            connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
            self.sessions[address] = aiohttp.ClientSession(connector=connector, cookie_jar=DummyCookieJar())
        url = self.client.make_url("/api/v1/session")
        async with self.sessions[address].post(url, json={"username": username, "password": password}) as resp:
            await resp.read()
            return resp

    async def status(self, address: str, username: str, password: str = PASSWORD) -> int:
        return (await self.sign_in(address, username, password)).status

    async def close(self) -> None:
        for session in self.sessions.values():
            await session.close()

    def locks(self) -> list[dict]:
        return list(reversed(audit.query(self.db, action="login.locked")))


@pytest.fixture
async def site(aiohttp_client, config, clock):
    running = Site(await aiohttp_client(create_app(config, clock=clock)))
    running.add_user("alice")
    yield running
    await running.close()


async def test_the_server_sees_each_loopback_address(site):
    # The premise of the tests below: the failure audit names the address each client signed in from.
    for address in ("127.0.0.2", "127.0.0.3"):
        assert await site.status(address, "alice", WRONG) == 401
    remotes = [e["details"]["remote"] for e in reversed(audit.query(site.db, action="login.failure"))]
    assert remotes == ["127.0.0.2", "127.0.0.3"]


async def test_failures_from_another_address_do_not_lock_the_account(site):
    for _ in range(3):
        assert await site.status("127.0.0.3", "alice", WRONG) == 401
    assert await site.status("127.0.0.3", "alice") == 429  # the guesser waits, even with the right password
    # Before: 429 here too, for anyone anywhere, for five minutes.
    assert await site.status(USER, "alice") == 200


async def test_the_real_user_signs_in_where_they_did_before_during_a_distributed_attack(site, clock):
    assert await site.status(USER, "alice") == 200  # the address becomes known
    clock.now += 3600
    statuses = []
    for host in range(10, 30):  # 20 addresses, 3 guesses each
        for _ in range(3):
            statuses.append(await site.status(f"127.0.0.{host}", "alice", WRONG))
    assert statuses == [401] * 12 + [429] * 48  # 12 failures throttle the account for addresses it never used
    new_place = await site.sign_in("127.0.0.99", "alice")
    assert new_place.status == 429 and new_place.headers["Retry-After"] == "1"
    # Before: 429 (Retry-After 300) for the real user as well.
    assert await site.status(USER, "alice") == 200
    assert await site.status(USER, "alice") == 200  # and again: a sign-in takes back its own count


async def test_password_spraying_from_one_address_is_throttled(site):
    names = [f"user{i}" for i in range(12)]
    for name in names:  # one guess at each of 12 accounts: the address's free failures
        assert await site.status("127.0.0.4", name, WRONG) == 401
    sprayed = await site.sign_in("127.0.0.4", "user12", WRONG)
    # Before: 401 (a failure per new name was never throttled).
    assert sprayed.status == 429 and sprayed.headers["Retry-After"] == "1"
    assert await site.status("127.0.0.5", "user12", WRONG) == 401  # another address is not held up
    assert await site.status(USER, "alice") == 200


async def test_waits_grow_from_one_second_to_the_cap(site, clock):
    waits = []
    for _ in range(3):
        assert await site.status("127.0.0.6", "alice", WRONG) == 401
    for _ in range(12):
        early = await site.sign_in("127.0.0.6", "alice", WRONG)
        assert early.status == 429
        waits.append(int(early.headers["Retry-After"]))
        clock.now += waits[-1]
        assert await site.status("127.0.0.6", "alice", WRONG) == 401
    # Before: 300, 300, ... (and every guess after each wait was free again).
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]


async def test_waiting_out_a_lockout_does_not_make_guesses_free(site, clock):
    for _ in range(3):
        assert await site.status("127.0.0.7", "alice", WRONG) == 401
    clock.now += 301  # past the lockout and the config's window
    assert await site.status("127.0.0.7", "alice", WRONG) == 401
    again = await site.sign_in("127.0.0.7", "alice", WRONG)
    # Before: 401 (the count had started again from zero).
    assert again.status == 429 and again.headers["Retry-After"] == "2"
    clock.now += throttle.LOCKED_MEMORY_SECONDS + 10  # a quiet day later it is forgotten
    for _ in range(3):
        assert await site.status("127.0.0.7", "alice", WRONG) == 401


async def test_each_lockout_start_is_one_audit_entry(site, clock):
    for _ in range(3):
        assert await site.status("127.0.0.8", "alice", WRONG) == 401
    assert await site.status("127.0.0.8", "alice", WRONG) == 429  # refused early: no new lockout
    clock.now += 1
    assert await site.status("127.0.0.8", "alice", WRONG) == 401
    locks = site.locks()
    # Before: one entry with {"seconds": 300, "after_failures": 3}, naming neither the address nor the end.
    assert [(e["actor"], e["target"]) for e in locks] == [("system", "user:alice")] * 2
    first, second = (e["details"] for e in locks)
    start = clock.now - 1
    assert first == {
        "account": "alice",
        "address": "127.0.0.8",
        "until": start + 1,
        "scopes": {"account+address": start + 1},
        "failures": {"account+address": 3},
    }
    assert second["until"] == clock.now + 2 and second["address"] == "127.0.0.8"
    assert audit.verify(site.db).ok


async def test_parallel_guesses_from_one_address_cannot_exceed_the_limit(site):
    statuses = await asyncio.gather(*(site.status("127.0.0.9", "alice", f"guess number {i}") for i in range(10)))
    assert sorted(statuses) == [401] * 3 + [429] * 7


async def test_known_addresses_and_counters_are_stored_hashed(site):
    assert await site.status(USER, "alice") == 200
    for _ in range(2):
        assert await site.status("127.0.0.3", "secret-typed-as-name", WRONG) == 401
    rows = list(site.db.query("SELECT * FROM login_failures"))
    # Before: no known address was kept, and counters were keyed by the name typed in clear.
    assert any(row["username"].startswith("known:") for row in rows)
    text = json.dumps(rows)
    for clear in ("alice", "127.0.0", "secret-typed-as-name"):
        assert clear not in text


async def test_a_password_change_with_the_wrong_password_is_throttled_per_address(site, clock):
    signed = await site.sign_in(USER, "alice")
    cookie = signed.cookies["wardsight_session"].value
    session = site.sessions[USER]
    headers = {"Cookie": f"wardsight_session={cookie}"}
    async with session.get(site.client.make_url("/api/v1/session"), headers=headers) as r:
        csrf = (await r.json())["csrf_token"]
    headers["X-CSRF-Token"] = csrf
    body = {"current_password": WRONG, "new_password": "a brand new password"}
    url = site.client.make_url("/api/v1/session/password")
    statuses = []
    for _ in range(4):
        async with session.post(url, json=body, headers=headers) as r:
            statuses.append(r.status)
    assert statuses == [403, 403, 403, 429]
    assert await site.status("127.0.0.3", "alice") == 200  # another address is not held up


def test_client_networks():
    assert lockout.client_network("203.0.113.7") == "203.0.113.7"
    assert lockout.client_network("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"  # one host, one /64
    assert lockout.client_network("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert lockout.client_network("::ffff:203.0.113.7") == "203.0.113.7"
    assert lockout.client_network("fe80::1%eth0") == "fe80::/64"
    assert lockout.client_network(None) == "unknown"


def test_waits_double_from_the_threshold_up_to_the_cap():
    assert [throttle.wait_after(n, 3, 300) for n in range(1, 14)] == [0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert throttle.wait_after(10**9, 3, 300) == 300
