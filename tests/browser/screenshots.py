"""Screenshots of the console's main pages for docs/console/, taken against a simulated fleet.

Run by hand from the repository root (Debian's Chromium and the dev extra installed):

    python -m tests.browser.screenshots            # writes docs/console/*.png
    python -m tests.browser.screenshots --out DIR

Every page at desktop width (1360 px: ``fleet.png``, ...), and the main ones at tablet (768 px: ``tablet-*.png``)
and phone (390 px: ``phone-*.png``) widths, where tables are cards (docs/console/README.md lists them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser.simfleet import PASSWORD, Readings, draw_shape, publish_model, start_sim_fleet, wait_for

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    ("fleet", "#/fleet", "Fleet"),
    ("alerts", "#/alerts?room=3B-12", "Alerts"),
    ("device", None, "Device"),
    ("enrollment", "#/enroll", "Enrollment"),
    ("models", "#/models", "Models and rollouts"),
    ("jobs", None, "Job batch"),
    ("reports", "#/reports", "Reports"),
    ("users", "#/users", "Users and roles"),
    ("audit", "#/audit", "Audit log"),
]
# The narrow widths: (file name prefix, width, [(page, route, what to shoot: "page" or a CSS selector)]).
NARROW = [
    ("tablet", 768, [("fleet", "#/fleet", "page"), ("device", None, "page")]),
    ("phone", 390, [("fleet", "#/fleet", "page"), ("alerts", "#/alerts?room=3B-12", "page"),
                    ("zones", None, ".zone-editor")]),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    parser.add_argument("--chromium", default=os.environ.get("WARDSIGHT_CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="wardsight-shots-"))
    sim = start_sim_fleet(work)
    try:
        stage(sim, work)
        shoot(sim, args.out, args.chromium)
    finally:
        sim.stop()
        shutil.rmtree(work, ignore_errors=True)


def stage(sim, work: Path) -> None:
    """A believable ward: devices in several states, alerts, a zone config job, a rollout in progress."""
    cam = sim.add("cam-3b12", "3B-12", Readings(fps=14.8, cpu_temp_c=54.0))
    sim.add("cam-3b14", "3B-14", Readings(fps=9.6, cpu_temp_c=61.0, accelerator="cpu", accelerator_configured="hailo"))
    sim.add("cam-3b15", "3B-15", Readings(fps=15.0, cpu_temp_c=83.5))
    sim.add("cam-4a02", "4A-02", Readings(fps=14.9, cpu_temp_c=49.0, accelerator="hailo", accelerator_temp_c=51.0))
    sim.add("cam-4a03", "4A-03", Readings(fps=14.2, cpu_temp_c=52.0), approval=True)
    gone = sim.add("cam-4a05", "4A-05", Readings(fps=14.0, cpu_temp_c=50.0))
    time.sleep(3)
    gone.silent.set()
    for kind, severity in (("opportunity", "info"), ("opportunity", "info"), ("missed", "warning")):
        sim.devices["cam-3b15"].send_event("hand_hygiene", kind, severity, entry=True)
    sim.devices["cam-3b14"].send_event("hand_hygiene", "opportunity", "info", entry=True)
    cam.send_event("occupancy", "count_changed", "info", count=2, previous=1)
    cam.send_event("bed_exit", "bed_exit", "warning")
    cam.send_event("fall", "fall", "critical", drop=0.42, descent_s=0.8)
    try:
        publish_model(sim, "pose_net", "1.1", work / "offline-keys")
    except Exception as exc:  # the OTA repository may not be wired: the page shows its empty state
        print(f"no model published: {exc}")
    time.sleep(8)  # cam-4a05 goes offline, charts get a few samples


def shoot(sim, out: Path, chromium: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        context = browser.new_context(
            ignore_https_errors=True, base_url=sim.url, viewport={"width": 1360, "height": 900}
        )
        page = context.new_page()
        page.goto("/")
        page.get_by_label("User name").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Sign out").wait_for()
        cam = sim.devices["cam-3b12"]
        # A zone drawn with the keyboard-free mouse path and saved as a configuration job.
        page.goto(f"/#/devices/{cam.device_id}")
        page.get_by_role("heading", name="Zones and privacy regions").wait_for()
        page.get_by_label("Shape name").fill("door")
        page.get_by_label("Zone kind").select_option("door")
        draw_shape(page, ((0.05, 0.15), (0.22, 0.15), (0.22, 0.95), (0.05, 0.95)))
        page.get_by_label("Shape type").select_option("privacy")
        page.get_by_label("Shape name").fill("bathroom")
        draw_shape(page, ((0.75, 0.05), (0.98, 0.05), (0.98, 0.6), (0.75, 0.6)))
        page.get_by_role("button", name="Review changes").click()
        page.get_by_role("button", name="Confirm and save").click()
        page.locator(".job-line[data-state='succeeded']").wait_for()
        batch = page.locator(".job-line a").first.text_content()
        wait_for(lambda: page.locator("canvas.chart").count() == 4, what="charts")
        try:
            page.goto("/#/models")
            choose(page.get_by_label("Model", exact=True), "pose_net")
            choose(page.get_by_label("Version", exact=True), "1.1")
            choose(page.get_by_label("Previous version (for roll back, optional)"), "1.0")
            page.get_by_label("Groups (comma separated: a count, or a percent of the selection)").fill("1, 50%, 100%")
            page.get_by_role("button", name="Start the rollout").click()
            page.locator(".rollout").first.wait_for(timeout=5000)
            time.sleep(6)
        except Exception as exc:
            print(f"no rollout: {exc}")
        for name, route, title in PAGES:
            if name == "device":
                route = f"#/devices/{cam.device_id}"
            if name == "jobs":
                route = f"#/jobs/{batch}"
            page.goto(f"/{route}")
            page.locator("#page-title").wait_for()
            time.sleep(1.5)  # live data, charts and the scene settle
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            print(f"wrote {out / f'{name}.png'} ({title})")
        shoot_narrow(page, out, f"#/devices/{cam.device_id}")
        browser.close()


def choose(control, value: str) -> None:
    """Pick ``value`` in a select (the library's models and versions) or type it into a text field."""
    if control.evaluate("el => el.tagName") == "SELECT":
        control.select_option(value)
    else:
        control.fill(value)


def shoot_narrow(page, out: Path, device_route: str) -> None:
    """The main pages at tablet and phone widths (the same signed-in page, its window narrowed)."""
    for prefix, width, shots in NARROW:
        page.set_viewport_size({"width": width, "height": 900})
        for name, route, what in shots:
            page.goto(f"/{route or device_route}")
            page.locator("#page-title").wait_for()
            time.sleep(1.5)  # live data, charts and the scene settle
            path = out / f"{prefix}-{name}.png"
            if what == "page":
                page.screenshot(path=str(path), full_page=True)
            else:
                page.locator(what).screenshot(path=str(path))
            print(f"wrote {path} ({width} px)")


if __name__ == "__main__":
    main()
