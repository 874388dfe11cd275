"""The jobs page (issue 15, item 12): it starts on a harmless kind, a disruptive kind asks naming the devices, the
batch page says its devices and settings in words, and a device's diagnostics read as sections (key/value lists, a
table of jobs, wrapped log lines), not a JSON dump. Chromium against a real TLS fleet server whose simulated devices
answer ``collect_diagnostics`` with a bundle built by the firmware's own ``build_bundle``."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")

from playwright.sync_api import expect

from tests.browser.simfleet import SimFleet, add_diagnosing, sign_in, start_sim_fleet, wait_for


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    """Three devices in two wards that send real diagnostics bundles."""
    fleet = start_sim_fleet(tmp_path_factory.mktemp("jobs"))
    try:
        add_diagnosing(fleet, "cam-3b12", "3B-12")
        add_diagnosing(fleet, "cam-3b14", "3B-14")
        add_diagnosing(fleet, "cam-4a02", "4A-02")
        yield fleet
    finally:
        fleet.stop()


def open_jobs(browser, sim, pages, user: str = "olga", path: str = "#/jobs"):
    page = sign_in(browser, sim, user, path=path)
    pages.append(page)
    expect(
        page.get_by_role("heading", name="Jobs", exact=True).or_(
            page.get_by_role("heading", name=re.compile("^Job batch"))
        )
    ).to_be_visible()
    return page


def pick(page, *names: str) -> None:
    for name in names:
        page.get_by_label(re.compile(rf"^{name} ·")).check()


def batches(sim, kind: str) -> list[dict]:
    return sim.query("SELECT id FROM job_batches WHERE kind = ?", [kind])


def test_the_form_starts_harmless_and_a_restart_asks_naming_the_devices(browser, sim, pages):
    page = open_jobs(browser, sim, pages)
    kind = page.get_by_label("Job", exact=True)
    assert kind.input_value() == "collect_diagnostics"
    expect(kind.locator("option:checked")).to_have_text("Collect diagnostics")
    expect(page.locator("#job-kind-hint")).to_contain_text("Harmless")

    kind.select_option("restart_agent")
    expect(page.locator("#job-kind-hint")).to_contain_text("restarts")
    pick(page, "cam-3b12", "cam-4a02")
    page.accept[0] = False  # the operator says no
    page.get_by_role("button", name="Start the job").click()
    expect(page.locator(".page-status")).to_have_text("Nothing started.")
    assert len(page.dialogs) == 1
    assert "2 devices: cam-3b12 (3B-12) and cam-4a02 (4A-02)" in page.dialogs[0]
    assert "Restart the agent" in page.dialogs[0]
    assert batches(sim, "restart_agent") == []

    page.accept[0] = True
    page.get_by_role("button", name="Start the job").click()
    expect(page.locator(".page-status")).to_contain_text("Started batch-")
    assert len(page.dialogs) == 2
    wait_for(lambda: batches(sim, "restart_agent"), what="the restart batch")

    # A harmless kind starts without asking.
    kind.select_option("self_test")
    page.get_by_role("button", name="Start the job").click()
    wait_for(lambda: batches(sim, "self_test"), what="the self-test batch")
    assert len(page.dialogs) == 2
    assert page.console_errors == []


def test_targets_and_settings_read_as_words(browser, sim, pages):
    page = open_jobs(browser, sim, pages)
    page.get_by_label("Job", exact=True).select_option("set_log_level")
    page.get_by_label("Log level").select_option("debug")
    page.get_by_label("For (minutes)").fill("90")
    pick(page, "cam-3b12", "cam-3b14", "cam-4a02")
    page.get_by_role("button", name="Start the job").click()
    page.locator(".job-line a").click()
    expect(page.get_by_role("heading", name=re.compile("^Job batch"))).to_be_visible()
    facts = page.locator("dl.facts")
    expect(facts.locator("dt:text-is('Job') + dd")).to_have_text("Set the log level for a while")
    expect(page.locator("dd.job-target")).to_have_text(
        "3 devices: cam-3b12 (3B-12), cam-3b14 (3B-14) and cam-4a02 (4A-02)"
    )
    expect(page.locator("dd.job-params")).to_have_text(
        "log level debug for 1 hour 30 minutes, then back to the configured level"
    )
    expect(facts).not_to_contain_text("{")
    expect(page.locator("table").get_by_role("link", name="cam-3b14 (3B-14)")).to_be_visible()

    page.get_by_role("link", name="← Jobs").click()
    row = page.locator("tr", has=page.get_by_role("cell", name="Set the log level for a while"))
    expect(row.first).to_contain_text("3 devices")
    assert page.console_errors == []


def test_diagnostics_read_as_sections_not_json(browser, sim, pages):
    page = open_jobs(browser, sim, pages)
    pick(page, "cam-3b14")
    page.get_by_role("button", name="Start the job").click()  # the default: diagnostics
    page.locator(".job-line a").click()
    output = page.locator("section.job-output")
    expect(output.get_by_role("heading", name="Output of cam-3b14 (3B-14)")).to_be_visible(timeout=20000)
    assert page.dialogs == []

    # Keys in plain words, values with their units, times as dates without the epoch number beside them.
    device = output.locator("section.output-section", has=page.get_by_role("heading", name="Device", exact=True))
    expect(device.locator("dt:text-is('Room') + dd")).to_have_text("3B-14")
    expect(device.locator("dt:text-is('Name') + dd")).to_have_text("cam-3b14")
    clock = device.locator("dt:text-is('Device clock') + dd")
    expect(clock).to_contain_text(str(time.gmtime().tm_year))
    expect(clock).not_to_have_text(re.compile(r"\d{9,}"))
    health = output.locator("section.output-section", has=page.get_by_role("heading", name="Health", exact=True))
    expect(health.locator("dt:text-is('Model pose_net') + dd")).to_have_text("1.0")  # the JSON string, unquoted
    expect(health.locator("dt:text-is('CPU temperature') + dd")).to_have_text("54 °C")
    expect(health.locator("dt:text-is('Frame rate') + dd")).to_have_text("14.8 fps")
    keys = output.locator("dl.kv dt").all_inner_texts()
    assert keys and not [k for k in keys if "_" in k and not k.startswith("Model ")], keys
    jobs = output.locator("section.output-section", has=page.get_by_role("heading", name="Recent jobs"))
    expect(jobs.get_by_role("columnheader", name="Kind")).to_be_visible()
    expect(jobs.locator("tbody tr").first).to_contain_text("Collect diagnostics")
    assert jobs.inner_text().count("Recent jobs") == 1  # one heading, no second caption
    expect(jobs.get_by_role("table", name="Recent jobs")).to_be_visible()
    job_id = jobs.locator("tbody tr").first.locator(".mono")
    expect(job_id).to_have_class(re.compile(r"\bmuted\b"))
    assert len(job_id.inner_text()) <= 13
    log = output.get_by_role("region", name="Log")
    expect(log).to_contain_text("frame batch 3 processed")
    expect(log.locator(".log-warning")).to_contain_text("retrying in 4 s")
    assert log.evaluate("el => el.tagName") == "PRE"
    assert log.evaluate("el => getComputedStyle(el).whiteSpace") == "pre-wrap"
    text = output.inner_text()
    assert '{"' not in text and '":' not in text and "== device ==" not in text

    # With several devices, each one's output is a button away.
    page.get_by_role("link", name="← Jobs").click()
    pick(page, "cam-3b12", "cam-4a02")
    page.get_by_role("button", name="Start the job").click()
    page.locator(".job-line a").click()
    show = page.get_by_role("button", name="Show the output of cam-4a02 (4A-02)")
    show.click(timeout=20000)
    heading = page.get_by_role("heading", name="Output of cam-4a02 (4A-02)")
    expect(heading).to_be_focused()
    expect(output.locator("section.output-section", has=page.get_by_role("heading", name="Device", exact=True))
           .locator("dt:text-is('Room') + dd")).to_have_text("4A-02")  # fmt: skip
    assert page.console_errors == []


def test_a_viewer_sees_that_there_is_output_without_asking_for_it(browser, sim, pages):
    operator = open_jobs(browser, sim, pages)
    pick(operator, "cam-3b12")
    operator.get_by_role("button", name="Start the job").click()
    batch_id = operator.locator(".job-line").get_attribute("data-batch")
    wait_for(
        lambda: sim.query("SELECT 1 FROM jobs WHERE batch_id = ? AND output IS NOT NULL", [batch_id]), what="output"
    )

    page = open_jobs(browser, sim, pages, "victor", path=f"#/jobs/{batch_id}")
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status))
    expect(page.get_by_role("cell", name="reported (operators can read it)")).to_be_visible()
    expect(page.locator("section.job-output")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Show the output"))).to_have_count(0)
    page.reload()
    expect(page.get_by_role("cell", name="reported (operators can read it)")).to_be_visible()
    assert 403 not in statuses
