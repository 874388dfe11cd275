"""Refusals say the accepted format in words: a value that does not have a field's format gets a 400 naming the
field and what it accepts (letters, digits, which punctuation, how long, what it starts with), not a regular
expression. Against the real app and a real SQLite file."""

import pytest
from aiohttp import DummyCookieJar

from fleet.app import create_app
from fleet.config import ServerConfig
from fleet.web.appkeys import DB_KEY
from fleet.web.body import pattern_in_words
from tests.fleet.helpers import api_headers, insert_device
from wardsight import modelpkg, wire


@pytest.fixture
async def client(aiohttp_client, db_path, clock):
    config = ServerConfig(database=db_path, password_memory_kib=1024, password_time_cost=1)
    return await aiohttp_client(create_app(config, clock=clock), cookie_jar=DummyCookieJar())


async def refusal(resp):
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert "^" not in error and "should match pattern" not in error, error  # words, not the expression
    return error


async def test_a_refused_user_name_says_the_accepted_format(client):
    admin = api_headers(client, "admin")
    body = {"username": "Dr Smith", "password": "correct horse battery", "role": "viewer"}
    error = await refusal(await client.post("/api/v1/operators", json=body, headers=admin))
    assert error == (
        "invalid value for 'username': use 1 to 64 characters: lowercase letters, digits, '_', '.' or '-',"
        " starting with a lowercase letter or a digit"
    )
    body["username"] = "dr.smith"  # the hint is right: what it describes is accepted
    assert (await client.post("/api/v1/operators", json=body, headers=admin)).status == 201


async def test_a_refused_room_token_name_and_job_target_say_their_format(client):
    admin = api_headers(client, "admin")
    error = await refusal(await client.post("/api/v1/tokens", json={"room": "3B 12"}, headers=admin))
    assert error.startswith("invalid value for 'room': use 1 to 64 characters: letters, digits, '_', '.', ':' or '-'")
    assert error.endswith("starting with a letter or a digit")
    body = {"name": "nightly/backup", "role": "viewer"}
    error = await refusal(await client.post("/api/v1/api-tokens", json=body, headers=admin))
    assert "'name': use 1 to 64 characters: letters, digits, spaces, '_', '.', ':' or '-'" in error
    insert_device(client.server.app[DB_KEY], "dev-1")
    job = {"kind": "self_test", "target": {"site": "st marys"}, "expires_in_s": 3600}
    error = await refusal(await client.post("/api/v1/jobs", json=job, headers=admin))
    assert error.startswith("invalid value for 'target.site': use 1 to 64 characters")


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        (wire.IDENTIFIER_PATTERN, "use 1 to 64 characters: letters, digits, '_', '.', ':' or '-', starting with"),
        (modelpkg.VERSION, None),
        (r"^[0-9]{1,6}(\.[0-9]{1,6}){0,3}$", "use 1 to 4 parts separated by '.', each 1 to 6 digits"),
        (r"^([01][0-9]|2[0-3]):[0-5][0-9]$", "use a time of day as HH:MM, 00:00 to 23:59"),
        (r"^[0-9a-f]{64}$", "use 64 characters: lowercase hexadecimal digits (0-9, a-f)"),
        (
            r"^[a-z][a-z0-9_]{0,31}$",
            "use 1 to 32 characters: lowercase letters, digits or '_', starting with a lowercase",
        ),
        (r"^[A-Za-z0-9_.-]+$", "use one or more characters: letters, digits, '_', '.' or '-'"),
    ],
)
def test_patterns_in_words(pattern, words):
    got = pattern_in_words(pattern)
    assert got.startswith("use ") or got.startswith("it must match")
    if words is not None:
        assert got.startswith(words), got


def test_a_pattern_too_odd_to_describe_is_still_named():
    assert pattern_in_words(r"^job-[0-9a-f]{16,32}$") == r"it must match the pattern ^job-[0-9a-f]{16,32}$"
