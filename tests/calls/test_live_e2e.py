"""A real call (tests/calls/e2e.py: the simulated Twilio caller, the media stream, the
engine, fake providers) seen from the dashboard: the live socket follows it from ringing
to finalized, and its detail page draws the turns it measured."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client
from websockets.asyncio.client import connect

from tenants.models import Organization, Role
from tenants.services import membership_create
from tests.calls.e2e import Platform, platform
from tests.factories import make_user
from voice.carriers.twilio_caller import Pause, Say, WaitForBot

pytestmark = [pytest.mark.django_db(transaction=True)]
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
async def live(settings: Any) -> Any:
    async with platform(settings) as p:
        yield p


def _viewer(organization: Organization) -> Client:
    user = make_user()
    membership_create(organization=organization, user=user, role=Role.VIEWER)
    client = Client()
    client.force_login(user)
    return client


async def test_a_real_call_is_followed_live_then_drawn(live: Platform) -> None:
    client = await sync_to_async(_viewer)(live.organization)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    socket_url = live.url.replace("http://", "ws://") + "/ws/live/"

    async with connect(
        socket_url,
        origin=live.url,
        additional_headers={"Cookie": cookie},  # type: ignore[arg-type]
    ) as socket:
        result = await live.call(
            [
                WaitForBot(quiet_ms=300),
                Say(tone_ms=900, label="order"),
                WaitForBot(quiet_ms=300),
                Pause(200),
            ]
        )
        call = await live.finished_call(result.call_sid)
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(15):
            while not (seen and not seen[-1]["live"] and seen[-1]["duration_ms"] is not None):
                seen.append(json.loads(await socket.recv())["call"])

    assert result.errors == [] and result.ended_by == "caller"
    assert {m["id"] for m in seen} == {call.pk}
    statuses = [m["status"] for m in seen]
    assert statuses[0] == "ringing"  # the voice webhook created it
    assert "in-progress" in statuses  # the media stream connected (call_stream_claim)
    assert statuses[-1] == "completed" and seen[-1]["end_reason"] == "caller-hangup"
    live_flags = [m["live"] for m in seen]
    assert live_flags == sorted(live_flags, reverse=True), "never live again once over"

    response = await sync_to_async(client.get)(f"/calls/{call.pk}/")
    html = response.content.decode()
    svg = ET.fromstring(html[html.index("<svg") : html.index("</svg>") + 6])
    rows = svg.findall(f".//{SVG}g[@class='waterfall-row']")
    assert len(rows) >= 2  # the greeting and the reply to "I need help with my order"
    reply = rows[1]
    stages = {bar.get("data-stage") for bar in reply.findall(f"{SVG}rect")}
    assert {"endpointing", "stt_lag", "llm_ttft", "tts_ttfb", "platform_overhead"} <= stages
    for bar in reply.findall(f"{SVG}rect"):
        assert " ms" in (bar.findtext(f"{SVG}title") or "")
    assert "I need help with my order" in html
