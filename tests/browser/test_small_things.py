"""Small things a ward notices (issue 15, item 14): a refused input says the accepted format, next to the field; an
error goes away once a later action works; a role change is asked for first; audit details read as "key: value"
with dates, not JSON and epoch numbers; a viewer's console never asks for what a viewer may not see (no 403s)."""

from __future__ import annotations

import re
import time

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")

from playwright.sync_api import expect

from fleet.audit import log as audit
from tests.browser.simfleet import sign_in, wait_for

PAGES = ["#/fleet", "#/alerts", "#/enroll", "#/models", "#/jobs", "#/reports", "#/users", "#/audit"]


def open_as(browser, sim, pages, user: str, path: str):
    page = sign_in(browser, sim, user, path=path)
    pages.append(page)
    return page


def role_of(sim, username: str) -> str:
    return sim.query("SELECT role FROM operators WHERE username = ?", [username])[0]["role"]


def test_a_refused_name_says_the_format_by_the_field_and_a_later_success_clears_it(browser, sim, pages):
    page = open_as(browser, sim, pages, "alice", "#/users")
    status = page.locator(".page-status")
    name = page.get_by_role("textbox", name="User name")
    name.fill("Dr Smith")  # the browser's own pattern check would stop this: the server's answer is what we test
    name.evaluate("el => el.removeAttribute('pattern')")
    page.get_by_label("Initial password (at least 12 characters)").fill("correct horse battery")
    page.get_by_role("button", name="Add user").click()
    expect(status).to_contain_text("User not added: invalid value for 'username': use 1 to 64 characters:")
    expect(status).to_contain_text("lowercase letters, digits, '_', '.' or '-', starting with a lowercase letter")
    expect(status).to_have_class(re.compile(r"\bstatus-error\b"))
    expect(name).to_have_attribute("aria-invalid", "true")
    hint = page.locator(f"#{name.get_attribute('aria-describedby')}")
    expect(hint).to_have_text(re.compile(r"^use 1 to 64 characters: lowercase letters"))
    name.fill("dr.smith")  # editing the field clears its mark
    expect(name).not_to_have_attribute("aria-invalid", "true")
    expect(hint).to_have_count(0)

    # A refused token name, then a token that is created: the error does not stay.
    page.get_by_label("Token name").fill("nightly/backup")
    page.get_by_role("button", name="Create API token").click()
    expect(status).to_contain_text("Token not created: invalid value for 'name': use 1 to 64 characters")
    expect(page.get_by_label("Token name")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Token name").fill("nightly backup")
    page.get_by_label("Token name").evaluate("el => el.form.requestSubmit()")
    expect(page.locator("code.token")).to_be_visible()
    expect(status).not_to_have_class(re.compile(r"\bstatus-error\b"))
    expect(status).not_to_contain_text("not created")
    expect(page.get_by_label("Token name")).not_to_have_attribute("aria-invalid", "true")
    assert page.console_errors == []


def test_a_role_change_is_asked_for_first(browser, sim, pages):
    page = open_as(browser, sim, pages, "alice", "#/users")
    page.get_by_role("textbox", name="User name").fill("nurse.kim")
    page.get_by_label("Initial password (at least 12 characters)").fill("correct horse battery")
    page.get_by_role("button", name="Add user").click()
    role = page.get_by_label("Role of nurse.kim")
    expect(role).to_have_value("viewer")

    page.accept[0] = False
    role.select_option("admin")
    expect(page.locator(".page-status")).to_contain_text("nurse.kim's role was not changed: still viewer")
    assert page.dialogs and "Change nurse.kim's role from viewer to admin?" in page.dialogs[-1]
    expect(role).to_have_value("viewer")
    assert role_of(sim, "nurse.kim") == "viewer"

    page.accept[0] = True
    role.select_option("operator")
    expect(page.locator(".page-status")).to_have_text("nurse.kim is now operator.")
    assert "from viewer to operator" in page.dialogs[-1] and len(page.dialogs) == 2
    wait_for(lambda: role_of(sim, "nurse.kim") == "operator", what="the new role")


def test_audit_details_read_as_keys_and_dates(browser, sim, pages):
    when = 1718000000.0  # 10 June 2024
    db = sim.db()
    try:
        details = {"expires_at": when, "params": {"level": "debug", "duration_s": 1800}, "devices": ["dev-a", "dev-b"],
                   "changes": [{"room": "3B-12", "decided_at": when}]}  # fmt: skip
        audit.record(db.db, actor="user:alice", action="test.readable", target="b-1", now=time.time(), details=details)
    finally:
        db.close()
    page = open_as(browser, sim, pages, "olga", "#/audit?action=test.readable")
    details = page.locator("tbody tr td.details").first
    expect(details).to_contain_text("expires at: ")
    expect(details).to_contain_text("2024")
    expect(details).to_contain_text("level: debug")
    expect(details).to_contain_text("devices: dev-a, dev-b")
    expect(details).to_contain_text("room: 3B-12")
    text = details.inner_text()
    assert "1718000000" not in text and "{" not in text and '"' not in text
    assert text.count("2024") == 2  # expires_at and the nested decided_at
    actor = page.locator("tbody tr").first.locator("td").nth(2)  # who: in words, with the form the filter takes
    expect(actor).to_contain_text("alice")
    expect(actor.locator(".mono")).to_have_text("user:alice")


def test_a_viewer_is_never_refused_on_any_page(browser, sim, pages):
    refused: list[str] = []
    page = open_as(browser, sim, pages, "victor", "#/fleet")
    page.on("response", lambda r: refused.append(f"{r.request.method} {r.url}") if r.status == 403 else None)
    device = next(iter(sim.devices.values())).device_id
    batch = sim.query("SELECT id FROM job_batches LIMIT 1")
    for path in [*PAGES, f"#/devices/{device}", *([f"#/jobs/{batch[0]['id']}"] if batch else [])]:
        page.evaluate("p => { location.hash = p; }", path)
        expect(page.locator("#page-title")).to_be_visible()
        page.wait_for_timeout(4000)  # several refreshes of every poll on the page
    assert refused == []
    assert page.console_errors == []
