"""Tablet (768 px) and phone (390 px) layouts, and colours that match the legend (issue 15, items 13 and 14), in
Chromium against a real fleet server and simulated devices:

- no page scrolls sideways at either width (signed in as an admin, so every page and form shows);
- tables become cards at phone width, each cell headed by its column's name, also after a page redraws its rows;
- the zone editor fits the phone, its view keeps its aspect ratio, and a click on a point of the frame gives that
  point at 390 px as it does at desktop width;
- the zone editor's legend shows the very colours the view draws; the fleet page's state counts have the colours of
  the state badges they count.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")

from playwright.sync_api import expect

from tests.browser.simfleet import Readings, SimFleet, start_sim_fleet, wait_for

A11Y_CHECK = (Path(__file__).parent / "a11y_check.js").read_text()
TABLET, PHONE, DESKTOP = 768, 390, 1360
ZONE_KINDS = ("door", "dispenser", "bed", "floor", "room")
# Every zone kind and a privacy region side by side along the top of the frame, above where the simulated people
# walk (their boxes start 150 px down a 720 px frame), so that no person is drawn over the points read back.
ZONES_TOML = "".join(
    f'[[zones]]\nname = "{kind}-1"\nkind = "{kind}"\npolygon = [[{x:.2f}, 0.02], [{x + 0.09:.2f}, 0.02], '
    f"[{x + 0.09:.2f}, 0.14], [{x:.2f}, 0.14]]\n"
    for kind, x in zip(ZONE_KINDS, (0.02, 0.16, 0.30, 0.44, 0.58), strict=True)
)
DEVICE_TOML = (
    'name = "cam-5c01"\n\n[[privacy_regions]]\nname = "bathroom"\n'
    "polygon = [[0.72, 0.02], [0.84, 0.02], [0.84, 0.16], [0.72, 0.16]]\n\n" + ZONES_TOML
)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    """Devices in several states (one revoked, one never heard from), a critical alert, a device with zones."""
    fleet = start_sim_fleet(tmp_path_factory.mktemp("responsive"))
    try:
        cam = fleet.add("cam-5c01", "5C-01", Readings(fps=14.8, cpu_temp_c=54.0))
        cam.config_text = DEVICE_TOML
        fleet.add("cam-5c02", "5C-02", Readings(fps=9.6, accelerator="cpu", accelerator_configured="hailo"))
        fleet.add("cam-5c03", "5C-03", Readings(), approval=True)
        fleet.add("cam-5c04", "5C-04", Readings())
        fleet.set_status("cam-5c04", "revoked")
        fleet.add("cam-5c05", "5C-05", start=False)
        cam.send_event("fall", "fall", "critical", drop=0.42, descent_s=0.8)
        cam.send_event("hand_hygiene", "opportunity", "info", entry=True)
        yield fleet
    finally:
        fleet.devices.pop("cam-5c05", None)  # never started: nothing to stop
        fleet.stop()


def _diagnostics_batch(page, sim: SimFleet) -> str:
    made = page.evaluate(
        """async (body) => {
            const who = await (await fetch("/api/v1/session")).json();
            const resp = await fetch("/api/v1/jobs", {method: "POST", body: JSON.stringify(body),
                headers: {"X-CSRF-Token": who.csrf_token, "Content-Type": "application/json"}});
            return await resp.json();
        }""",
        {
            "kind": "collect_diagnostics",
            "expires_in_s": 600,
            "target": {"device_ids": [sim.devices["cam-5c01"].device_id]},
        },
    )
    return str(made["batch_id"])


def _routes(sim: SimFleet, batch: str) -> list[tuple[str, str]]:
    """Every page of the console, with what shows once its data is in."""
    cam = sim.devices["cam-5c01"]
    return [
        ("#/fleet", "table.fleet td a"),
        ("#/alerts", ".feed li"),
        (f"#/devices/{cam.device_id}", "canvas.chart"),
        ("#/enroll", "#page table td"),
        ("#/models", "#page table td"),
        ("#/jobs", "#page table td a"),
        (f"#/jobs/{batch}", "#page table td"),
        ("#/reports", "#page table td"),
        ("#/users", "#page table td"),
        ("#/audit", "#page table td"),
    ]


# The page's width and, when it is wider than the window, the elements that stick out (for the failure message).
OVERFLOW = """() => {
    const de = document.documentElement, right = de.clientWidth + 0.5;
    const out = [...document.querySelectorAll("body *")].filter(el => {
        const parent = el.parentElement.getBoundingClientRect();
        return el.getClientRects().length && el.getBoundingClientRect().right > right && parent.right <= right;
    }).map(el => `${el.tagName.toLowerCase()}.${el.className} "${(el.textContent || "").trim().slice(0, 40)}"`);
    return {scrollWidth: de.scrollWidth, clientWidth: de.clientWidth, out};
}"""


@pytest.mark.parametrize("width", [TABLET, PHONE])
def test_no_page_scrolls_sideways(open_console, sim, width):
    page = open_console("alice", viewport={"width": width, "height": 900})
    batch = _diagnostics_batch(page, sim)
    for route, ready in _routes(sim, batch):
        page.goto(f"/{route}")
        page.locator("#page-title").wait_for()
        page.locator(ready).first.wait_for()
        found = page.evaluate(OVERFLOW)
        assert found["scrollWidth"] <= found["clientWidth"], (width, route, found)
        assert page.evaluate("() => window.scrollX") == 0
    assert page.evaluate(A11Y_CHECK) == []
    assert page.console_errors == []


def test_the_navigation_fits_a_phone_and_the_keyboard_reaches_it(open_console, sim):
    page = open_console("alice", viewport={"width": PHONE, "height": 800})
    links = page.get_by_role("navigation", name="Console sections").get_by_role("link")
    expect(links).to_have_count(8)
    for link in links.all():
        box = link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE, link.text_content()
        assert box["height"] >= 24  # a target a finger can hit (WCAG 2.5.8)
    # Tab order is reading order: from the skip link through the sections, in the order shown, then the sign-out.
    hrefs = [link.get_attribute("href") for link in links.all()]
    page.get_by_role("link", name="Skip to content").focus()
    reached = []
    for _ in hrefs:
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => document.activeElement.getAttribute('href')"))
        assert page.evaluate("() => document.activeElement.getBoundingClientRect().right") <= PHONE
    assert reached == hrefs
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign out")).to_be_focused()


# What each cell of a row shows before its content (its column's name in a card), as CSS gives it; read in one go, as
# the page redraws its rows every few seconds.
LABELS = """tr => [...tr.cells].map(td => {
    const content = getComputedStyle(td, "::before").content;
    return content === "none" || content === "normal" || content === "" ? "" : JSON.parse(content);
})"""


def test_tables_become_cards_at_phone_width(open_console, sim):
    page = open_console("alice", viewport={"width": PHONE, "height": 900})
    row = page.locator("table.fleet tbody tr", has=page.get_by_role("link", name="cam-5c02", exact=True))
    expect(row.locator("td")).to_have_count(10)
    headers = page.locator("table.fleet thead th").all_text_contents()
    assert headers[:3] == ["Device", "Room", "Status"]
    # (a row just redrawn is labelled by responsive.js a moment later)
    wait_for(lambda: row.evaluate(LABELS) == headers, what="every cell labelled with its column's name")

    # A card: the row is one block, its cells stacked in it, each as wide as the card.
    def measure() -> dict:
        return row.evaluate(
            """tr => ({connected: tr.isConnected, display: getComputedStyle(tr).display,
                      width: tr.getBoundingClientRect().width,
                      cells: [...tr.cells].map(td => { const r = td.getBoundingClientRect();
                        return {x: r.x, y: r.y, bottom: r.bottom, width: r.width}; })})"""
        )

    measured: list[dict] = []  # (the row may be redrawn between finding it and measuring it: measure it again)
    wait_for(lambda: measured.append(measure()) or measured[-1]["connected"], what="the row measured while shown")
    card = measured[-1]
    assert card["display"] == "block"
    cells = card["cells"]
    assert all(b["y"] >= a["bottom"] - 1 for a, b in itertools.pairwise(cells))
    assert all(abs(c["x"] - cells[0]["x"]) < 1 and c["width"] > card["width"] * 0.8 for c in cells)
    # Still a table to assistive technology.
    expect(page.get_by_role("table", name="Devices grouped by site and ward")).to_be_visible()
    expect(page.get_by_role("columnheader", name="Room")).to_have_count(1)

    # The page redraws its rows every few seconds: the new cells are labelled too.
    first = row.locator("td").first.element_handle()
    wait_for(lambda: not first.evaluate("td => td.isConnected"), what="the fleet table to redraw")
    wait_for(lambda: row.evaluate(LABELS) == headers, what="the redrawn cells labelled")

    # Other pages' tables too (the users table, with its controls in cards).
    page.goto("/#/users")
    user = page.locator("#page table tbody tr", has_text="victor")
    expect(user.locator("td").first).to_have_text("victor")
    assert user.evaluate(LABELS)[:2] == ["User", "Role"]

    # At desktop width they are tables again.
    page.set_viewport_size({"width": DESKTOP, "height": 900})
    assert user.evaluate("tr => getComputedStyle(tr).display") == "table-row"
    assert set(user.evaluate(LABELS)) == {""}


def _frame_point(canvas, u: float, v: float, aspect: float = 16 / 9) -> tuple[float, float]:
    """Where (u, v) of the frame is in the canvas (CSS pixels): the frame letterboxed 12 px in from the sides."""
    box = canvas.bounding_box()
    w, h = box["width"], box["height"]
    margin = min(12, w / 8, h / 8)
    bw, bh = w - 2 * margin, (w - 2 * margin) / aspect
    if bh > h - 2 * margin:
        bh, bw = h - 2 * margin, (h - 2 * margin) * aspect
    return (w - bw) / 2 + u * bw, (h - bh) / 2 + v * bh


def _click(canvas, x: float, y: float) -> None:
    """A click x, y CSS pixels into the canvas, placed from where the canvas is at that moment (the page above the
    editor refreshes, see test_zone_editor.click_at)."""
    canvas.evaluate(
        "(c, [x, y]) => { const r = c.getBoundingClientRect();"
        " c.dispatchEvent(new MouseEvent('click', {bubbles: true, clientX: r.left + x, clientY: r.top + y})); }",
        [x, y],
    )


AIMED = [(0.25, 0.4), (0.8, 0.35), (0.6, 0.9)]  # frame points the test clicks
AIMED_FLAT = [c for point in AIMED for c in point]
POINT = re.compile(r"point (\d+) at \(([\d.]+), ([\d.]+)\)")


def _clicked_points(page, canvas) -> list[float]:
    """Start a shape, click three frame points and the black margin left of the frame; what the editor took."""
    page.get_by_label("Shape name").fill("probe")
    page.get_by_role("button", name="Start a new shape").click()
    taken = []
    for n, (u, v) in enumerate(AIMED, start=1):
        _click(canvas, *_frame_point(canvas, u, v))
        expect(page.locator(".shape-controls")).to_contain_text(f"point {n} at")
        taken.append(POINT.search(page.locator(".shape-controls").inner_text()))
    _click(canvas, 2, _frame_point(canvas, 0, 0.5)[1])  # on the black left of the frame: its left edge
    expect(page.locator(".shape-controls")).to_contain_text("point 4 at (0, ")
    page.get_by_role("button", name="Cancel shape").click()
    return [float(c) for m in taken if m for c in (m.group(2), m.group(3))]  # x1, y1, x2, y2, ...


def test_the_zone_editor_fits_a_phone_and_maps_clicks_as_at_desktop(open_console, sim):
    cam = sim.devices["cam-5c01"]
    page = open_console("alice", path=f"#/devices/{cam.device_id}")
    expect(page.get_by_role("list", name="Zones and privacy regions")).to_contain_text("Zone door-1", timeout=20000)
    canvas = page.locator("canvas.scene")
    # A mouse event's position is in whole pixels: a point is within a pixel and a half of the one aimed at (the
    # frame is at most the canvas's height less its margins high, and wider than high).
    assert _clicked_points(page, canvas) == pytest.approx(AIMED_FLAT, abs=1.5 / (canvas.bounding_box()["height"] - 24))

    page.set_viewport_size({"width": PHONE, "height": 800})
    editor = page.locator(".zone-editor")
    box = canvas.bounding_box()
    wrap = page.locator(".scene-wrap").bounding_box()
    assert box["width"] == pytest.approx(wrap["width"], abs=1)  # the view takes its column's width...
    assert box["width"] / box["height"] == pytest.approx(16 / 9, abs=0.02)  # ... at its aspect ratio
    assert editor.bounding_box()["x"] + editor.bounding_box()["width"] <= PHONE
    # The drawing follows the size it is shown at (not a desktop-sized drawing squeezed).
    wait_for(lambda: canvas.evaluate("c => c.width === Math.round(c.clientWidth * devicePixelRatio)"), what="redraw")
    assert _clicked_points(page, canvas) == pytest.approx(AIMED_FLAT, abs=1.5 / (box["height"] - 24))
    assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert page.console_errors == []


# The canvas's colour at (x, y) CSS pixels, and the computed colours of the legend's swatches, as [r, g, b].
PIXEL = """(c, [x, y]) => { const r = devicePixelRatio;
    return [...c.getContext("2d").getImageData(Math.floor(x * r), Math.floor(y * r), 1, 1).data.slice(0, 3)]; }"""
SWATCHES = """ul => Object.fromEntries([...ul.querySelectorAll("li")].map(li => {
    const swatch = li.querySelector(".swatch"), s = getComputedStyle(swatch);
    const rgb = c => (c.match(/\\d+/g) || []).slice(0, 3).map(Number);
    return [swatch.dataset.kind, {fill: rgb(s.backgroundColor), edge: rgb(s.borderLeftColor),
                                  text: li.textContent.trim()}];
}))"""
# How many pixels of each colour ("r,g,b") the scene canvas has.
COUNT_OF = """() => {
    const c = document.querySelector("canvas.scene"), n = new Map();
    const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < data.length; i += 4) {
        const k = `${data[i]},${data[i + 1]},${data[i + 2]}`;
        n.set(k, (n.get(k) || 0) + 1);
    }
    return Object.fromEntries(n);
}"""


def test_the_legend_shows_the_colours_the_view_draws(open_console, sim):
    cam = sim.devices["cam-5c01"]
    page = open_console("olga", path=f"#/devices/{cam.device_id}")
    expect(page.get_by_role("list", name="Zones and privacy regions")).to_contain_text("Zone room-1", timeout=20000)
    canvas = page.locator("canvas.scene")
    page.get_by_label("Shape name").fill("probe")
    page.get_by_role("button", name="Start a new shape").click()
    for u, v in ((0.9, 0.12), (0.97, 0.12)):
        _click(canvas, *_frame_point(canvas, u, v))
    expect(page.locator(".shape-controls")).to_contain_text("point 2 at")
    expect(page.locator(".scene-wrap")).to_contain_text("2 people in view")
    legend = page.get_by_role("list", name="Colours in the view").evaluate(SWATCHES)

    def pixel(u: float, v: float) -> list[int]:
        return canvas.evaluate(PIXEL, list(_frame_point(canvas, u, v)))

    # Each zone kind, at one of its corners (drawn as a small square in the zone's colour).
    for kind, x in zip(ZONE_KINDS, (0.02, 0.16, 0.30, 0.44, 0.58), strict=True):
        assert legend[kind]["text"].startswith(kind), legend[kind]
        assert pixel(x + 0.09, 0.14) == legend[kind]["fill"], kind
    # A privacy region: its fill inside, its outline at its corner.
    assert pixel(0.78, 0.13) == legend["privacy"]["fill"]
    assert pixel(0.84, 0.16) == legend["privacy"]["edge"]
    # The shape being drawn, at its second point.
    assert pixel(0.97, 0.12) == legend["draft"]["fill"]
    # People: their boxes and skeletons are drawn in the legend's colours.
    drawn = page.evaluate(COUNT_OF)
    for key in ("box", "skeleton"):
        assert drawn.get(",".join(map(str, legend[key]["fill"])), 0) >= 20, (key, legend[key])
    page.get_by_role("button", name="Cancel shape").click()
    assert page.console_errors == []


def test_state_counts_have_the_colours_of_the_state_badges(open_console, sim):
    page = open_console("victor")
    counts = page.get_by_role("list", name="Device counts")
    for state in ("revoked", "never_seen", "pending", "degraded", "online"):
        expect(counts.locator(f"li.count-{state}")).to_have_count(1, timeout=20000)
    pairs = page.evaluate(
        """() => [...document.querySelectorAll(".counts li[class*='count-']:not(.count-total)")].map(li => {
            const state = [...li.classList].find(c => c.startsWith("count-")).slice(6);
            const badge = document.querySelector(`table.fleet .badge.state-${state}`);
            return [state, getComputedStyle(li).borderLeftColor, badge && getComputedStyle(badge).color];
        })"""
    )
    shown = {state: (bar, badge) for state, bar, badge in pairs if badge}
    assert {"revoked", "never_seen", "pending", "degraded", "online"} <= set(shown), pairs
    for state, (bar, badge) in shown.items():
        assert bar == badge, state
    # A count without a state (the total) is not given one of their colours.
    assert page.locator(".counts li.count-total").evaluate("li => getComputedStyle(li).borderLeftColor") not in {
        badge for _, badge in shown.values()
    }
