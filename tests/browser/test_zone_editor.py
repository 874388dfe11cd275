"""The zone editor changes only zones and privacy regions (issue 15, item 3), in Chromium against a real fleet server
and a simulated device whose device.toml has many other settings:

- it starts from the zones and privacy regions the device reports (its live view's layout), not from a blank file;
- a click on the black bar beside the frame (a 4:3 camera in the 16:9 view) puts the point on the frame's edge;
- before saving it lists what changes (added, removed; how the blacked-out area changes) and saves only on an
  explicit confirmation, as a job that carries only the zones and privacy-region changes; the device merges them
  into its own file (the firmware's code), where every other setting stays as it was;
- a self-crossing outline is refused in the editor with the reason.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")

from playwright.sync_api import expect

from tests.browser.simfleet import Readings, SimFleet, start_sim_fleet
from wardsight.device_config import DeviceConfig

A11Y_CHECK = (Path(__file__).parent / "a11y_check.js").read_text()
DEVICE_TOML = """\
# ward 6D, bed 2: commissioned by hand
name = "cam-6d02"
server_url = "https://fleet.example.org"   # the hospital's fleet
threads = 3
min_person_score = 0.25
heartbeat_seconds = 15.0

[source]
kind = "stream"
url = "rtsp://viewer:s3cret@10.0.6.42/stream1"
stall_seconds = 8.0

[occupancy]
stable_seconds = 2.5
zones = ["bed-2"]
patient_zone = "bed-2"
max_people = 4

[fall]
window_seconds = 3.0

[bed_exit]
enabled = true
bed_zone = "bed-2"

# privacy first: the bathroom door is never seen
[[privacy_regions]]
name = "bathroom door (left)"
polygon = [[0.0, 0.0], [0.2, 0.0], [0.2, 0.6], [0.0, 0.6]]

[[zones]]
name = "bed-2"
kind = "bed"
polygon = [[0.3, 0.4], [0.7, 0.4], [0.7, 0.95], [0.3, 0.95]]
min_score = 0.45
keypoints = ["left_hip", "right_hip"]

[[zones]]
name = "door"   # the corridor door
kind = "door"
polygon = [[0.8, 0.1], [0.95, 0.1], [0.95, 0.8], [0.8, 0.8]]

[mask]
enabled = false
grace_seconds = 45.0
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    """One device with a 4:3 camera and the file above."""
    fleet = start_sim_fleet(tmp_path_factory.mktemp("zones"))
    try:
        device = fleet.add("cam-6d02", "6D-02", Readings(fps=14.9), ward="6D")
        device.frame_size = (960, 720)
        device.config_text = DEVICE_TOML
        yield fleet
    finally:
        fleet.stop()


def frame_box(canvas) -> dict[str, float]:
    """Where the 960x720 frame is drawn in the canvas (as fleet/static/canvas.js frameBox: 12 px margin)."""
    box = canvas.bounding_box()
    w, h = box["width"], box["height"]
    margin = min(12, w / 8, h / 8)
    bh = h - 2 * margin
    bw = bh * 4 / 3
    return {"x0": (w - bw) / 2, "y0": (h - bh) / 2, "bw": bw, "bh": bh}


def click_at(canvas, x: float, y: float) -> None:
    """A click (x, y) CSS pixels into the canvas. The event is placed in the page from the canvas's position at that
    very moment: the console refreshes what is above the editor every second, and a real mouse click positioned a
    moment earlier could land a few pixels off."""
    canvas.evaluate(
        "(c, [x, y]) => { const r = c.getBoundingClientRect();"
        " c.dispatchEvent(new MouseEvent('click', {bubbles: true,"
        " clientX: Math.round(r.left + x), clientY: Math.round(r.top + y)})); }",
        [x, y],
    )


def click_frame(canvas, u: float, v: float) -> None:
    """Click the frame at (u, v), frame-relative."""
    fb = frame_box(canvas)
    click_at(canvas, fb["x0"] + u * fb["bw"], fb["y0"] + v * fb["bh"])


def without_shapes(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in ("zones", "privacy_regions")}


