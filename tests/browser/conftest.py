"""Fixtures for the console's browser tests: one TLS fleet server with simulated devices per test module,
Debian's Chromium driven by Playwright (no browser download), a fresh browser context per test.

Module scope, not session: Playwright's sync API keeps an event loop running on the main thread while
it is open, which would stop the async tests in later modules.

The tests are skipped, with the reason, only when Chromium (``/usr/bin/chromium``, which ``.ci/run``
installs) or the Playwright package (the ``dev`` extra) is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.browser.simfleet import PASSWORD, Readings, SimFleet, start_sim_fleet

CHROMIUM = Path(os.environ.get("WARDSIGHT_CHROMIUM", "/usr/bin/chromium"))
HERE = Path(__file__).resolve().parent


def _missing() -> str | None:
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        return f"Chromium is not installed ({CHROMIUM}); .ci/run installs Debian's chromium package"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _missing()
    if reason is None:
        return
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents and "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    """The fleet: st-marys, wards 3B and 4A, five devices in several states."""
    fleet = start_sim_fleet(tmp_path_factory.mktemp("console"))
    try:
        fleet.add("cam-3b12", "3B-12", Readings(fps=14.8, cpu_temp_c=54.0))
        fleet.add(
            "cam-3b14", "3B-14", Readings(fps=9.6, cpu_temp_c=61.0, accelerator="cpu", accelerator_configured="hailo")
        )
        fleet.add("cam-3b15", "3B-15", Readings(fps=15.0, cpu_temp_c=83.5))
        fleet.add(
            "cam-4a02", "4A-02", Readings(fps=14.9, cpu_temp_c=49.0, accelerator="hailo", accelerator_temp_c=51.0)
        )
        fleet.add("cam-4a03", "4A-03", Readings(fps=14.2, cpu_temp_c=52.0), approval=True)
        fleet.add("cam-4a05", "4A-05", Readings(fps=14.0, cpu_temp_c=50.0))
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")), args=args
        )
        yield chromium
        chromium.close()


@pytest.fixture
def open_console(browser, sim: SimFleet) -> Iterator[Callable[..., object]]:
    """open_console(user) -> a Playwright page signed in as that user (alice admin, olga operator, victor viewer)."""
    contexts = []

    def open_as(username: str, *, path: str = "#/fleet", accept_downloads: bool = False, viewport=None):
        context = browser.new_context(ignore_https_errors=True, base_url=sim.url, accept_downloads=accept_downloads,
                                      viewport=viewport or {"width": 1360, "height": 900})  # fmt: skip
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15000)
        page.on("dialog", lambda dialog: dialog.accept())  # confirmations (revoke, abort) are answered yes
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "console",
            lambda msg: (
                errors.append(msg.text) if msg.type == "error" and "Content Security Policy" in msg.text else None
            ),
        )
        page.console_errors = errors  # type: ignore[attr-defined]
        page.goto(f"/{path}")
        page.get_by_label("User name").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Sign out").wait_for()
        return page

    yield open_as
    for context in contexts:
        context.close()


@pytest.fixture
def pages(browser, sim: SimFleet) -> Iterator[list]:
    """Pages a test opens itself (e.g. with ``simfleet.sign_in``), appended here: their contexts are closed after it."""
    opened: list = []
    yield opened
    for page in opened:
        page.context.close()
