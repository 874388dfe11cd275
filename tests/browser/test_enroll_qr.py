"""The enrollment QR code is shown whole (issue 15, item 10): a screenshot of the code on the console's
enrollment page, at desktop and phone widths, decodes with a real QR decoder back into the exact bundle the page
offers as a file, also when the bundle carries the OTA repository's root (the largest bundle the console makes:
about 2.4 kB, a version-36 code at error correction L).

The decoder is ZXing's (the ``zxing-cpp`` wheel, in the ``dev`` extra), the library many phone scanners are built
on. OpenCV's detectors (a dependency already) were tried first: ``QRCodeDetector`` decoded none of the
version-36 screenshots, not even at 4 px a module, and ``QRCodeDetectorAruco`` none below about 4 device pixels a
module, while ZXing read every one down to 2 px a module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")
pytest.importorskip("zxingcpp", reason="the zxing-cpp package is not installed (pip install -e '.[dev]')")

import cv2
import zxingcpp
from playwright.sync_api import expect

from fleet.accounts import service as operators
from tests.browser.simfleet import PASSWORD, SimFleet, start_sim_fleet

DESKTOP = {"width": 1360, "height": 900}
PHONE = {"width": 390, "height": 844}  # a 390 px wide phone; its screen has 3 device pixels a CSS pixel


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    """A fleet with the three accounts and no devices (the QR code needs none)."""
    fleet = start_sim_fleet(tmp_path_factory.mktemp("enroll-qr"))
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def signed_in(browser, sim: SimFleet) -> Iterator[object]:
    """signed_in(viewport, scale) -> the enrollment page signed in as the operator olga, in a context of that
    viewport and device scale factor (conftest's open_console has no scale factor, which a phone needs)."""
    contexts = []

    def open_at(viewport: dict[str, int], scale: float = 1):
        context = browser.new_context(ignore_https_errors=True, base_url=sim.url, accept_downloads=True,
                                      viewport=viewport, device_scale_factor=scale)  # fmt: skip
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
        page.console_errors = errors  # type: ignore[attr-defined]
        page.goto("/#/enroll")
        page.get_by_label("User name").fill("olga")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Create token").wait_for()
        return page

    yield open_at
    for context in contexts:
        context.close()


def decode(png: bytes) -> str:
    """The text of the one QR code in a PNG screenshot, by ZXing ("" when it finds none)."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None, "the screenshot is not an image"
    codes = [code for code in zxingcpp.read_barcodes(image) if "QR" in str(code.format)]
    assert len(codes) <= 1, "more than one QR code in the screenshot"
    return codes[0].text if codes else ""


def create_token_and_read_the_qr(page, tmp_path: Path, room: str) -> tuple[dict, str]:
    """Create a token for ``room``; return the downloaded bundle file and the text decoded from the QR code."""
    page.get_by_label("Room", exact=True).fill(room)
    page.get_by_role("button", name="Create token").click()
    qr = page.get_by_role("img", name="QR code of the enrollment bundle")
    expect(qr).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the bundle file").click()
    path = tmp_path / f"{room}.json"
    download.value.save_as(path)
    bundle = json.loads(path.read_text())

    # Whole: the code's box lies inside its container and the viewport, and it is drawn at its viewBox's aspect.
    box, outer = qr.bounding_box(), page.locator(".qr-box").bounding_box()
    width = page.viewport_size["width"]
    assert box is not None and outer is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= min(width, outer["x"] + outer["width"]) + 0.5
    assert abs(box["width"] - box["height"]) <= 1
    modules = qr.evaluate("n => n.viewBox.baseVal.width")
    # 4 px a module, or as wide as its container when that is narrower (a phone)
    assert box["width"] >= min(modules * 4, outer["width"]) - 2, "the code is drawn smaller than it could be"
    qr.scroll_into_view_if_needed()
    text = decode(qr.screenshot())
    return bundle, text


@pytest.mark.parametrize(("viewport", "scale"), [(DESKTOP, 1), (PHONE, 3)], ids=["desktop", "phone"])
def test_the_qr_code_is_whole_and_decodes_into_the_bundle(signed_in, sim, tmp_path, viewport, scale):
    page = signed_in(viewport, scale)
    bundle, text = create_token_and_read_the_qr(page, tmp_path, f"QR-{viewport['width']}")
    assert bundle["server_url"] == sim.url and bundle["ca_pem"] == sim.server.ca_pem and "tuf_root" not in bundle
    assert text, "no QR code could be decoded from the screenshot"
    assert json.loads(text) == bundle  # the exact bundle: server, token, CA
    assert text == json.dumps(bundle, separators=(",", ":"))  # as compact as the page made it
    assert page.console_errors == []  # type: ignore[attr-defined]  # no script or CSP error


def test_a_bundle_with_the_ota_root_still_decodes_at_both_widths(signed_in, sim, tmp_path):
    from signing.client import Server
    from signing.keys import generate_keys
    from signing.metadata import init_repository

    db = sim.db()
    try:
        api_token = operators.create_api_token(db.db, "qr-ota-init", "admin", "test", time.time())
    finally:
        db.close()
    keys = tmp_path / "keys"
    generate_keys(keys)
    init_repository(keys, Server(sim.url, api_token, ca_pem=sim.server.ca_pem))
    for viewport, scale in ((DESKTOP, 1), (PHONE, 3)):
        page = signed_in(viewport, scale)
        bundle, text = create_token_and_read_the_qr(page, tmp_path, f"OTA-{viewport['width']}")
        assert bundle["tuf_root"].startswith("{") and len(json.dumps(bundle, separators=(",", ":"))) > 2000
        assert text, f"no QR code could be decoded at {viewport['width']} px"
        assert json.loads(text) == bundle
