"""Query parameters: every one is bounded and an odd value is a 400, never a 500 (issue 14, item 1).

The property test walks the app's own routes (``app.router.routes()``), finds the query parameters each GET
handler reads by reading its module's source (the names passed to the query helpers, ``request.query.get``,
``request.query[...]`` and the ``check_query_params`` sets), and sends each parameter, one at a time, every
value in :data:`ODD_VALUES` as an admin against the real app on loopback.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from urllib.parse import quote

import pytest
from aiohttp import DummyCookieJar, web
from yarl import URL

from fleet.accounts import service as operators
from fleet.app import create_app
from fleet.config import ServerConfig
from fleet.reports.routes import parse_time
from fleet.web import query
from fleet.web.appkeys import CLOCK_KEY, DB_KEY
from fleet.web.errors import RejectedError
from tests.fleet.helpers import Clock, insert_device
from wardsight import wire

FAST = {"password_memory_kib": 1024, "password_time_cost": 1}

HUGE = "9" * 400
# Values as they go on the wire (already percent-encoded), so bytes that are not UTF-8 can be sent too.
ODD_VALUES: tuple[str, ...] = (
    *(
        quote(v, safe="")
        for v in (
            HUGE,
            "-" + HUGE,
            HUGE + ".5",
            "0." + HUGE,
            "1" + "0" * 5000,
            "99999999999999999999999999",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775809",
            "1e308",
            "1e309",
            "-1e309",
            "1e-400",
            "nan",
            "NaN",
            "-nan",
            "inf",
            "-Infinity",
            "-1",
            "0",
            "1",
            "1.5",
            "+7",
            "0x10",
            "1_000",
            "",
            " ",
            " 5 ",
            "٣",  # ARABIC-INDIC DIGIT THREE: int() takes it
            "\uff11\uff12",  # FULLWIDTH digits one, two
            "é",
            "😀",
            "\x00",
            "\n",
            "a\r\nb",
            "x" * 5000,
            "0001-01-01",
            "0001-01-01T00:00:00",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31",
            "9999-12-31T23:59:59.999999",
            "9999-12-31T23:59:59-14:00",
            "1970-01-01",
            "2038-01-19T03:14:08Z",
            "10000-01-01",
            "2026-02-30",
            "now",
        )
    ),
    *("%FF", "%ED%A0%80", "%C0%80", "%"),  # not UTF-8, overlong NUL, a lone percent
)

PLACEHOLDERS = {"kind": "hygiene", "room": "3B-12", "name": "root.json", "path": "x"}  # everything else: "1"

# query_number(request, "limit", ...), query_identifier(request, "room"), _choice(request, "group", ...)
_HELPER_CALL = re.compile(r"\b(?:query_\w+|_choice)\(\s*request\s*,\s*\"([A-Za-z_][A-Za-z0-9_]*)\"")
_QUERY_READ = re.compile(r"request\.query(?:\.get\(|\[)\s*\"([A-Za-z_][A-Za-z0-9_]*)\"")
_PARAM_SET = re.compile(r"_PARAMS\s*=\s*frozenset\(\{([^}]*)\}\)|check_query_params\([^)]*frozenset\(\{([^}]*)\}\)")
# What the source scan cannot see (a name held in a constant).
EXTRA_PARAMS = {
    "/api/v1/device/jobs": {wire.UPDATE_HINT_FIELD, "wait"},
    wire.UPDATE_PATH: {wire.SYSTEM_POLL_QUERY.partition("=")[0]},  # ?system=1: an agent that takes system updates
}


def params_read_by(handler: object) -> set[str]:
    """The query parameter names the handler's module reads (by its source)."""
    module = inspect.getmodule(inspect.unwrap(handler))  # type: ignore[arg-type]
    assert module is not None
    source = inspect.getsource(module)
    names = set(_HELPER_CALL.findall(source)) | set(_QUERY_READ.findall(source))
    for groups in _PARAM_SET.findall(source):
        for group in groups:
            names |= set(re.findall(r"\"([^\"]+)\"", group))
    return names


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)[^}]*\}", lambda m: PLACEHOLDERS.get(m.group(1), "1"), path)


