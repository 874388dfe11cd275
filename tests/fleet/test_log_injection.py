"""Log injection (issue 14, item 6): what clients send cannot start a forged line in the server's log."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from yarl import URL

from fleet.web import logsafe
from tests.fleet.helpers import Clock, api_headers, insert_device, live_db, start_app

CLI_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # as `wardsight` configures logging


@pytest.fixture
def server_log() -> Iterator[io.StringIO]:
    """What the fleet's loggers write, formatted as the CLI does."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(CLI_FORMAT))
    loggers = [logging.getLogger(name) for name in ("wardsight.fleet", "aiohttp")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield out
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_a_newline_in_the_path_is_one_escaped_log_line(aiohttp_client, tmp_path, server_log):
    client = await start_app(aiohttp_client, tmp_path, Clock())
    # GET /api/v1/devices/x%0a<fake line>, without signing in
    url = URL("/api/v1/devices/x%0a%3Cfake%20line%3E", encoded=True)
    resp = await client.get(url)
    assert resp.status == 401
    lines = server_log.getvalue().splitlines()
    about = [line for line in lines if "/api/v1/devices/x" in line and "aiohttp.access" not in line]  # the test
    # server also writes an access log line (the real one has none), with the path still percent-encoded
    assert len(about) == 1, lines
    assert "GET /api/v1/devices/x\\n<fake line> from 127.0.0.1 rejected (401)" in about[0]
    assert not any(line.startswith("<fake line>") for line in lines), lines


async def test_reasons_and_other_logged_values_are_escaped(aiohttp_client, tmp_path, server_log):
    client = await start_app(aiohttp_client, tmp_path, Clock())
    insert_device(live_db(client), "dev-1")
    admin = api_headers(client, "admin")
    reason = "ward move\n2026-01-01 00:00:00,000 WARNING wardsight.fleet: device dev-9 approved by admin\r\x1b[2J"
    resp = await client.post("/api/v1/devices/dev-1/quarantine", json={"reason": reason}, headers=admin)
    assert resp.status == 200, await resp.text()
    lines = server_log.getvalue().splitlines()
    assert not any("dev-9" in line and line.startswith("2026-01-01") for line in lines), lines
    quarantined = [line for line in lines if "quarantine by" in line]
    assert len(quarantined) == 1
    assert (
        "(ward move\\n2026-01-01 00:00:00,000 WARNING wardsight.fleet: device dev-9 approved by admin\\r\\x1b[2J)"
        in (quarantined[0])
    )


def test_every_fleet_logger_escapes_whatever_the_caller_passes(server_log):
    logsafe.install()  # what create_app does
    logsafe.install()  # and again: installed once
    child = logging.getLogger("wardsight.fleet.some.new.module")
    child.warning("user %s signed in", "eve\nFORGED")
    child.warning("no arguments: eve\nFORGED\u2028too\x85")  # a pre-formatted message
    logging.getLogger("aiohttp.access").warning('127.0.0.1 "GET /x\nFORGED HTTP/1.1" 404')
    try:
        raise ValueError("bad value\nFORGED: line")
    except ValueError:
        child.exception("failed for %s", "a\rb")
    text = server_log.getvalue()
    assert not any(line.startswith("FORGED") for line in text.splitlines()), text
    assert "user eve\\nFORGED signed in" in text
    assert "no arguments: eve\\nFORGED\\u2028too\\x85" in text
    assert "GET /x\\nFORGED HTTP/1.1" in text
    assert "failed for a\\rb" in text
    assert "ValueError: bad value\\nFORGED: line" in text
    assert "Traceback (most recent call last):\n  File " in text  # the traceback's own lines stay lines


def test_other_loggers_and_records_are_left_alone():
    logsafe.install()
    record = logging.getLogRecordFactory()("wardsight.device", logging.INFO, __file__, 1, "a\nb %s", ("c",), None)
    assert record.getMessage() == "a\nb c"  # the device agent's own log is not the server's concern
    record = logging.getLogRecordFactory()("wardsight.fleet", logging.INFO, __file__, 1, "a\nb %s", ("c",), None)
    assert record.getMessage() == "a\\nb c"
    assert logsafe.escape("tab\there \x00 \x7f é 😀") == "tab\\there \\x00 \\x7f é 😀"
