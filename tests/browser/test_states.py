"""States that agree (issue 15, item 7): the fleet and device pages say the same state for a device, in the same
words, with what it means and what to do; a degraded device's reasons are in words; a camera that analyses frames
at a normal rate while its source drops some is online, not degraded.

The threshold is the server's (:data:`fleet.health.store.MIN_APP_FPS`); the words come from fleet/static/states.js.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")

from playwright.sync_api import expect

from fleet.health.store import FPS_SETTLE_S, MIN_APP_FPS
from tests.browser.simfleet import Readings, SimFleet, start_sim_fleet, wait_for

A11Y_CHECK = (Path(__file__).parent / "a11y_check.js").read_text()
NEEDS = f"needs {MIN_APP_FPS:.0f} fps"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    """Ward 6D: a busy camera (14 fps analysed, 16 a second dropped), a slow one (3 fps) and a hot one."""
    fleet = start_sim_fleet(tmp_path_factory.mktemp("states"))
    try:
        fleet.add("cam-6d01", "6D-01", Readings(fps=14.0, cpu_temp_c=55.0, dropped_fps=16.0))
        fleet.add("cam-6d02", "6D-02", Readings(fps=3.0, cpu_temp_c=55.0))
        fleet.add("cam-6d03", "6D-03", Readings(fps=14.0, cpu_temp_c=86.0))

        def settled() -> bool:  # the rate is judged once the agents are past their first seconds, frames dropping
            rows = fleet.query("SELECT uptime_s, frames_dropped_delta AS dropped FROM health_latest")
            return (
                len(rows) == 3 and all(r["uptime_s"] >= FPS_SETTLE_S for r in rows) and any(r["dropped"] for r in rows)
            )

        wait_for(settled, timeout=40, what="three devices past their first seconds")
        yield fleet
    finally:
        fleet.stop()


def _row(page: Any, name: str) -> Any:
    return page.locator("table.fleet tr", has=page.get_by_role("link", name=name, exact=True))


def _open_device(page: Any, name: str) -> Any:
    _row(page, name).get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", name=f"Device {name}")).to_be_visible()
    return page.locator("dt:text-is('State') + dd")


def test_fleet_and_device_pages_say_the_same_state_with_what_it_means(open_console, sim):
    page = open_console("victor")
    expected = {"cam-6d01": "online", "cam-6d02": "degraded", "cam-6d03": "degraded"}
    for name, state in expected.items():
        expect(_row(page, name).locator(".badge.state")).to_have_text(state, timeout=20000)

    # The fleet page explains every state, collapsed until opened (a native disclosure: keyboard operable).
    legend = page.locator("details.state-legend-box")
    expect(legend).not_to_have_attribute("open", "")
    legend.locator("summary").focus()
    page.keyboard.press("Enter")
    expect(legend).to_have_attribute("open", "")
    meaning = {
        s: legend.locator(f"dt:has(.state-{s}) + dd").inner_text()
        for s in ("online", "offline", "degraded", "updating", "never_seen")
    }
    assert all(len(text) > 40 for text in meaning.values()), meaning
    expect(legend).to_contain_text("Why a device is degraded")
    # Off the legend, a badge carries the same words as its description (screen readers) and title (pointer).
    badge = _row(page, "cam-6d02").locator(".badge.state")
    described = badge.evaluate("el => document.getElementById(el.getAttribute('aria-describedby')).textContent")
    assert described == badge.get_attribute("title") == meaning["degraded"]
    assert page.evaluate(A11Y_CHECK) == []

    # Each device's page says the state the fleet showed, with the same explanation, as visible text.
    for name, state in expected.items():
        page.evaluate("location.hash = '#/fleet'")
        fleet_badge = _row(page, name).locator(".badge.state")
        expect(fleet_badge).to_have_text(state)
        state_dd = _open_device(page, name)
        expect(state_dd.locator(".badge.state")).to_have_text(state, timeout=10000)
        expect(page.locator(".page-head .badge.state")).to_have_text(state)
        expect(state_dd.locator(".state-help")).to_have_text(meaning[state])
        expect(state_dd.locator(".state-help")).to_be_visible()
    assert page.evaluate(A11Y_CHECK) == []
    assert page.console_errors == []


def test_degraded_reasons_are_in_words_with_what_to_do(open_console, sim):
    page = open_console("victor")
    slow = _row(page, "cam-6d02")
    expect(slow.locator(".state-reasons-inline")).to_have_text(
        re.compile(rf"^too slow for the apps \(\d\.\d fps, {NEEDS}\)$"), timeout=20000
    )
    expect(_row(page, "cam-6d03").locator(".state-reasons-inline")).to_have_text("running hot")
    states = page.locator("table.fleet td.state-cell").all_inner_texts()
    assert len(states) == 3 and not any("_" in text for text in states), states  # no code names (frames_dropping)

    state_dd = _open_device(page, "cam-6d02")
    reason = state_dd.locator("li[data-reason='slow']")
    expect(reason).to_contain_text(re.compile(rf"too slow for the apps \(\d\.\d fps, {NEEDS}\)"))
    expect(reason).to_contain_text(f"fewer than {MIN_APP_FPS:.0f} fps")
    expect(reason).to_contain_text("fit an accelerator")  # what to do
    page.evaluate("location.hash = '#/fleet'")
    reason = _open_device(page, "cam-6d03").locator("li[data-reason='hot']")
    expect(reason).to_contain_text("running hot")
    expect(reason).to_contain_text("ventilation")
    assert page.console_errors == []


def test_a_camera_dropping_frames_at_a_normal_rate_is_online(open_console, sim):
    busy = sim.devices["cam-6d01"].device_id
    wait_for(lambda: sim.query("SELECT frames_dropped_delta FROM health_latest WHERE device_id = ?", [busy])[0][
        "frames_dropped_delta"] > 0, what="cam-6d01 dropping frames")  # fmt: skip
    page = open_console("victor")
    row = _row(page, "cam-6d01")
    expect(row.locator(".badge.state")).to_have_text("online")
    expect(row.locator(".state-reasons-inline")).to_have_count(0)
    expect(row.locator("td.fps")).to_have_text(re.compile(r"^1\d\.\d fps$"))
    state_dd = _open_device(page, "cam-6d01")
    expect(state_dd.locator(".badge.state")).to_have_text("online", timeout=10000)
    expect(state_dd.locator(".state-reasons li")).to_have_count(0)
    dropped = page.locator("dt:text-is('Frames analysed / dropped') + dd")
    expect(dropped).to_have_text(re.compile(r"^\d+ / [1-9]\d* since the agent started"))
    note = page.locator(".frames-note")
    expect(note).to_have_text(re.compile(rf"^Dropping frames is normal .* at {MIN_APP_FPS:.0f} fps or more\.$"))
    assert page.console_errors == []


def test_updating_and_unknown_reasons_read_the_same_on_both_pages(open_console, sim):
    """A rollout step in progress shows "updating" on both pages; a reason this console does not know (an older
    server's ``frames_dropping``) is still shown in words. The server's answers are altered in the browser."""
    busy, hot = sim.devices["cam-6d01"].device_id, sim.devices["cam-6d03"].device_id
    page = open_console("victor")
    rollout = {"id": "ro-1", "status": "running", "devices": [{"device_id": busy, "status": "downloading"}]}
    page.route("**/api/v1/rollouts", lambda route: route.fulfill(json={"rollouts": [rollout]}))
    page.route("**/api/v1/rollouts/ro-1", lambda route: route.fulfill(json=rollout))

    def older_server(route: Any) -> None:
        body = route.fetch().json()
        for d in body["devices"]:
            if d["id"] == hot and d.get("health"):
                d["health"]["degraded"] = ["frames_dropping", "hot"]
        route.fulfill(json=body)

    page.route("**/api/v1/fleet/overview", older_server)
    expect(_row(page, "cam-6d01").locator(".badge.state")).to_have_text("updating", timeout=10000)
    expect(page.get_by_role("list", name="Device counts")).to_contain_text("1 updating")
    expect(_row(page, "cam-6d03").locator(".state-reasons-inline")).to_have_text("frames dropping; running hot")
    expect(_open_device(page, "cam-6d01").locator(".badge.state")).to_have_text("updating", timeout=10000)
    expect(page.locator(".page-head .badge.state")).to_have_text("updating")
    page.evaluate("location.hash = '#/fleet'")
    state_dd = _open_device(page, "cam-6d03")
    expect(state_dd.locator("li[data-reason='frames_dropping']")).to_contain_text("frames dropping", timeout=10000)
    assert page.console_errors == []
