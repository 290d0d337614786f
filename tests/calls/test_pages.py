"""The calls pages: overview, calls list, call detail, analytics (Django test client).

Who may open them is the role matrix's job (tests/tenants/test_roles.py); these tests
are about what the pages show, logged in as a viewer (the least a reader can be).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from calls import services
from calls.models import Call, CallStatus
from tenants.models import Organization, Role
from tenants.services import membership_create
from tests.conftest import Tenant
from tests.factories import (
    make_agent,
    make_call,
    make_finished_call,
    make_phone_number,
    make_tool_invocation,
    make_user,
    turn_timeline,
)
from voice.events import EndReason
from voice.events import Role as Speaker
from voice.events import TranscriptEntry as Said

SVG = "{http://www.w3.org/2000/svg}"


def _client(organization: Organization, role: Role = Role.VIEWER) -> Client:
    user = make_user()
    membership_create(organization=organization, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer(tenant_a: Tenant) -> Client:
    return _client(tenant_a.organization)


@pytest.fixture
def finished(tenant_a: Tenant) -> Call:
    org = tenant_a.organization
    call = make_finished_call(
        org,
        started_at=timezone.now() - timedelta(hours=1),
        duration_s=95,
        turns=[
            turn_timeline(
                1, speech_end_ms=2000, llm_ttft_ms=420, vad_hangover_ms=96, llm_first_clause_ms=37
            ),
            turn_timeline(2, speech_end_ms=8000, interrupted_after_ms=350),
        ],
    )
    for entry in (
        Said(Speaker.ASSISTANT, "Hello, Acme support.", turn_index=0, start_ms=100, end_ms=1500),
        Said(Speaker.USER, "My router is broken", turn_index=1, start_ms=1600, end_ms=2000),
        Said(
            Speaker.ASSISTANT,
            "Let me check",
            turn_index=2,
            start_ms=65000,
            end_ms=66000,
            interrupted=True,
        ),
    ):
        services.call_record_transcript(call=call, entry=entry)
    make_tool_invocation(
        org, call=call, name="lookup_order", arguments={"order": "A-17"}, result='{"ok": true}'
    )
    return call


def test_overview(viewer: Client, tenant_a: Tenant, finished: Call) -> None:
    org = tenant_a.organization
    live = make_call(org, status=CallStatus.IN_PROGRESS, from_number="+15550001111")
    make_finished_call(
        org,
        started_at=timezone.now() - timedelta(days=2),
        reason=EndReason.PROVIDER_ERROR,
        detail="deepgram: 401 Unauthorized",
    )

    html = viewer.get("/").content.decode()

    assert re.search(r'data-stat="calls-today">2<', html)  # the finished and the live call
    assert re.search(r'data-stat="calls-week">3<', html)
    assert re.search(r'data-stat="minutes-week">2\.6<', html)  # 95 s + 60 s
    assert re.search(r'data-stat="v2v-p50">\d+<', html)
    assert f'data-call-id="{live.pk}"' in html and "+15550001111" in html
    assert "provider-error" in html and "deepgram: 401 Unauthorized" in html
    assert "calls/live.js" in html


def test_live_panel_fragment_is_rendered_by_the_same_view(viewer: Client, tenant_a: Tenant) -> None:
    live = make_call(tenant_a.organization, status=CallStatus.IN_PROGRESS)
    for url in ("/", "/calls/"):
        response = viewer.get(url, headers={"HX-Request": "true", "HX-Target": "live-calls"})
        html = response.content.decode()
        assert html.lstrip().startswith('<section id="live-calls"')
        assert f'data-call-id="{live.pk}"' in html and "<html" not in html


def test_call_list_filters_search_and_pagination(viewer: Client, tenant_a: Tenant) -> None:
    org = tenant_a.organization
    number = make_phone_number(org)
    for i in range(27):
        make_call(
            org,
            phone_number=number,
            started_at=timezone.now() - timedelta(minutes=i),
            status=CallStatus.COMPLETED,
        )
    odd = make_finished_call(
        org,
        started_at=timezone.now() - timedelta(days=3),
        reason=EndReason.SILENCE_TIMEOUT,
    )
    services.call_record_transcript(
        call=odd, entry=Said(Speaker.USER, "cancel my subscription", 1, 0, 900)
    )

    first = viewer.get("/calls/").content.decode()
    second = viewer.get("/calls/", {"page": 2}).content.decode()
    beyond = viewer.get("/calls/", {"page": "999"}).content.decode()

    assert "28 calls" in first and "Page 1 of 2" in first and 'rel="next"' in first
    assert first.count("/calls/") > 25
    assert f"/calls/{odd.pk}/" in second and "Page 2 of 2" in second
    assert "Page 2 of 2" in beyond
    searched = viewer.get("/calls/", {"q": "SUBSCRIPTION"}).content.decode()
    assert "1 call matches" in searched and f"/calls/{odd.pk}/" in searched
    by_reason = viewer.get("/calls/", {"end_reason": "silence-timeout"}).content.decode()
    assert "1 call matches" in by_reason
    by_number = viewer.get("/calls/", {"phone_number": number.pk, "page": 2}).content.decode()
    assert "27 calls match" in by_number and "phone_number=" in by_number  # kept in links
    day = (timezone.now() - timedelta(days=3)).date().isoformat()
    by_date = viewer.get("/calls/", {"started_from": day, "started_to": day}).content.decode()
    assert "1 call matches" in by_date


def test_call_list_reports_bad_filters_beside_the_field(
    viewer: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    make_call(tenant_a.organization)
    foreign_agent = make_agent(tenant_b.organization)

    response = viewer.get(
        "/calls/",
        {
            "agent": foreign_agent.pk,
            "started_from": "2099-05-02",
            "started_to": "2099-05-01",
            "status": "exploded",
            "q": "a\x00b",
        },
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "Select a valid choice" in html
    assert "The end date must be on or after the start date." in html
    assert html.count('class="field field-error"') == 4
    # The valid filter (started_from) still applies.
    assert "0 calls match" in html


def test_call_detail(viewer: Client, finished: Call) -> None:
    html = viewer.get(f"/calls/{finished.pk}/").content.decode()

    # Transcript: roles, offsets, the interrupted mark.
    assert "My router is broken" in html and 'data-role="user"' in html
    assert "0:01.6\u20130:02.0" in html and "1:05.0\u20131:06.0" in html
    assert html.count("data-interrupted") == 1
    # Tool calls with arguments and result; end reason; usage.
    assert "lookup_order" in html and "&quot;order&quot;: &quot;A-17&quot;" in html
    assert "{&quot;ok&quot;: true}" in html
    assert re.search(r"data-end-reason>caller-hangup<", html)
    assert "800" in html and "420 characters" in html and "1:35" in html
    # The waterfall: bars per stage, each titled with its numbers.
    svg = ET.fromstring(html[html.index("<svg") : html.index("</svg>") + 6])
    bars = svg.findall(f".//{SVG}rect[@data-stage]")
    stages = [b.get("data-stage") for b in bars]
    for stage in ("endpointing", "stt_lag", "llm_ttft", "tts_ttfb", "platform_overhead"):
        assert stages.count(stage) == 2
    llm = [b for b in bars if b.get("data-stage") == "llm_ttft"]
    assert "420 ms" in (llm[0].findtext(f"{SVG}title") or "")
    # The stages issue 16 added: a lane each, and a column of the numbers table.
    assert stages.count("vad_hangover") == 1 and stages.count("llm_first_clause") == 2
    assert re.search(r"<td class=\"num\">96 ms</td>", html)
    assert re.search(r"<td class=\"num\">37 ms</td>", html)
    assert svg.find(f".//{SVG}line[@data-marker='interrupted']") is not None


def test_call_detail_of_a_call_still_ringing(viewer: Client, tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    html = viewer.get(f"/calls/{call.pk}/").content.decode()
    assert "No assistant turns were measured" in html
    assert "Nothing was said on this call." in html and "No tools were called." in html


@pytest.mark.parametrize("call_id", ["foreign", "missing", str(2**70)])
def test_call_detail_of_another_tenant_is_404(
    viewer: Client, tenant_b: Tenant, call_id: str
) -> None:
    if call_id == "foreign":
        call_id = str(make_call(tenant_b.organization).pk)
    elif call_id == "missing":
        call_id = str(10**9)
    response = viewer.get(f"/calls/{call_id}/")
    assert response.status_code == 404


def test_analytics(viewer: Client, tenant_a: Tenant, finished: Call) -> None:
    make_finished_call(
        tenant_a.organization,
        started_at=timezone.now() - timedelta(days=20),
        turns=[turn_timeline(1, speech_end_ms=1000)],
    )

    week = viewer.get("/analytics/").content.decode()
    month = viewer.get("/analytics/", {"period": "30d"}).content.decode()
    one_agent = viewer.get("/analytics/", {"agent": finished.agent_id, "period": "30d"})

    assert re.search(r'data-stat="calls">1<', week) and re.search(r'data-stat="calls">2<', month)
    assert re.search(r'data-stat="interruptions">1\.00<', week)
    assert "Last 7 days" in week and "Last 30 days" in month
    assert re.search(r"LLM first token</th><td class=\"num\">\d+ ms", week)
    assert re.search(r'data-stat="calls">1<', one_agent.content.decode())
    # Server-drawn charts: a titled column per value.
    svgs = re.findall(r"<svg xmlns.*?</svg>", week, flags=re.S)
    assert len(svgs) == 3
    titles = re.findall(r"<rect class=\"chart-column\"[^>]*><title>([^<]+)</title>", week)
    assert any(t.startswith("LLM first token · p50: ") and t.endswith(" ms") for t in titles)
    assert any(re.match(r"\w{3} \d+: 1 calls", t) for t in titles)


def test_analytics_rejects_a_bad_period_with_a_message(viewer: Client, tenant_a: Tenant) -> None:
    response = viewer.get("/analytics/", {"period": "2w"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Select a valid choice" in html and "Last 7 days" in html


def test_viewers_cannot_post(viewer: Client, finished: Call) -> None:
    for url in ("/", "/calls/", f"/calls/{finished.pk}/", "/analytics/"):
        assert viewer.post(url).status_code == 403


def test_pages_need_a_login(db: Any) -> None:
    response = Client().get("/calls/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_call_detail_lists_provider_switches(viewer: Client, finished: Call) -> None:
    assert "data-fallbacks" not in viewer.get(f"/calls/{finished.pk}/").content.decode()
    finished.fallbacks = [
        {
            "stage": "llm",
            "from": "openai (primary)",
            "to": "openai (fallback 1)",
            "reason": "no first token within 4 s",
            "at_ms": 5230.0,
        }
    ]
    finished.save(update_fields=["fallbacks"])
    html = viewer.get(f"/calls/{finished.pk}/").content.decode()
    section = html[html.index("data-fallbacks") :]
    assert "openai (primary)" in section and "openai (fallback 1)" in section
    assert "no first token within 4 s" in section
