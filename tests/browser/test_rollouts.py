"""Rollouts a ward can follow (issue 15, item 11): model and version are picked from the library, a staged (unsigned)
version says it needs signing and with which command, the version the agent's built-in model reports
("lightning-fp16-1") is accepted, and each device's progress is shown in words with the reason it sent, devices in
progress as "updating"."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")

from playwright.sync_api import expect

from accelerators.catalog import MOVENET_MULTIPOSE
from fleet.accounts import service as operators
from tests.browser.simfleet import Readings, SimDevice, SimFleet, enroll, make_token, publish_model, start_sim_fleet
from wardsight import wire

A11Y_CHECK = (Path(__file__).parent / "a11y_check.js").read_text()
BUILT_IN = MOVENET_MULTIPOSE.version  # the version a device on the agent's own model reports
MODEL = "pose_net"

# Each scripted device's reports, one per poll: (state, reason, done, total). After the last it stays where it is.
SCRIPTS = {
    "cam-7r01": [("downloading", None, None, None), ("downloaded", None, None, None), ("installed", None, None, None),
                 ("activated", None, None, None), ("healthy", None, None, None)],
    "cam-7r02": [("downloading", None, None, None), ("downloaded", None, None, None), ("installed", None, None, None),
                 ("activated", None, 12, 30)],
    "cam-7r03": [("downloading", None, None, None), ("downloaded", None, None, None), ("installed", None, None, None),
                 ("activated", None, None, None), ("rolled_back", "health_check_missed", None, None)],
    "cam-7r04": [("downloading", None, None, None), ("rejected", "no_build_for_backend", None, None)],
    "cam-7r05": [("downloading", None, None, None), ("downloaded", None, None, None), ("installed", None, None, None),
                 ("deferred", "outside_window", None, None)],
}  # fmt: skip


class ScriptedDevice(SimDevice):
    """A simulated device that reports its update as its script says (the agent's states and reason codes)."""

    script: tuple[tuple[str, str | None, int | None, int | None], ...] = ()
    update_every_s = 0.5

    def _updates(self) -> None:
        reply = self.client.request("GET", "/api/v1/device/update")
        if reply.status != 200 or len(self.update_states) >= len(self.script):
            return
        offer = wire.UpdateOffer.model_validate(reply.body)
        state, reason, done, total = self.script[len(self.update_states)]
        report = wire.UpdateReport(rollout_id=offer.rollout_id, model=offer.model, version=offer.version,
                                   state=state, reason=reason, done=done, total=total)  # type: ignore[arg-type]  # fmt: skip
        got = self.client.request("POST", "/api/v1/device/update", report.model_dump_json(exclude_none=True).encode(),
                                  "application/json")  # fmt: skip
        if got.status == 202:
            self.update_states.append(state)


def add_scripted(fleet: SimFleet, name: str, room: str) -> ScriptedDevice:
    assert fleet.config.database is not None
    token = make_token(fleet.config.database, room, site="st-marys", ward="7R")
    store = enroll(fleet.server, token, fleet.work / "devices" / name, name)
    device = ScriptedDevice(store, Readings(models={MODEL: BUILT_IN}))
    device.script = tuple(SCRIPTS[name])
    fleet.devices[name] = device
    return device.start()  # type: ignore[return-value]


def stage_model(fleet: SimFleet, name: str, version: str) -> None:
    """Upload a package without signing it, as `wardsight ota upload` does: staged in the library."""
    from signing.client import Server, upload_package
    from tests.fleet.ota.test_ota_repository import make_package

    db = fleet.db()
    try:
        token = operators.create_api_token(db.db, f"stage-{name}-{version}", "operator", "test", time.time())
    finally:
        db.close()
    upload_package(
        make_package(fleet.work / "packages", name, version), Server(fleet.url, token, ca_pem=fleet.server.ca_pem)
    )


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    """Ward 7R: five devices on the agent's built-in model; pose_net 1.1 published, 1.2 only staged."""
    fleet = start_sim_fleet(tmp_path_factory.mktemp("rollouts"))
    try:
        for i, name in enumerate(SCRIPTS, start=1):
            add_scripted(fleet, name, f"7R-0{i}")
        publish_model(fleet, MODEL, "1.1", fleet.work / "offline-keys")
        stage_model(fleet, MODEL, "1.2")
        yield fleet
    finally:
        fleet.stop()


def _form(page):
    return page.locator("form", has=page.get_by_role("heading", name="Start a rollout"))


def test_a_staged_version_says_it_needs_signing_and_is_not_started(open_console, sim):
    page = open_console("olga", path="#/models")
    library = page.get_by_role("region", name="Model library")
    expect(library.get_by_role("row").filter(has_text="1.2")).to_contain_text("staged needs signing")
    form = _form(page)
    version = form.get_by_label("Version", exact=True)
    expect(version).to_be_disabled()  # nothing to pick before the model
    form.get_by_label("Model", exact=True).select_option(MODEL)
    expect(version.locator("option")).to_have_text(
        ["Choose a version", "1.2 (staged: not signed yet)", "1.1 (published)"]
    )
    version.select_option("1.2")
    hint = form.locator(".version-hint")
    assert page.evaluate(A11Y_CHECK) == []
    expect(hint).to_be_visible()
    expect(hint).to_have_attribute("aria-live", "polite")
    expect(hint).to_contain_text(f"{MODEL} 1.2 is staged: uploaded but not signed")
    expect(hint.locator("pre.command")).to_have_text(
        f"wardsight ota publish <the {MODEL} 1.2 .wsm file> --keys <the offline keys directory>"
        f" --server {sim.url} --ca <the fleet CA file>"
    )
    form.get_by_role("button", name="Start the rollout").click()
    status = page.locator(".page-status")
    expect(status).to_have_text(re.compile(rf"^{MODEL} 1\.2 is staged: .* needs signing first\.$"))
    assert sim.query("SELECT id FROM rollouts") == []

    assert page.console_errors == []


def _row(table, name):
    return table.locator("tr", has=table.page.get_by_role("link", name=name, exact=True))


def test_a_rollout_from_the_built_in_model_shows_each_device_in_words(open_console, sim):
    page = open_console("olga", path="#/models")
    form = _form(page)
    form.get_by_label("Model", exact=True).select_option(MODEL)
    form.get_by_label("Version", exact=True).select_option("1.1")
    previous = form.get_by_label("Previous version (for roll back, optional)")
    expect(previous.locator("option")).to_have_text(
        ["None: each device's own previous version", f"{BUILT_IN} (runs on 5 devices, not in the library)"]
    )
    previous.select_option(BUILT_IN)
    expect(form.locator(".version-hint")).to_contain_text(f"{BUILT_IN} is the model built into the agent")
    form.get_by_label("Ward (optional)").fill("7R")
    form.get_by_label("Groups (comma separated: a count, or a percent of the selection)").fill("100%")
    form.get_by_label("Stop after more than this many failures").fill("4")
    form.get_by_role("button", name="Start the rollout").click()
    expect(page.locator(".page-status")).to_have_text(re.compile(r"^Rollout ro-[0-9a-f]+ started: pose_net 1\.1 to 5"))
    stored = sim.query("SELECT request FROM rollouts")
    assert len(stored) == 1 and f'"previous_version":"{BUILT_IN}"' in stored[0]["request"]

    rollout = page.locator("article.rollout").first
    devices = rollout.get_by_role("table", name=re.compile("^Devices of rollout"))
    d = sim.devices
    steps = {
        "cam-7r01": ("updated", "active", "healthy on 1.1"),
        "cam-7r02": ("updating", "self-test (on trial)", "on trial, health check 12 of 30 frames"),
        "cam-7r03": ("unchanged", "rolled back",
                     "went back to its previous model: too few frames processed on the new model in time"),
        "cam-7r04": ("unchanged", "rejected", "rejected by the device: this device runs cpu; the package has no build"
                                              " for it; it still runs its previous model"),
        "cam-7r05": ("updating", "verifying (installed)",
                     "installed, waiting for restart; deferred: waiting for the maintenance window"),
    }  # fmt: skip
    for i, (name, (state, progress, why)) in enumerate(steps.items(), start=1):
        row = _row(devices, name)
        expect(row.locator("td").first).to_have_text(f"{name} (7R-0{i}){d[name].device_id}")
        expect(row.locator("td").nth(2)).to_have_text(state, timeout=20000)
        expect(row.locator("td").nth(3)).to_have_text(progress, timeout=20000)
        expect(row.locator("td").nth(4)).to_have_text(why, timeout=20000)
    expect(_row(devices, "cam-7r02").locator(".badge.state-updating")).to_have_text("updating")
    expect(rollout).to_contain_text("2 devices updating")
    expect(rollout.locator(".group-progress").first).to_contain_text("1 active")
    expect(devices).not_to_contain_text("{")  # reasons in words, never raw JSON
    assert page.evaluate(A11Y_CHECK) == []

    # Rolling back sends the devices back to the model built into the agent (no package): accepted and said so.
    rollout.get_by_role("button", name=re.compile("^Roll back rollout")).click()
    expect(page.locator(".page-status")).to_contain_text("roll back done")
    statuses = [r["status"] for r in sim.query("SELECT status FROM rollouts")]
    assert statuses and statuses[0] in ("rolling_back", "rolled_back"), statuses
    assert len(sim.query("SELECT action FROM audit WHERE action = 'rollout.rollback'")) == 1
    expect(devices).to_contain_text(f"back to the built-in model {BUILT_IN}", timeout=20000)
    assert page.console_errors == []