def reads_the_query(handler: object) -> bool:
    module = inspect.getmodule(inspect.unwrap(handler))  # type: ignore[arg-type]
    return module is not None and bool(re.search(r"request\.query\b|\bquery_\w+\(", inspect.getsource(module)))


def get_routes(app: web.Application) -> dict[str, set[str]]:
    """Every GET route's path (placeholders filled) and the query parameters its handler reads."""
    out: dict[str, set[str]] = {}
    for route in app.router.routes():
        if route.method != "GET" or route.resource is None:
            continue
        canonical = route.resource.canonical
        names = params_read_by(route.handler) | EXTRA_PARAMS.get(canonical, set())
        # a module that reads the query but where the scan found no name: the scan must learn its spelling
        assert names or not reads_the_query(route.handler), f"{canonical}: which query parameters does it read?"
        out[concrete(canonical)] = names
    return out


async def start(aiohttp_client, tmp_path):
    app = create_app(ServerConfig(database=tmp_path / "fleet.db", **FAST), clock=Clock())
    client = await aiohttp_client(app, cookie_jar=DummyCookieJar())
    db = app[DB_KEY].db
    token = operators.create_api_token(db, "odd", "admin", "test", app[CLOCK_KEY]())
    insert_device(db, "1", ward="3B", site="north")  # so /devices/1/... reach their query parsing
    return client, {"Authorization": f"Bearer {token}"}


async def status_of(client, url: URL, headers) -> int:
    resp = await asyncio.wait_for(client.get(url, headers=headers, allow_redirects=False), 10)
    resp.close()  # an alert stream stays open: the status is all this test needs
    return resp.status


async def test_odd_query_values_never_get_a_5xx(aiohttp_client, tmp_path):
    started = time.monotonic()
    client, admin = await start(aiohttp_client, tmp_path)
    # One endpoint, so /webhooks/1/deliveries reaches its query parsing.
    made = await client.post("/api/v1/webhooks", json={"name": "n", "url": "https://10.0.0.5/h"}, headers=admin)
    assert made.status == 201, await made.text()
    routes = get_routes(client.server.app)
    # The scan finds the parameters of the routes known to take them (a check on the scan itself).
    assert {"limit", "before", "since"} <= routes["/api/v1/alerts"]
    assert {"limit", "before", "since", "until", "q"} <= routes["/api/v1/audit"]
    assert {"from", "to", "group", "format", "room"} <= routes["/api/v1/reports/hygiene"]
    assert {"limit", "status"} <= routes["/api/v1/webhooks/1/deliveries"]
    assert {"limit", "since"} <= routes["/api/v1/devices/1/health"]
    assert {"after", "room"} <= routes["/api/v1/alerts/stream"]
    assert "limit" in routes["/api/v1/jobs"] and "limit" in routes["/api/v1/events"]
    cases = [
        (path, name, value) for path, names in sorted(routes.items()) for name in sorted(names) for value in ODD_VALUES
    ]
    assert len(cases) > 1000
    failures: list[str] = []
    semaphore = asyncio.Semaphore(16)

    async def one(path: str, name: str, value: str) -> None:
        url = URL(f"{path}?{quote(name)}={value}", encoded=True)
        async with semaphore:
            status = await status_of(client, url, admin)
        if status >= 500:
            failures.append(f"{status} GET {url}")

    await asyncio.gather(*(one(*case) for case in cases))
    assert not failures, f"{len(failures)} of {len(cases)}:\n" + "\n".join(failures[:40])
    assert time.monotonic() - started < 30