def test_the_editor_starts_from_the_device_and_saves_only_zones(open_console, sim):
    cam = sim.devices["cam-6d02"]
    page = open_console("olga", path=f"#/devices/{cam.device_id}")
    shapes = page.get_by_role("list", name="Zones and privacy regions")
    expect(shapes).to_contain_text("Zone bed-2 (bed), 4 points", timeout=20000)
    expect(shapes).to_contain_text("Zone door (door), 4 points")
    expect(shapes).to_contain_text("Privacy region 1 (its name stays on the device), 4 points")
    expect(page.locator(".layout-note")).to_contain_text("The device runs with 2 zone(s) and 1 privacy region(s)")
    expect(page.get_by_role("button", name="Review changes")).to_be_disabled()  # nothing changed yet

    # A new zone whose first point is clicked on the black bar left of the 4:3 frame: it lands on the left edge.
    page.get_by_label("Shape name").fill("sink")
    page.get_by_label("Zone kind").select_option("dispenser")
    page.get_by_role("button", name="Start a new shape").click()
    canvas = page.locator("canvas.scene")
    fb = frame_box(canvas)
    assert fb["x0"] > 40  # a real black bar beside the frame
    click_at(canvas, fb["x0"] / 2, fb["y0"] + 0.7 * fb["bh"])
    expect(page.locator(".shape-controls")).to_contain_text(
        re.compile(r"point 1 at \(0, 0\.(7|69\d)\), on the frame's left edge")
    )
    for u, v in ((0.15, 0.7), (0.15, 0.9), (0.0, 0.9)):
        click_frame(canvas, u, v)
    page.get_by_role("button", name="Finish shape").click()
    expect(shapes).to_contain_text("Zone sink (dispenser), 4 points (not saved yet)")
    # ... and the corridor door is no longer watched.
    page.get_by_role("button", name="Delete Zone door (door)").click()

    # The review lists exactly the changes; nothing is sent until it is confirmed.
    page.get_by_role("button", name="Review changes").click()
    changes = page.get_by_role("list", name="Changes to save")
    expect(changes.get_by_role("listitem")).to_have_count(2)
    expect(changes.locator("[data-change='added']")).to_contain_text("Add zone sink (dispenser): 4 points")
    expect(changes.locator("[data-change='removed']")).to_contain_text("Remove zone door (door)")
    expect(page.locator(".privacy-change")).to_have_attribute("data-privacy", "same")
    expect(page.locator(".privacy-change")).to_contain_text("stays 12.0% of the frame")
    assert sim.query("SELECT * FROM job_batches") == []
    assert page.evaluate(A11Y_CHECK) == [] and page.console_errors == []
    page.get_by_role("button", name="Confirm and save").click()
    expect(page.locator(".job-line[data-state='succeeded']")).to_be_visible(timeout=20000)

    # The job carried the changes only: no file, no other setting.
    [batch] = sim.query("SELECT kind, params, config FROM job_batches")
    assert (batch["kind"], json.loads(batch["params"])) == ("push_config", {"merge": "zones"})
    edit = json.loads(batch["config"])
    assert edit["zones"]["remove"] == ["door"] and edit["zones"]["change"] == []
    assert edit["privacy_regions"] == {"add": [], "remove": []}
    [sink] = edit["zones"]["add"]
    assert (sink["name"], sink["kind"]) == ("sink", "dispenser")
    clicked = [[0, 0.7], [0.15, 0.7], [0.15, 0.9], [0, 0.9]]
    assert all(p == pytest.approx(q, abs=0.002) for p, q in zip(sink["polygon"], clicked, strict=True))
    assert sink["polygon"][0][0] == 0 and sink["polygon"][3][0] == 0  # on the left edge exactly

    # On the device: the zones changed, every other setting (and the untouched tables' text) is as it was.
    before, after = tomllib.loads(DEVICE_TOML), tomllib.loads(cam.config_text or "")
    assert without_shapes(after) == without_shapes(before)
    assert after["privacy_regions"] == before["privacy_regions"]
    assert [z["name"] for z in after["zones"]] == ["bed-2", "sink"]
    assert after["zones"][0] == before["zones"][0]  # its keypoints and min_score too
    assert DEVICE_TOML.split("[[zones]]")[0] in (cam.config_text or "")  # comments and all, byte for byte
    DeviceConfig.model_validate(after)

    # The editor then shows what the device reports: the new zone is the device's now.
    expect(shapes).to_contain_text("Zone sink (dispenser), 4 points", timeout=20000)
    expect(shapes).not_to_contain_text("not saved yet", timeout=20000)
    expect(shapes).not_to_contain_text("Zone door")


def test_a_self_crossing_outline_is_refused_with_the_reason(open_console, sim):
    cam = sim.devices["cam-6d02"]
    page = open_console("olga", path=f"#/devices/{cam.device_id}")
    shapes = page.get_by_role("list", name="Zones and privacy regions")
    expect(shapes).to_contain_text("Zone bed-2 (bed)", timeout=20000)
    page.get_by_label("Shape type").select_option("privacy")
    page.get_by_label("Shape name").fill("window")
    page.get_by_role("button", name="Start a new shape").click()
    canvas = page.locator("canvas.scene")
    for u, v in ((0.5, 0.1), (0.7, 0.3), (0.7, 0.1), (0.5, 0.3)):  # a bow tie
        click_frame(canvas, u, v)
    page.get_by_role("button", name="Finish shape").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Shape window cannot be used: its outline crosses itself")
    expect(alert).to_contain_text("the edge from point 1 to point 2 crosses the edge from point 3 to point 4")
    expect(shapes).not_to_contain_text("window")
    expect(page.get_by_role("button", name="Review changes")).to_be_disabled()

    # Put in order around the shape, it is taken.
    for _ in range(3):
        page.get_by_role("button", name="Undo last point").click()
    for u, v in ((0.7, 0.1), (0.7, 0.3), (0.5, 0.3)):
        click_frame(canvas, u, v)
    page.get_by_role("button", name="Finish shape").click()
    expect(alert).to_be_hidden()
    expect(shapes).to_contain_text("Privacy region window, 4 points (not saved yet)")
    page.get_by_role("button", name="Review changes").click()
    expect(page.locator(".privacy-change")).to_have_attribute("data-privacy", "grows")
    page.get_by_role("button", name="Back to editing").click()
    page.get_by_role("button", name="Discard changes").click()
    expect(shapes).not_to_contain_text("window")
    assert sim.query("SELECT COUNT(*) AS n FROM job_batches")[0]["n"] == 1  # only the first test's
