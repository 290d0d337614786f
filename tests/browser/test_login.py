"""Logging in and out in a real Chromium."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.conftest import make_dashboard_user


def test_login_with_email_and_password_then_logout(page: Page, dashboard_url: str) -> None:
    member = make_dashboard_user(role="viewer")
    page.goto("/account/password/")
    expect(page).to_have_url(re.compile(r"/login/\?next="))
    page.get_by_label("Email").fill(member.email.upper())  # email is case-insensitive
    page.get_by_label("Password").fill(member.password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{dashboard_url}/account/password/")
    expect(page.get_by_role("heading", name="Change your password")).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="You have logged out")).to_be_visible()
    page.goto("/account/password/")
    expect(page).to_have_url(re.compile(r"/login/"))


def test_wrong_password_shows_the_error_summary(page: Page, dashboard_url: str) -> None:
    member = make_dashboard_user()
    page.goto("/login/")
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    summary = page.get_by_role("alert")
    expect(summary).to_contain_text("There is a problem")
    expect(summary).to_contain_text("Enter a correct email address and password.")
    expect(summary).to_be_focused()
    # Still logged out.
    page.goto("/account/password/")
    expect(page).to_have_url(re.compile(r"/login/"))


def test_htmx_and_styles_are_served_by_the_app(page: Page, dashboard_url: str) -> None:
    page.goto("/login/")
    assert page.evaluate("typeof window.htmx") == "object"
    color = page.evaluate(
        "getComputedStyle(document.querySelector('.site-header')).backgroundColor"
    )
    assert color == "rgb(29, 79, 145)"


def test_login_as_fixture_gives_a_session(page: Page, login_as: Any) -> None:
    member = login_as("admin")
    page.goto("/account/password/")
    expect(page.get_by_text(member.email)).to_be_visible()


def test_the_browser_is_debians_chromium(browser: Any, chromium_executable: str) -> None:
    import subprocess

    reported = subprocess.run(
        [chromium_executable, "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert browser.version.split(".")[0] in reported
