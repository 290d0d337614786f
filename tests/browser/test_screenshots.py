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

from agents.models import Agent
from calls.models import Call, CallStatus
from calls.services import phone_number_create
from tenants import services
from tenants.models import Membership, Organization, Role
from tests.browser.calls_data import support_call, week_of_calls
from tests.browser.conftest import make_dashboard_user
from tests.factories import (
    make_agent,
    make_api_key,
    make_call,
    make_credential,
    make_delivery,
    make_invitation,
    make_tool,
    make_webhook_endpoint,
    make_widget_key,
)


@dataclass(frozen=True)
class Screen:
    name: str  # the PNG's file name, without .png
    setup: Callable[[Organization, Page], str]
    logged_in: bool = True
    full_page: bool = True
    # The page shows a form's errors: its POST answers 400, as bad input should.
    bad_input: bool = False


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


def _agent_setup(org: Organization) -> Agent:
    deepgram = make_credential(org, "deepgram")
    openai = make_credential(org, "openai")
    cartesia = make_credential(org, "cartesia")
    twilio = make_credential(org, "twilio")
    lookup = make_tool(
        org,
        name="lookup_order",
        kind="http",
        description="Finds an order by its number.",
        url="https://tools.acme.test/orders",
        headers={"Authorization": "Bearer secret"},
    )
    hang_up = make_tool(org, name="end_call", kind="end_call")
    make_tool(org, name="transfer_to_billing", kind="transfer_call", transfer_to="+14155550142")
    agent = make_agent(
        org,
        name="Front desk",
        system_prompt="You answer the phone for Acme Dental. Be brief and friendly.",
        first_message="Hi, thanks for calling Acme Dental. How can I help?",
        stt={"provider": "deepgram", "model": "nova-3", "language": "en-US"},
        llm={"provider": "openai", "model": "gpt-4o-mini", "temperature": 0.4, "max_tokens": 300},
        tts={"provider": "cartesia", "voice": "a0e99841-438c-4a64-b679-ae501e7d6091"},
        stt_credential=deepgram,
        llm_credential=openai,
        tts_credential=cartesia,
        tools=[lookup, hang_up],
        webhook_url="https://hooks.acme.test/calls",
    )
    make_agent(org, name="After-hours (offline demo)")
    # Not make_phone_number(): its defaults would add an agent and a credential of their own.
    for number, name in [("+14155550100", "Main line"), ("+14155550101", "Bookings")]:
        phone_number_create(
            organization=org,
            data={"number": number, "name": name, "credential": twilio, "agent": agent},
        )
    return agent


def _agents(org: Organization, page: Page) -> str:
    _agent_setup(org)
    return "/agents/"


def _agent_edit(org: Organization, page: Page) -> str:
    return f"/agents/{_agent_setup(org).pk}/"


def _agent_error(org: Organization, page: Page) -> str:
    page.goto(f"/agents/{_agent_setup(org).pk}/")
    page.get_by_label("Temperature").fill("3")
    page.get_by_role("button", name="Save changes").click()
    page.evaluate("window.scrollTo(0, 0)")
    return ""


def _agent_delete(org: Organization, page: Page) -> str:
    return f"/agents/{_agent_setup(org).pk}/delete/"


def _tools(org: Organization, page: Page) -> str:
    _agent_setup(org)
    return "/tools/"


def _credentials(org: Organization, page: Page) -> str:
    _agent_setup(org)
    return "/credentials/"


def _phone_numbers(org: Organization, page: Page) -> str:
    _agent_setup(org)
    return "/phone-numbers/"


def _calls_history(org: Organization) -> Call:
    week_of_calls(org)
    call = support_call(org, hours_ago=0.5)
    make_call(org, status=CallStatus.IN_PROGRESS, from_number="+15005550142")
    return call


def _overview(org: Organization, page: Page) -> str:
    _calls_history(org)
    return "/"


def _calls(org: Organization, page: Page) -> str:
    _calls_history(org)
    return "/calls/"


def _call_detail(org: Organization, page: Page) -> str:
    return f"/calls/{support_call(org).pk}/"


def _agent_widget(org: Organization, page: Page) -> str:
    agent = _agent_setup(org)
    make_widget_key(org, agent=agent, allowed_origins=["https://acme.example"])
    return f"/agents/{agent.pk}/widget/"


def _call_live(org: Organization, page: Page) -> str:
    call = make_call(org, status=CallStatus.IN_PROGRESS, from_number="+15005550142")
    return f"/calls/{call.pk}/"


def _analytics(org: Organization, page: Page) -> str:
    _calls_history(org)
    return "/analytics/"


def _call_analysis(org: Organization, page: Page) -> str:
    from tests.browser.test_after_the_call import analyzed_call

    page.goto(f"/calls/{analyzed_call(org).pk}/")
    page.locator("[data-analysis]").scroll_into_view_if_needed()
    return ""


