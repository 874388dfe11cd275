"""When the server refuses an alert stream (429: this session already holds its share; 503: all in use), EventSource
closes for good: the alerts page and the critical-alert banner must then poll instead of waiting for a reconnect
that never comes. A fleet server that allows one stream per session shows it: the banner's stream takes it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")

from playwright.sync_api import expect

from tests.browser.simfleet import Readings, SimFleet, start_sim_fleet


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    fleet = start_sim_fleet(tmp_path_factory.mktemp("stream-fallback"), alert_streams_per_token=1)
    try:
        fleet.add("cam-3b12", "3B-12", Readings())
        fleet.add("cam-3b14", "3B-14", Readings())
        yield fleet
    finally:
        fleet.stop()


def test_the_alerts_page_polls_when_its_stream_is_refused(open_console, sim):
    page = open_console("olga", path="#/fleet")
    expect(page.locator("html")).to_have_attribute("data-alert-stream", "live")  # the banner holds the one stream
    page.goto("/#/alerts")
    connection = page.locator("#feed-connection")
    expect(connection).to_contain_text("polling every 1 s")  # 429: not "reconnecting…" for ever
    event_id = sim.devices["cam-3b12"].send_event("fall", "fall", "critical", track_id=1)
    expect(page.locator(f'[data-alert-id="{event_id}"]')).to_contain_text("Fall in room 3B-12")
    expect(connection).to_contain_text("polling")


def test_the_banner_polls_when_its_stream_is_refused(open_console, sim):
    first = open_console("olga", path="#/fleet")
    expect(first.locator("html")).to_have_attribute("data-alert-stream", "live")
    second = first.context.new_page()  # the same session: its banner's stream is refused
    second.goto(f"{sim.url}/#/jobs")
    expect(second.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(second.locator("html")).to_have_attribute("data-alert-stream", "polling")
    sim.devices["cam-3b14"].send_event("fall", "fall", "critical", track_id=2)
    expect(second.locator('#alert-banner li[data-room="3B-14"]')).to_be_visible(timeout=10000)
    expect(second).to_have_title("(2) FALL room 3B-14 — Jobs · WardSight")
