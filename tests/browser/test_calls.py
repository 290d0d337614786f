"""The calls pages in a real Chromium: a call's waterfall, live call lists, analytics.

Live updates are driven the way a real call drives them: the carrier's signed voice
webhook and status callback, posted to the test server, run the call services, which
publish to the organization's group; the page's socket receives it.

``DASHBOARD_SCREENSHOTS=docs/screenshots`` saves a screenshot of each page (how the
README's pictures are made).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import Page, expect
from twilio.request_validator import RequestValidator

from calls import services
from calls.models import Call, CallStatus, PhoneNumber
from tenants.models import Organization
from tests.factories import (
    make_agent,
    make_call,
    make_finished_call,
    make_phone_number,
    make_tool_invocation,
    turn_timeline,
)
from voice.events import EndReason, TurnKind, TurnTimeline
from voice.events import Role as Speaker
from voice.events import TranscriptEntry as Said

STAGES = ("endpointing", "stt_lag", "llm_ttft", "tts_ttfb", "platform_overhead")


def _screenshot(page: Page, name: str) -> None:
    target = os.environ.get("DASHBOARD_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True)


def _support_call(organization: Organization, *, hours_ago: float = 1.0) -> Call:
    """A realistic call: greeting, three replies (one interrupted), a tool call."""
    agent = make_agent(organization, name="Acme support")
    number = make_phone_number(organization, agent=agent, name="Support line")
    greeting = TurnTimeline(
        turn_index=0,
        kind=TurnKind.GREETING,
        llm_request_ms=4.0,
        llm_first_token_ms=212.0,
        tts_first_text_ms=215.0,
        tts_first_audio_ms=331.0,
        first_audio_sent_ms=336.0,
        playback_finished_ms=2600.0,
    )
    call = make_finished_call(
        organization,
        phone_number=number,
        started_at=timezone.now() - timedelta(hours=hours_ago),
        duration_s=74,
        from_number="+15005550006",
        turns=[
            greeting,
            turn_timeline(1, speech_end_ms=5200, llm_ttft_ms=380, tts_ttfb_ms=140),
            turn_timeline(
                2, speech_end_ms=14800, endpointing_ms=420, llm_ttft_ms=910, overhead_ms=18
            ),
            turn_timeline(3, speech_end_ms=26100, llm_ttft_ms=290, interrupted_after_ms=700),
        ],
    )
    for entry in (
        Said(Speaker.ASSISTANT, "Hi, this is Acme support. How can I help?", 0, 336, 2600),
        Said(Speaker.USER, "My router keeps dropping the connection.", 1, 3100, 5200),
        Said(Speaker.ASSISTANT, "Sorry to hear that. What's your order number?", 1, 5990, 8400),
        Said(Speaker.USER, "It's A-17.", 2, 13900, 14800),
        Said(
            Speaker.ASSISTANT,
            "Thanks, I found order A-17: a replacement ships today.",
            2,
            16310,
            19900,
        ),
        Said(Speaker.USER, "Great, can I also", 3, 24900, 26100),
        Said(Speaker.ASSISTANT, "Of course, anything", 3, 26780, 27480, interrupted=True),
    ):
        services.call_record_transcript(call=call, entry=entry)
    make_tool_invocation(
        organization,
        call=call,
        turn_index=2,
        name="lookup_order",
        arguments={"order_id": "A-17"},
        result='{"status": "replacement shipped", "eta_days": 2}',
        duration_ms=84.0,
    )
    return call


def _history(organization: Organization) -> None:
    """A week of calls for the lists and charts."""
    for day in range(7):
        for n in range(1 + day % 3):
            make_finished_call(
                organization,
                started_at=timezone.now() - timedelta(days=day, hours=2 + n),
                duration_s=40 + 13 * n + 7 * day,
                turns=[
                    turn_timeline(i, speech_end_ms=4000.0 * i, llm_ttft_ms=260 + 45 * (i + day))
                    for i in range(1, 4)
                ],
                reason=EndReason.ASSISTANT_HANGUP if n == 1 else EndReason.CALLER_HANGUP,
            )
    make_finished_call(
        organization,
        started_at=timezone.now() - timedelta(days=1, hours=5),
        duration_s=12,
        reason=EndReason.PROVIDER_ERROR,
        detail="deepgram: connection closed (1011) after 3 keep-alive timeouts",
    )


def test_call_detail_shows_the_latency_waterfall(page: Page, login_as: Callable[..., Any]) -> None:
    member = login_as(role="viewer")
    call = _support_call(member.organization)

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
    _screenshot(page, "call-detail")


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


def test_pages_with_a_weeks_history(page: Page, login_as: Callable[..., Any]) -> None:
    member = login_as(role="viewer")
    organization = member.organization
    _history(organization)
    _support_call(organization, hours_ago=0.5)
    make_call(organization, status=CallStatus.IN_PROGRESS, from_number="+15005550142")

    page.goto("/")
    expect(page.locator("[data-stat='calls-week']")).to_have_text("16")
    expect(page.locator("#live-calls")).to_contain_text("+15005550142")
    expect(page.get_by_text("deepgram: connection closed")).to_be_visible()
    _screenshot(page, "overview")

    page.goto("/calls/")
    page.get_by_label("Search transcripts").fill("router")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("[data-result-count]")).to_have_text(re.compile(r"^1 call matches"))
    page.goto("/calls/")
    _screenshot(page, "calls")

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
    _screenshot(page, "analytics")
