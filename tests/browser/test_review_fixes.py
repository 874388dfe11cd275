"""Fixes from a review of the console (issue 15): every page keeps its last data while the server is unreachable
(item 9), rollout devices by name and each step said once (item 11), device events in plain words (item 5), and a
readable Health list on a phone."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")

from playwright.sync_api import expect

from tests.browser.simfleet import PASSWORD, Readings, SimFleet, publish_model, start_sim_fleet

FPS = re.compile(r"^1\d\.\d fps$")
UNSTARTED = ("cam-9c01", "cam-9c02", "cam-9c03")  # enrolled in ward 9C, never heard from: a rollout waits on them


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    fleet = start_sim_fleet(tmp_path_factory.mktemp("review"))
    try:
        fleet.add("cam-6d01", "6D-01", Readings(fps=13.5, cpu_temp_c=52.0))
        fleet.add("cam-6d02", "6D-02", Readings(fps=14.5, cpu_temp_c=51.0))
        for i, name in enumerate(UNSTARTED, start=1):
            fleet.add(name, f"9C-0{i}", start=False)
        yield fleet
    finally:
        for name in UNSTARTED:
            fleet.devices.pop(name, None)  # never started: nothing to stop
        fleet.stop()


def open_with_clock(browser, sim: SimFleet, user: str, viewport: dict[str, int] | None = None):
    """A signed-in page whose clock the test can move forward (Playwright's clock: time flows as usual until then)."""
    context = browser.new_context(ignore_https_errors=True, base_url=sim.url,
                                  viewport=viewport or {"width": 1360, "height": 900})  # fmt: skip
    context.clock.install()
    page = context.new_page()
    page.set_default_timeout(15000)
    page.on("dialog", lambda dialog: dialog.accept())
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.console_errors = errors  # type: ignore[attr-defined]
    page.goto("/#/fleet")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    return page


def _row(page, name: str):
    return page.locator("table.fleet tr", has=page.get_by_role("link", name=name, exact=True))


def _go(page, hash_: str) -> None:
    page.evaluate("h => { location.hash = h; }", hash_)


def _device_page(page, sim, name: str):
    _go(page, f"#/devices/{sim.devices[name].device_id}")
    expect(page.get_by_role("heading", name=f"Device {name}")).to_be_visible()
    return page.locator("section", has=page.get_by_role("heading", name="Health"))


def test_every_page_keeps_its_last_data_while_the_server_is_unreachable(browser, sim, pages):
    """Item 9: Fleet -> Alerts -> Fleet -> a device with the server unreachable, after visiting each once: the last
    data is shown, greyed, under the banner, and its ages keep counting."""
    sim.devices["cam-6d01"].send_event("fall", "fall", "critical", descent_s=0.8)
    page = open_with_clock(browser, sim, "victor")
    pages.append(page)
    banner_time = page.locator('#alert-banner li[data-room="6D-01"] .rel').first
    expect(banner_time).to_have_text("just now")
    expect(_row(page, "cam-6d01").locator("td.fps")).to_have_text(FPS)
    _go(page, "#/alerts")
    expect(page.locator("#alert-feed li[data-room='6D-01']").first).to_contain_text("Fall")
    _go(page, "#/fleet")
    expect(_row(page, "cam-6d02").locator("td.fps")).to_have_text(FPS)
    health = _device_page(page, sim, "cam-6d02")
    expect(health.locator("dt:text-is('Frame rate') + dd")).to_have_text(FPS)
    expect(page.locator("dt:text-is('Last heard') + dd")).to_have_text(re.compile(r"^\d+ s ago$"))
    _go(page, "#/fleet")
    expect(_row(page, "cam-6d02")).to_be_visible()

    page.route("**/api/**", lambda route: route.abort())
    expect(page.locator("#server-banner")).to_be_visible(timeout=10000)
    _go(page, "#/alerts")
    expect(page.get_by_role("heading", name="Alerts", exact=True)).to_be_visible()
    expect(page.locator("#alert-feed li[data-room='6D-01']").first).to_contain_text("Fall")
    expect(page.get_by_text("This page failed to load")).to_have_count(0)
    expect(page.locator("#page")).to_have_class(re.compile(r"\bstale\b"))
    _go(page, "#/fleet")
    expect(_row(page, "cam-6d02").locator("td.fps")).to_have_text(FPS)
    expect(_row(page, "cam-6d01")).to_be_visible()
    health = _device_page(page, sim, "cam-6d02")
    expect(health.locator("dt:text-is('Frame rate') + dd")).to_have_text(FPS)
    expect(page.get_by_text("cannot be reached; this device's page loads")).to_have_count(0)
    expect(page.locator("#page")).to_have_class(re.compile(r"\bstale\b"))

    # Two minutes later, still unreachable: the ages have moved on, on the page and in the alert banner.
    page.clock.fast_forward("02:00")
    expect(page.locator("dt:text-is('Last heard') + dd")).to_have_text(re.compile(r"^[23] min ago$"), timeout=20000)
    stale = re.compile(r"^— \(1\d\.\d fps, [23] min ago\)$")
    expect(health.locator("dt:text-is('Frame rate') + dd")).to_have_text(stale)
    expect(banner_time).to_have_text(re.compile(r"^[23] min ago$"), timeout=20000)
    _go(page, "#/fleet")
    expect(_row(page, "cam-6d02").locator("td").last).to_have_text(re.compile(r"[23] min ago"), timeout=20000)

    page.unroute("**/api/**")
    expect(page.locator("#server-banner")).to_be_hidden(timeout=10000)
    assert page.console_errors == []


def test_a_rollout_lists_devices_by_name_and_says_each_step_once(browser, sim, pages):
    """Item 11: the camera's name and room with its id beneath; the step's badge, then its sentence once; the
    uploader in words."""
    publish_model(sim, "pose_net", "1.1", sim.work / "offline-keys")
    page = open_with_clock(browser, sim, "olga")
    pages.append(page)
    _go(page, "#/models")
    library = page.get_by_role("region", name="Model library")
    uploaded = library.get_by_role("row").filter(has_text="1.1").locator("td").last
    expect(uploaded).to_have_text(re.compile(r" by API token \S+$"))
    form = page.locator("form", has=page.get_by_role("heading", name="Start a rollout"))
    form.get_by_label("Model", exact=True).select_option("pose_net")
    form.get_by_label("Version", exact=True).select_option("1.1")
    form.get_by_label("Ward (optional)").fill("9C")
    form.get_by_label("Groups (comma separated: a count, or a percent of the selection)").fill("1, 100%")
    form.get_by_role("button", name="Start the rollout").click()
    devices = page.locator("article.rollout").first.get_by_role("table", name=re.compile("^Devices of rollout"))
    for i, name in enumerate(UNSTARTED, start=1):
        device_id = sim.devices[name].device_id
        row = devices.locator("tr", has=page.get_by_role("link", name=name, exact=True))
        expect(row.locator("td").first).to_have_text(f"{name} (9C-0{i}){device_id}")
        expect(row.locator("td").first.locator(".muted")).to_have_text(device_id)
    waiting = devices.locator("tr", has=page.locator(".badge", has_text="waiting"))
    expect(waiting).to_have_count(2)
    for row in waiting.all():
        expect(row.locator("td").nth(3)).to_have_text("waiting")
        assert row.inner_text().count("waiting for its group to start") == 1
    assert "apitoken:" not in page.locator("main").inner_text()
    assert page.console_errors == []


def test_device_events_read_as_words(browser, sim, pages):
    """Item 5: the device page's recent events use the Alerts page's labels and readable data with units."""
    cam = sim.devices["cam-6d02"]
    cam.send_event("bed_exit", "bed_exit", "warning", held_seconds=1)
    cam.send_event("occupancy", "count_changed", "info", count=2, previous=1)
    page = open_with_clock(browser, sim, "victor")
    pages.append(page)
    _device_page(page, sim, "cam-6d02")
    events = page.locator("section", has=page.get_by_role("heading", name="Recent events"))
    bed = events.locator("tbody tr", has_text="Bed exit")
    expect(bed).to_have_count(1)
    expect(bed.locator("td").last).to_have_text("held 1 s")
    count = events.locator("tbody tr", has_text="People count changed")
    expect(count.locator("td").last).to_have_text("people 2, before 1")
    text = events.inner_text()
    for raw in ("bed_exit", "count_changed", "held_seconds", "=", "occupancy"):
        assert raw not in text, raw
    assert page.console_errors == []


def test_the_health_list_on_a_phone_breaks_no_word(browser, sim, pages):
    """At 390 px the Health list's values keep whole words (no "pose_ne t", "accelera tor")."""
    page = open_with_clock(browser, sim, "victor", viewport={"width": 390, "height": 844})
    pages.append(page)
    health = _device_page(page, sim, "cam-6d01")
    expect(health.locator("dt:text-is('Models') + dd")).to_contain_text("pose_net")
    broken = health.locator("dl.facts").evaluate(
        """dl => {
          const out = [];
          for (const el of dl.querySelectorAll("dt, dd")) {
            const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
              for (const m of node.data.matchAll(/\\S+/g)) {
                const range = document.createRange();
                range.setStart(node, m.index);
                range.setEnd(node, m.index + m[0].length);
                const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
                if (tops.size > 1) out.push(m[0]);
              }
            }
          }
          return out;
        }"""
    )
    assert broken == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
