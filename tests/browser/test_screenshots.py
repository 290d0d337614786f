"""Every main page renders in Chromium without a console error or a failed request, fits a
1024 px wide window, and (on demand) is saved as a screenshot for the docs:

    GLASSBOX_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest \
        tests/browser/test_screenshots.py

(`make screenshots` does that.) Without the variable the pages are still checked and the
images go to a temporary directory. Add a page by appending a ``Screen`` to ``SCREENS``;
its ``setup`` gets the logged-in owner's organization, may create rows (the test database
is thrown away) and returns the path to open.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from tenants import services
from tenants.models import Organization, Role
from tests.browser.conftest import make_dashboard_user
from tests.factories import make_api_key, make_invitation


@dataclass(frozen=True)
class Screen:
    name: str  # the PNG's file name, without .png
    setup: Callable[[Organization, Page], str]
    logged_in: bool = True
    full_page: bool = True


def _members(org: Organization, page: Page) -> str:
    for email, role in [
        ("ana@acme.test", Role.ADMIN),
        ("bo@acme.test", Role.MEMBER),
        ("chen@acme.test", Role.VIEWER),
    ]:
        make_dashboard_user(role=role, organization=org, email=email)
    make_invitation(org, email="dee@acme.test", role=Role.MEMBER)
    return "/members/"


def _api_keys(org: Organization, page: Page) -> str:
    make_api_key(org, name="Production")
    services.api_key_revoke(api_key=make_api_key(org, name="Old laptop").api_key)
    services.api_key_create(organization=org, name="Metrics export", scope="read_only")
    return "/api-keys/"


def _api_key_created(org: Organization, page: Page) -> str:
    page.goto("/api-keys/")
    page.get_by_label("Name").fill("CI pipeline")
    page.get_by_role("button", name="Create API key").click()
    return ""  # stay on the page the form led to


def _billing(org: Organization, page: Page) -> str:
    from datetime import timedelta

    from django.utils import timezone

    from billing.models import CallUsage
    from calls.services import phone_number_create
    from tests.factories import (
        make_agent,
        make_call_usage,
        make_credential,
        make_plan,
        make_subscription,
    )

    now = timezone.now()
    plan = make_plan(
        name="Team",
        included_minutes=500,
        overage_cents_per_minute=6,
        max_concurrent_calls=5,
        max_minutes_per_period=600,
        max_agents=10,
        max_numbers=5,
        features=["analytics", "webhooks"],
    )
    # A Stripe-managed period (not rolled to the calendar month), 20 days in.
    make_subscription(
        org,
        plan=plan,
        current_period_start=now - timedelta(days=20),
        current_period_end=now + timedelta(days=10),
        stripe_subscription_id="sub_screenshot",
    )
    agents = [make_agent(org, name=n) for n in ("Front desk", "After hours", "Order status")]
    twilio = make_credential(org, "twilio")
    numbers = [
        phone_number_create(
            organization=org,
            data={"number": f"+1415555010{i}", "credential": twilio, "agent": agent},
        )
        for i, agent in enumerate(agents)
    ]
    for day in range(20):
        for i, agent in enumerate(agents):
            for _ in range((day * (i + 2)) % 4 + 1):
                usage = make_call_usage(
                    org,
                    seconds=60 + (day * 37 + i * 53) % 400,
                    agent=agent,
                    phone_number=numbers[i],
                )
                CallUsage.objects.for_org(org).filter(pk=usage.pk).update(
                    day=(now - timedelta(days=19 - day)).date()
                )
    return "/billing/"


def _login(org: Organization, page: Page) -> str:
    return "/login/"


SCREENS: list[Screen] = [
    Screen("login", _login, logged_in=False),
    Screen("members", _members),
    Screen("api-keys", _api_keys),
    Screen("api-key-created", _api_key_created, full_page=False),
    Screen("billing", _billing),
]


def _output_dir(tmp_path: Path) -> Path:
    target = os.environ.get("GLASSBOX_SCREENSHOTS")
    path = Path(target) if target else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: s.name)
def test_page_renders_cleanly(screen: Screen, page: Page, login_as: Any, tmp_path: Path) -> None:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"{r.url}: {r.failure}"))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    if screen.logged_in:
        owner = login_as("owner", email="owner@acme.test")
        organization = owner.organization
        organization.name = "Acme Support"
        organization.save()
    else:
        organization = make_dashboard_user().organization
    path = screen.setup(organization, page)
    if path:
        response = page.goto(path)
        assert response is not None and response.status == 200, path
    page.wait_for_load_state("networkidle")
    assert not problems, problems
    page.set_viewport_size({"width": 1024, "height": 768})
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 1024, f"{screen.name} is {overflow} px wide at 1024"
    page.set_viewport_size({"width": 1280, "height": 900})
    image = _output_dir(tmp_path) / f"{screen.name}.png"
    page.screenshot(path=str(image), full_page=screen.full_page)
    assert image.stat().st_size > 5_000
