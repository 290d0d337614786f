"""Listen-in (calls/consumers.py CallListenConsumer, calls/livecall.py): a viewer of a
running call's page hears both sides; nothing is copied while nobody listens; another
organization's user and a logged-out one are refused.

The calls are real: a web call over its route (tests/calls/webclient.py, local providers)
and a Twilio call (tests/calls/e2e.py: μ-law at 8 kHz, the fake providers); the listener
is a real WebSocket with a viewer's session cookie."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections
from django.test import Client
from websockets.asyncio.client import connect

from calls import control
from calls.consumers import CLOSE_NOT_LOGGED_IN, CallListenConsumer
from calls.models import Call
from calls.webcalls import web_call_create
from glassbox.routing import websocket_urlpatterns
from tenants.models import Organization, Role
from tenants.services import membership_create
from tenants.web import SESSION_ORG_KEY
from tests.billing.test_concurrency_processes import _database_url, _servers
from tests.calls.e2e import _closing_server_connections, asgi_server, celery_tasks_run, platform
from tests.calls.webclient import spoken, web_call
from tests.conftest import make_tenant
from tests.factories import make_agent, make_call, make_user
from voice.carriers.twilio_caller import Pause, Say, WaitForBot

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://testserver")


def _cookie(organization: Organization, role: Role = Role.VIEWER) -> str:
    user = make_user()
    membership_create(organization=organization, user=user, role=role)
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _socket(call_id: int, cookie: str | None) -> Any:
    headers = [ORIGIN] + ([(b"cookie", cookie.encode())] if cookie else [])
    path = f"/ws/calls/{call_id}/listen/"
    return WebsocketCommunicator(URLRouter(websocket_urlpatterns), path, headers)


def _two_tenants() -> tuple[int, str, str]:
    ours = make_tenant("Listened")
    theirs = make_tenant("Elsewhere")
    call = make_call(ours.organization)
    return call.pk, _cookie(ours.organization), _cookie(theirs.organization, Role.OWNER)


async def test_a_logged_out_user_and_another_organization_are_refused() -> None:
    call_id, ours, theirs = await sync_to_async(_two_tenants)()
    ok, code = await _socket(call_id, None).connect()
    assert (ok, code) == (False, CLOSE_NOT_LOGGED_IN)
    ok, code = await _socket(call_id, theirs).connect()
    assert (ok, code) == (False, CallListenConsumer.CLOSE_NOT_FOUND)
    # our own viewer is let in, and the holder is told someone listens
    layer = get_channel_layer()
    holder = await layer.new_channel()
    await layer.group_add(control.control_group(call_id), holder)
    socket = _socket(call_id, ours)
    ok, _ = await socket.connect()
    assert ok
    hello = await asyncio.wait_for(layer.receive(holder), 5)
    assert hello["type"] == control.LISTENER_MESSAGE and hello["listening"] is True
    await socket.disconnect()
    bye = await asyncio.wait_for(layer.receive(holder), 5)
    assert bye["listening"] is False and bye["channel"] == hello["channel"]


def _seed() -> tuple[Any, str]:
    tenant = make_tenant("Listen-in")
    agent = make_agent(
        tenant.organization,
        first_message="Hello, this is a long enough greeting to be heard while listening.",
        llm={"provider": "scripted", "model": "computer => Let's fix your computer."},
        idle={"prompt": "Still there?", "timeout_s": 60.0, "max_prompts": 1, "goodbye": "Bye."},
    )
    return agent, _cookie(tenant.organization)


def _pcm(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype="<i2")


@pytest.mark.slow
async def test_a_listener_hears_both_sides_of_a_running_call() -> None:
    agent, cookie = await sync_to_async(_seed)()
    words = await spoken("I need help with my computer.")
    layer = get_channel_layer()
    with celery_tasks_run():
        async with asgi_server() as url, _closing_server_connections():
            ticket = await sync_to_async(web_call_create)(agent=agent, source="test")
            call_id = ticket.call.pk
            spy = await layer.new_channel()  # in the listen group, but no listener
            await layer.group_add(control.listen_group(call_id), spy)
            ws = url.replace("http://", "ws://")
            async with web_call(ws + ticket.ws_path) as client:
                await client.until(lambda: client.audio_bytes > 0)
                await client.say(words)
                await client.until(lambda: bool(client.transcript("user")))
                # the agent spoke and the caller was heard: nobody listened, nothing sent
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(layer.receive(spy), 0.5)

                caller: list[np.ndarray] = []
                agent_audio: list[np.ndarray] = []
                async with connect(
                    f"{ws}/ws/calls/{call_id}/listen/",
                    origin=url,  # type: ignore[arg-type]
                    additional_headers={"Cookie": cookie},
                ) as listener:
                    await client.say(words)  # the caller speaks again, and is answered
                    async with asyncio.timeout(30):
                        while not (
                            any(np.abs(c).max() > 1000 for c in caller if len(c))
                            and any(np.abs(a).max() > 1000 for a in agent_audio if len(a))
                        ):
                            message = json.loads(await listener.recv())
                            assert message["type"] == "audio"
                            assert message["sample_rate"] == 8000
                            caller.append(_pcm(message["caller"]))
                            agent_audio.append(_pcm(message["agent"]))
                spied = await asyncio.wait_for(layer.receive(spy), 5)
                assert spied["type"] == control.AUDIO_MESSAGE
            await layer.group_discard(control.listen_group(call_id), spy)
    await sync_to_async(connections.close_all)()


def _streaming(call_sid: str) -> int | None:
    call = Call.objects.dangerously_unscoped().filter(carrier_call_sid=call_sid).first()
    return call.pk if call is not None and call.stream_connected_at is not None else None


async def _streaming_call(call_sid: str) -> int:
    async with asyncio.timeout(20):
        while True:
            call_id = await sync_to_async(_streaming)(call_sid)
            if call_id is not None:
                return call_id
            await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_a_phone_calls_mulaw_is_heard_as_pcm16(settings: Any) -> None:
    """A Twilio call (μ-law at 8 kHz, tests/calls/e2e.py's simulated caller and fakes):
    the listener gets both sides decoded to PCM16, and ``ended`` when the call is over."""
    async with platform(settings) as live:
        cookie = await sync_to_async(_cookie)(live.organization)
        sid = "CA" + secrets.token_hex(16)
        script = [
            Pause(1500),  # time for the listener to join
            WaitForBot(quiet_ms=300),
            Say(tone_ms=900, label="order"),
            WaitForBot(quiet_ms=300),
            Pause(200),
        ]
        placed = asyncio.create_task(live.call(script, call_sid=sid))
        call_id = await _streaming_call(sid)
        ws = live.url.replace("http://", "ws://")
        caller: list[np.ndarray] = []
        agent_audio: list[np.ndarray] = []
        async with connect(
            f"{ws}/ws/calls/{call_id}/listen/",
            origin=live.url,  # type: ignore[arg-type]
            additional_headers={"Cookie": cookie},
        ) as listener:
            last: dict[str, Any] = {}
            async with asyncio.timeout(30):
                async for raw in listener:
                    last = json.loads(raw)
                    if last["type"] == "audio":
                        assert last["sample_rate"] == 8000
                        caller.append(_pcm(last["caller"]))
                        agent_audio.append(_pcm(last["agent"]))
            assert last == {"type": "ended"}
        result = await placed
    assert result.errors == []
    assert max(np.abs(c).max() for c in caller if len(c)) > 1000  # the caller's tone
    assert max(np.abs(a).max() for a in agent_audio if len(a)) > 1000  # the agent's reply


def _two_process_seed() -> tuple[str, int, str]:
    tenant = make_tenant("Listened Across")
    agent = make_agent(
        tenant.organization,
        first_message="Hello.",
        idle={"prompt": "Still there?", "timeout_s": 300.0, "max_prompts": 1, "goodbye": "Bye."},
    )
    user = make_user()
    membership_create(organization=tenant.organization, user=user, role=Role.VIEWER)
    client = Client()
    client.force_login(user)
    session = client.session
    session[SESSION_ORG_KEY] = tenant.organization.pk
    session.save()
    return tenant.key, agent.pk, session.session_key or ""


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL); CI sets it")
async def test_a_listener_on_one_process_hears_a_call_held_by_another(tmp_path: Path) -> None:
    """Two server processes sharing Redis (as tests/calls/test_control_processes.py): the
    web call runs on B, the listener's socket is served by A."""
    api_key, agent_id, session_key = await sync_to_async(_two_process_seed)()
    words = await spoken("I need help with my computer.")
    env = {
        **os.environ,
        "DATABASE_URL": await sync_to_async(_database_url)(),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "CELERY_TASK_ALWAYS_EAGER": "1",
        "STRIPE_SECRET_KEY": "",
    }
    auth = {"Authorization": f"Bearer {api_key}"}
    with _servers(env, tmp_path) as (a, b):
        await asyncio.gather(a.ready(), b.ready())
        async with httpx.AsyncClient(base_url=a.url, headers=auth, timeout=30) as api:
            started = await api.post(f"/api/v1/agents/{agent_id}/web-calls/")
            assert started.status_code == 201, started.text
            ticket = started.json()
            call_id = ticket["call"]
            b_ws = b.url.replace("http://", "ws://") + ticket["ws_path"]
            async with web_call(b_ws) as caller:
                await caller.until(lambda: "Hello." in caller.transcript("assistant"))
                listen_url = a.url.replace("http://", "ws://") + f"/ws/calls/{call_id}/listen/"
                headers = {
                    "Cookie": f"{settings.SESSION_COOKIE_NAME}={session_key}",
                    "Origin": a.url,
                }
                heard: dict[str, int] = {"caller": 0, "agent": 0}
                async with connect(listen_url, additional_headers=headers) as listener:
                    await caller.say(words)
                    said = await api.post(
                        f"/api/v1/calls/{call_id}/control/",
                        json={"action": "say", "text": "Someone is listening in."},
                    )
                    assert said.status_code == 202, said.text
                    async with asyncio.timeout(30):
                        while not (heard["caller"] > 1000 and heard["agent"] > 1000):
                            message = json.loads(await listener.recv())
                            for side in heard:
                                samples = _pcm(message[side])
                                if len(samples):
                                    heard[side] = max(heard[side], int(np.abs(samples).max()))
                    ended = await api.post(
                        f"/api/v1/calls/{call_id}/control/", json={"action": "end"}
                    )
                    assert ended.status_code == 202, ended.text
                    async with asyncio.timeout(15):
                        async for raw in listener:
                            if json.loads(raw)["type"] == "ended":
                                break
                        else:
                            raise AssertionError("closed without 'ended'")
    await sync_to_async(connections.close_all)()