def _data_settings(org: Organization, page: Page) -> str:
    org.transcript_retention_days, org.redact_transcripts = 90, True
    org.save()
    return "/settings/data/"


def _audit_log(org: Organization, page: Page) -> str:
    from calls.retention import call_delete, calls_retention_purge
    from tenants.services import Actor

    owner = Membership.objects.for_org(org).select_related("user").first()
    assert owner is not None
    for hours_ago in (30 * 24 + 5, 30 * 24 + 3):
        support_call(org, hours_ago=hours_ago)
    services.organization_data_settings_update(
        organization=org,
        actor=Actor(user=owner.user),
        data={"transcript_retention_days": 30, "redact_transcripts": True},
    )
    calls_retention_purge()
    call_delete(call=support_call(org), actor=Actor(api_key=make_api_key(org, "CRM sync").api_key))
    return "/audit-log/"


def _campaign(org: Organization, page: Page) -> str:
    from tests.browser.test_campaigns import running_campaign

    return f"/campaigns/{running_campaign(org).pk}/"


def _webhook_endpoints(org: Organization) -> Any:
    from datetime import timedelta

    from django.utils import timezone

    from webhooks.models import DeliveryState, EndpointState, WebhookEndpoint

    crm = make_webhook_endpoint(
        org,
        url="https://crm.acme.test/hooks/glassbox",
        description="CRM: call outcomes",
        events=["call.ended", "call.analyzed"],
    )
    make_webhook_endpoint(
        org,
        url="https://dashboards.acme.test/turns",
        description="Live wallboard",
        events=["transcript.turn"],
    )
    flaky = make_webhook_endpoint(
        org, url="https://old.acme.test/webhook", events=["call.started", "call.ended"]
    )
    WebhookEndpoint.objects.for_org(org).filter(pk=flaky.pk).update(
        state=EndpointState.FAILING,
        failing_since=timezone.now() - timedelta(hours=3),
        consecutive_failures=1,
    )
    now = timezone.now()
    rows = [
        (DeliveryState.SUCCEEDED, 2, 200, "", 142.0, None),
        (DeliveryState.SUCCEEDED, 1, 200, "", 88.0, None),
        (DeliveryState.PENDING, 3, 503, "HTTP 503", 2011.0, now + timedelta(minutes=9)),
        (DeliveryState.FAILED, 10, None, "No response within 10 seconds.", None, None),
    ]
    for state, attempts, status, error, response_ms, next_at in rows:
        make_delivery(
            org,
            endpoint=crm,
            state=state,
            attempts=attempts,
            max_attempts=10,
            last_status=status,
            last_error=error,
            last_response_ms=response_ms,
            last_attempt_at=now - timedelta(minutes=2),
            next_attempt_at=next_at,
        )
    return crm


def _webhooks(org: Organization, page: Page) -> str:
    _webhook_endpoints(org)
    return "/webhooks/"


def _webhook_detail(org: Organization, page: Page) -> str:
    return f"/webhooks/{_webhook_endpoints(org).pk}/"


SCREENS: list[Screen] = [
    Screen("login", _login, logged_in=False),
    Screen("members", _members),
    Screen("api-keys", _api_keys),
    Screen("api-key-created", _api_key_created, full_page=False),
    Screen("agents", _agents),
    Screen("agent-edit", _agent_edit),
    Screen("agent-error", _agent_error, full_page=False, bad_input=True),
    Screen("agent-delete", _agent_delete),
    Screen("tools", _tools),
    Screen("credentials", _credentials),
    Screen("phone-numbers", _phone_numbers),
    Screen("overview", _overview),
    Screen("calls", _calls),
    Screen("call-detail", _call_detail),
    Screen("call-live", _call_live),
    Screen("agent-widget", _agent_widget),
    Screen("analytics", _analytics),
    Screen("billing", _billing),
    Screen("call-analysis", _call_analysis, full_page=False),
    Screen("data-settings", _data_settings),
    Screen("audit-log", _audit_log),
    Screen("campaign", _campaign),
    Screen("webhooks", _webhooks),
    Screen("webhook-detail", _webhook_detail),
]


def _output_dir(tmp_path: Path) -> Path:
    target = os.environ.get("GLASSBOX_SCREENSHOTS")
    path = Path(target) if target else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: s.name)
def test_page_renders_cleanly(screen: Screen, page: Page, login_as: Any, tmp_path: Path) -> None:
    problems: list[str] = []

    def expected(status: int, method: str) -> bool:
        return screen.bad_input and status == 400 and method == "POST"

    def console(m: Any) -> None:
        if m.type == "error" and not (screen.bad_input and "status of 400" in m.text):
            problems.append(m.text)

    page.on("console", console)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"{r.url}: {r.failure}"))
    page.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and not expected(r.status, r.request.method)
            else None
        ),
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
