"""The per-number lookup webhook: variables and agent overrides for an inbound call,
asked before the call is answered, signed, bounded, and through the outbound guard."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import threading
from collections.abc import Iterator
from hashlib import sha256
from typing import Any

import pytest
from aiohttp import web
from django.conf import settings

from calls.callconfig import call_config_build
from calls.models import Call
from tests.calls.outbound import signed_post
from tests.conftest import Tenant
from tests.factories import make_agent, make_phone_number

CALLER = "+15005550006"


class LookupServer:
    """A tenant's lookup endpoint on 127.0.0.1, on a thread of its own."""

    def __init__(self) -> None:
        self.reply: Any = {"variables": {}}
        self.status = 200
        self.delay_s = 0.0
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if isinstance(self.reply, bytes):
            return web.Response(body=self.reply, status=self.status)
        return web.json_response(self.reply, status=self.status)


@pytest.fixture
def lookup(settings: Any) -> Iterator[LookupServer]:
    settings.PUBLIC_BASE_URL = "https://voice.glassbox.example"
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]  # the tenant's server is local here
    server = LookupServer()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app = web.Application()
    app.router.add_post("/lookup", server.handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return int(runner.addresses[0][1])

    port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    server.url = f"http://127.0.0.1:{port}/lookup"
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def number(tenant_a: Tenant, lookup: LookupServer) -> Any:
    org = tenant_a.organization
    agent = make_agent(
        org,
        first_message="Hello {{name|there}}, you are on the {{plan|basic}} plan.",
        system_prompt="Customer tier: {{tier|unknown}}.",
        webhook_secret="whsec-lookup",
    )
    return make_phone_number(org, agent=agent, lookup_url=lookup.url)


def _ring(number: Any, sid: str = "CA" + "a" * 32) -> Any:
    params = {"CallSid": sid, "From": CALLER, "To": number.number, "CallStatus": "ringing"}
    return signed_post(settings.PUBLIC_BASE_URL + "/telephony/twilio/voice/", params)


def _call(tenant: Tenant) -> Call:
    return Call.objects.for_org(tenant.organization).get()


def test_variables_and_overrides_come_from_the_lookup_before_the_answer(
    tenant_a: Tenant, number: Any, lookup: LookupServer
) -> None:
    lookup.reply = {
        "variables": {"name": "Ada\nLovelace", "tier": "gold"},
        "agent": {"system_prompt": "VIP {{name}}, tier {{tier}}.", "max_duration_s": 120},
    }
    response = _ring(number)
    assert response.status_code == 200
    assert b"<Stream" in response.content
    [(headers, body)] = lookup.requests
    sent = json.loads(body)
    assert sent == {
        "event": "call.lookup",
        "call_sid": "CA" + "a" * 32,
        "from": CALLER,
        "to": number.number,
        "phone_number": number.pk,
        "agent": number.agent_id,
    }
    timestamp = headers["X-Glassbox-Timestamp"]
    expected = hmac.new(b"whsec-lookup", f"{timestamp}.{body.decode()}".encode(), sha256)
    assert headers["X-Glassbox-Signature"] == f"v1={expected.hexdigest()}"
    call = _call(tenant_a)
    assert call.variables == {"name": "Ada Lovelace", "tier": "gold"}
    assert call.metadata == {"lookup": {"status": "ok", "detail": ""}}
    config = call_config_build(call)
    assert config.first_message == "Hello Ada Lovelace, you are on the basic plan."
    assert config.system_prompt == "VIP Ada Lovelace, tier gold."
    assert config.max_duration_s == 120.0
    # A retried webhook (Twilio timed out on us) does not ask again.
    assert _ring(number).status_code == 200
    assert len(lookup.requests) == 1


def test_a_late_lookup_does_not_hold_the_call(
    tenant_a: Tenant, number: Any, lookup: LookupServer, settings: Any
) -> None:
    settings.NUMBER_LOOKUP_TIMEOUT_S = 0.2
    lookup.delay_s = 2.0
    lookup.reply = {"variables": {"name": "Too late"}}
    response = _ring(number)
    assert response.status_code == 200 and b"<Stream" in response.content
    call = _call(tenant_a)
    assert call.metadata["lookup"]["status"] == "timeout"
    assert call.variables == {}
    assert call_config_build(call).first_message == "Hello there, you are on the basic plan."


@pytest.mark.parametrize(
    ("status", "reply", "why"),
    [
        (500, {"variables": {}}, "HTTP 500"),
        (200, b"<html>", "not JSON"),
        (200, {"variables": ["a"]}, "'variables' must be an object"),
        (200, {"variables": {"bad name": "x"}}, "Invalid variable names"),
        (200, {"agent": {"webhook_url": "https://evil.example"}}, "cannot be overridden"),
    ],
)
def test_an_unusable_reply_leaves_the_agent_as_configured(
    tenant_a: Tenant, number: Any, lookup: LookupServer, status: int, reply: Any, why: str
) -> None:
    lookup.status, lookup.reply = status, reply
    assert _ring(number).status_code == 200
    call = _call(tenant_a)
    assert call.metadata["lookup"]["status"] == "error"
    assert why in call.metadata["lookup"]["detail"]
    assert call.variables == {}
    assert call.agent_snapshot["system_prompt"] == "Customer tier: {{tier|unknown}}."


def test_the_lookup_url_goes_through_the_outbound_guard(
    tenant_a: Tenant, number: Any, lookup: LookupServer, settings: Any
) -> None:
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    # Refused when saved through the API ...
    response = tenant_a.client.patch(
        f"/api/v1/phone-numbers/{number.pk}/", {"lookup_url": lookup.url}, format="json"
    )
    assert response.status_code == 400
    assert "lookup_url" in response.json()["error"]["fields"]
    # ... and at connect time, for a URL saved while it was allowed.
    assert _ring(number).status_code == 200
    assert lookup.requests == []
    call = _call(tenant_a)
    assert call.metadata["lookup"]["status"] == "error"
    assert "127.0.0.1" in call.metadata["lookup"]["detail"]