# ---- the issue's own examples -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/alerts?limit={HUGE}",
        f"/api/v1/alerts?before={HUGE}",
        f"/api/v1/audit?limit={HUGE}",
        f"/api/v1/audit?before={HUGE}",
        f"/api/v1/events?limit={HUGE}",
        "/api/v1/alerts?before=99999999999999999999999999",
        "/api/v1/audit?before=99999999999999999999999999",
        "/api/v1/rooms/3B-12/alerts?before=99999999999999999999999999",
        "/api/v1/reports/hygiene?from=0001-01-01",
        "/api/v1/reports/occupancy?to=0001-01-01",
        "/api/v1/reports/falls?from=0001-01-01T00:00:00",
        "/api/v1/devices/1/health?since=1e308",
        "/api/v1/jobs?limit=٣",
    ],
)
async def test_the_issues_examples_are_400(aiohttp_client, tmp_path, path):
    client, admin = await start(aiohttp_client, tmp_path)
    resp = await client.get(path, headers=admin)
    assert resp.status == 400, (path, resp.status, await resp.text())
    assert "error" in await resp.json()


async def test_in_range_values_still_work(aiohttp_client, tmp_path):
    client, admin = await start(aiohttp_client, tmp_path)
    for path in (
        "/api/v1/alerts?limit=500&before=9223372036854775807&since=0",
        "/api/v1/audit?limit=1&before=1&since=1700000000.5&until=1800000000",
        "/api/v1/events?limit=500",
        "/api/v1/jobs?limit=500",
        "/api/v1/devices/1/health?since=1799990000&limit=1440",
        "/api/v1/reports/hygiene?from=2026-01-01&to=2026-01-08",
        "/api/v1/reports/hygiene?from=1767225600&to=1767830400",
        "/api/v1/alerts?limit=",  # empty means absent
    ):
        resp = await client.get(path, headers=admin)
        assert resp.status == 200, (path, await resp.text())


# ---- the parser --------------------------------------------------------------------------------------


def make_request(query_string: str) -> web.Request:
    from aiohttp.test_utils import make_mocked_request

    return make_mocked_request("GET", "/x?" + query_string)


@pytest.mark.parametrize(
    ("raw", "kind", "low", "high", "expected"),
    [
        ("5", int, 1, 10, 5),
        ("-3", int, -5, 5, -3),
        ("2.5", float, 0, 10, 2.5),
        ("1e3", float, 0, 1e4, 1000.0),
        ("9223372036854775807", int, None, None, 2**63 - 1),
    ],
)
def test_query_number_takes_plain_numbers_in_bounds(raw, kind, low, high, expected):
    value = query.query_number(make_request(f"n={raw}"), "n", kind, low=low, high=high)
    assert value == expected and type(value) is kind


@pytest.mark.parametrize(
    ("raw", "kind", "low", "high", "message"),
    [
        (HUGE, int, None, None, "must be an integer"),
        (HUGE, float, None, None, "must be a number"),
        ("9223372036854775808", int, None, None, "between"),
        ("1e309", float, None, None, "finite"),
        ("nan", float, None, None, "must be a number"),
        ("%D9%A3", int, None, None, "must be an integer"),
        ("1_000", int, None, None, "must be an integer"),
        ("0x10", int, None, None, "must be an integer"),
        ("11", int, 1, 10, "between 1 and 10"),
        ("0", int, 1, 10, "between 1 and 10"),
        ("10.5", float, 0, 10, "between 0 and 10"),
    ],
)
def test_query_number_refuses_odd_and_out_of_bounds_values(raw, kind, low, high, message):
    with pytest.raises(RejectedError) as caught:
        query.query_number(make_request(f"n={raw}"), "n", kind, low=low, high=high)
    assert caught.value.status_code == 400 and message in caught.value.why and caught.value.why.startswith("n ")


@pytest.mark.parametrize("raw", ["0001-01-01", "0001-01-01T00:00:00", "9999-12-31T23:59:59", "10000-01-01", "nan"])
def test_report_times_at_the_ends_of_the_calendar_are_400(raw):
    with pytest.raises(RejectedError) as caught:
        parse_time(raw, "from")
    assert caught.value.status_code == 400
