"""A whole platform on 127.0.0.1 for end-to-end call tests.

The real ASGI application (``glassbox.asgi.application``: Django HTTP + the media-stream
WebSocket route) is served by a real ASGI server (uvicorn) on the test's event loop; the
speech providers are the fake Deepgram, OpenAI and Cartesia servers driven by the
official SDKs; hang-ups and transfers go through the official Twilio SDK to the fake
Twilio REST server; and the caller is the simulated Twilio caller, which signs the
webhook and speaks Media Streams. Nothing of ours is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from asgiref.sync import sync_to_async
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import connections

from agents.models import Agent, Credential
from calls.models import Call, PhoneNumber
from glassbox.celery import app as celery_app
from tenants.models import Organization
from tests.conftest import Tenant, make_tenant
from tests.factories import make_agent, make_credential, make_phone_number, make_tool
from tests.fakes.cartesia import FakeCartesia
from tests.fakes.deepgram import FakeDeepgram
from tests.fakes.openai import FakeOpenAI
from tests.fakes.twilio_rest import FakeTwilioRest
from voice.carriers.twilio_caller import (
    CallerConfig,
    CallResult,
    Step,
    parse_stream_twiml,
    place_call,
    signed_headers,
)

PUBLIC_BASE_URL = "https://voice.glassbox.example"
CALLER_NUMBER = "+15005550006"


@dataclass
class Platform:
    url: str
    tenant: Tenant
    agent: Agent
    credential: Credential
    number: PhoneNumber
    deepgram: FakeDeepgram
    openai: FakeOpenAI
    cartesia: FakeCartesia
    twilio: FakeTwilioRest

    @property
    def organization(self) -> Organization:
        return self.tenant.organization

    def caller(self, call_sid: str = "", **overrides: Any) -> CallerConfig:
        fields: dict[str, Any] = {
            "public_base_url": PUBLIC_BASE_URL,
            "connect_base_url": self.url,
            "account_sid": self.credential.account_sid,
            "auth_token": self.credential.auth_token,
            "from_number": CALLER_NUMBER,
            "to_number": self.number.number,
            "call_sid": call_sid,
            "max_call_s": 60.0,
        }
        fields.update(overrides)
        return CallerConfig(**fields)

    async def call(self, script: Sequence[Step], *, call_sid: str = "") -> CallResult:
        """Place a call; Twilio's stream ends when a REST update hangs up or transfers."""
        import secrets

        sid = call_sid or "CA" + secrets.token_hex(16)
        self.twilio.add_call(sid, to=self.number.number, from_=CALLER_NUMBER)
        return await place_call(self.caller(sid), script, end_stream=self.twilio.stream_end(sid))

    async def finished_call(self, call_sid: str, timeout_s: float = 15.0) -> Call:
        """The call once the platform has written its end and finalized it."""
        async with asyncio.timeout(timeout_s):
            while True:
                call = await sync_to_async(_call_by_sid)(call_sid)
                if call is not None and call.finalized_at is not None:
                    return call
                await asyncio.sleep(0.05)

    async def api_get(self, path: str) -> Any:
        response = await sync_to_async(self.tenant.client.get)(path)
        assert response.status_code == 200, response.content
        return response.json()


def _call_by_sid(call_sid: str) -> Call | None:
    return Call.objects.dangerously_unscoped().filter(carrier_call_sid=call_sid).first()


def _seed() -> tuple[Tenant, Agent, Credential, PhoneNumber]:
    tenant = make_tenant("Callers Inc")
    org = tenant.organization
    end_call = make_tool(org, name="end_call", kind="end_call", description="Hang up.")
    agent = make_agent(
        org,
        first_message="Hello, thanks for calling.",
        stt={"provider": "deepgram", "model": "nova-3", "language": "en-US"},
        llm={"provider": "openai", "model": "gpt-fake", "temperature": 0.2, "max_tokens": 200},
        tts={"provider": "cartesia", "voice": "fake-voice", "model": "sonic-2", "speed": 1.0},
        turn={"min_wait_ms": 50, "max_wait_ms": 400},
        idle={"prompt": "Still there?", "timeout_s": 30.0, "max_prompts": 1, "goodbye": "Bye."},
        tools=[end_call],
    )
    credential = make_credential(org, "twilio")
    number = make_phone_number(org, agent=agent, credential=credential)
    return tenant, agent, credential, number


@contextlib.asynccontextmanager
async def asgi_server() -> AsyncIterator[str]:
    from glassbox.asgi import application

    config = uvicorn.Config(
        application,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_level="warning",
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task


@contextlib.contextmanager
def celery_tasks_run() -> Any:
    """Tasks must run for a call to be finalized: in-process when Celery is eager (the
    embedded default), else a real worker consuming from the broker (CI's Redis)."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        yield
        return
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield


@contextlib.asynccontextmanager
async def _closing_server_connections() -> AsyncIterator[None]:
    """The server's database work runs on asgiref's shared worker thread; its connection
    outlives the test unless closed there (PostgreSQL then refuses to drop the test DB)."""
    try:
        yield
    finally:
        await sync_to_async(connections.close_all)()


@contextlib.asynccontextmanager
async def platform(django_settings: Any) -> AsyncIterator[Platform]:
    """Fakes up, settings pointed at them, a tenant seeded, the server listening."""
    deepgram, openai, cartesia = FakeDeepgram(), FakeOpenAI(), FakeCartesia()
    twilio = FakeTwilioRest(account_sid="AC" + "1" * 32, auth_token="twilio-token-" + "t" * 20)
    deepgram.script = ["I need help with my order", "tell me more", "wait stop", "goodbye"]
    async with deepgram, openai, cartesia, twilio:
        django_settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
        django_settings.DEEPGRAM_BASE_URL = deepgram.url
        django_settings.DEEPGRAM_API_KEY = deepgram.api_key
        django_settings.OPENAI_BASE_URL = openai.url
        django_settings.OPENAI_API_KEY = openai.api_key
        django_settings.CARTESIA_BASE_URL = cartesia.url
        django_settings.CARTESIA_API_KEY = cartesia.api_key
        django_settings.TWILIO_API_BASE_URL = twilio.url
        tenant, agent, credential, number = await sync_to_async(_seed)()
        with celery_tasks_run():
            async with asgi_server() as url, _closing_server_connections():
                yield Platform(
                    url=url,
                    tenant=tenant,
                    agent=agent,
                    credential=credential,
                    number=number,
                    deepgram=deepgram,
                    openai=openai,
                    cartesia=cartesia,
                    twilio=twilio,
                )


async def answer(live: Platform, call_sid: str) -> str:
    """POST the signed voice webhook as Twilio would; the stream URL, reachable from here."""
    import httpx

    params = {
        "CallSid": call_sid,
        "AccountSid": live.credential.account_sid,
        "From": CALLER_NUMBER,
        "To": live.number.number,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }
    path = "/telephony/twilio/voice/"
    headers = signed_headers(live.credential.auth_token, PUBLIC_BASE_URL + path, params)
    async with httpx.AsyncClient() as http:
        response = await http.post(live.url + path, data=params, headers=headers)
    assert response.status_code == 200, response.text
    url = parse_stream_twiml(response.text).url
    public_ws = PUBLIC_BASE_URL.replace("https://", "wss://", 1)
    assert url.startswith(public_ws + "/ws/twilio/")
    return live.url.replace("http://", "ws://", 1) + url.removeprefix(public_ws)
