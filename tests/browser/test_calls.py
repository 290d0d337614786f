"""The calls pages in a real Chromium: a call's waterfall, live call lists, analytics.

Live updates are driven the way a real call drives them: the carrier's signed voice
webhook and status callback, posted to the test server, run the call services, which
publish to the organization's group; the page's socket receives it.

Their screenshots are taken by tests/browser/test_screenshots.py (``make screenshots``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
from django.conf import settings
from playwright.sync_api import Page, expect
from twilio.request_validator import RequestValidator

from calls.models import Call, CallStatus, PhoneNumber
from tenants.models import Organization
from tests.browser.calls_data import support_call, week_of_calls
from tests.factories import make_call, make_phone_number

STAGES = ("endpointing", "stt_lag", "llm_ttft", "tts_ttfb", "platform_overhead")


def test_call_detail_shows_the_latency_waterfall(page: Page, login_as: Callable[..., Any]) -> None:
    member = login_as(role="viewer")
    call = support_call(member.organization)

    page.goto(f"/calls/{call.pk}/")

    chart = page.locator("svg.waterfall-chart")
    expect(chart).to_be_visible()
    # One row per assistant turn, a bar per measured stage (the greeting has no caller
    # speech: no endpointing, STT lag or overhead).
    expect(chart.locator("g.waterfall-row")).to_have_count(4)
    for stage in STAGES:
        expected = 4 if stage in ("llm_ttft", "tts_ttfb") else 3
        expect(chart.locator(f"rect[data-stage='{stage}']")).to_have_count(expected)
    titles = chart.locator("rect[data-stage] > title").all_text_contents()
    assert titles and all(re.search(r"\d+(\.\d)? ms", t) for t in titles), titles
    slow = chart.locator("g[data-turn='2'] rect[data-stage='llm_ttft'] > title")
    expect(slow).to_have_text(re.compile(r"LLM first token: 910 ms"))
    expect(chart.locator("line[data-marker='interrupted']")).to_have_count(1)
    # Bars have real geometry on screen, longer for the slower LLM.
    fast_box = chart.locator("g[data-turn='1'] rect[data-stage='llm_ttft']").bounding_box()
    slow_box = chart.locator("g[data-turn='2'] rect[data-stage='llm_ttft']").bounding_box()
    assert fast_box and slow_box and slow_box["width"] > 2 * fast_box["width"] > 0
    # The rest of the call record.
    expect(page.get_by_text("My router keeps dropping the connection.")).to_be_visible()
    expect(page.locator("[data-interrupted]")).to_have_count(1)
    expect(page.get_by_text("lookup_order")).to_be_visible()
    expect(page.locator("[data-end-reason]")).to_have_text("caller-hangup")


def _twilio_post(
    dashboard_url: str, number: PhoneNumber, path: str, params: dict[str, str]
) -> None:
    signature = RequestValidator(number.credential.auth_token).compute_signature(
        settings.PUBLIC_BASE_URL + path, params
    )
    response = httpx.post(
        dashboard_url + path,
        content=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
        timeout=10,
    )
    assert response.status_code in (200, 204), response.text


def _check_live_list(page: Page, dashboard_url: str, organization: Organization, path: str) -> None:
    number = make_phone_number(organization)
    page.goto(path)
    expect(page.locator("html")).to_have_attribute("data-live", "connected")
    page.evaluate("window.notReloaded = true")
    panel = page.locator("#live-calls")
    expect(panel.locator("[data-live-empty]")).to_be_visible()

    sid = "CA" + format(number.pk, "032x")
    _twilio_post(
        dashboard_url,
        number,
        "/telephony/twilio/voice/",
        {"CallSid": sid, "From": "+15005550199", "To": number.number, "CallStatus": "ringing"},
    )
    call = Call.objects.for_org(organization).get(carrier_call_sid=sid)

    row = panel.locator(f"tr[data-call-id='{call.pk}']")
    expect(row).to_be_visible()
    expect(row).to_contain_text("+15005550199")
    expect(row).to_contain_text("ringing")
    expect(row.get_by_role("link")).to_have_attribute("href", f"/calls/{call.pk}/")
    expect(panel.locator("[data-live-count]")).to_have_text("1")

    _twilio_post(
        dashboard_url,
        number,
        "/telephony/twilio/status/",
        {"CallSid": sid, "CallStatus": "completed", "CallDuration": "4"},
    )
    expect(row).to_have_count(0)
    expect(panel.locator("[data-live-empty]")).to_be_visible()
    expect(panel.locator("[data-live-count]")).to_have_text("0")
    assert page.evaluate("window.notReloaded") is True


def test_live_call_list(page: Page, login_as: Callable[..., Any], dashboard_url: str) -> None:
    member = login_as(role="viewer")
    _check_live_list(page, dashboard_url, member.organization, "/calls/")


def test_live_overview(page: Page, login_as: Callable[..., Any], dashboard_url: str) -> None:
    member = login_as(role="viewer")
    _check_live_list(page, dashboard_url, member.organization, "/")


def test_pages_with_a_weeksweek_of_calls(page: Page, login_as: Callable[..., Any]) -> None:
    member = login_as(role="viewer")
    organization = member.organization
    week_of_calls(organization)
    support_call(organization, hours_ago=0.5)
    make_call(organization, status=CallStatus.IN_PROGRESS, from_number="+15005550142")

    page.goto("/")
    expect(page.locator("[data-stat='calls-week']")).to_have_text("16")
    expect(page.locator("#live-calls")).to_contain_text("+15005550142")
    expect(page.get_by_text("deepgram: connection closed")).to_be_visible()

    page.goto("/calls/")
    page.get_by_label("Search transcripts").fill("router")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("[data-result-count]")).to_have_text(re.compile(r"^1 call matches"))
    page.goto("/calls/")

    page.goto("/analytics/")
    columns = page.locator("rect.chart-column")
    expect(columns.first).to_be_visible()
    titles = columns.locator("title").all_text_contents()
    assert any(re.fullmatch(r"Voice-to-voice · p95: [\d,]+ ms", t) for t in titles), titles
    page.get_by_label("Period", exact=True).select_option("30d")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"period=30d"))
    expect(page.locator("[data-stat='calls']")).to_have_text("16")
    page.get_by_label("Period", exact=True).select_option("7d")
    page.get_by_role("button", name="Show").click()
