"""The concurrency limit holds across web processes, and a dead process's slots come back.

Two real server processes (uvicorn subprocesses on two ports) share the test database and
the real Redis. An organization on a plan of 2 concurrent calls has one live call on each
process; a third call is refused on either, with a spoken line and no media stream. Then
one process is killed (SIGKILL: no cleanup runs) and its call's slot is free again once
its lease expires, while the other process's live call keeps its own.

Needs Redis (skipped when REDIS_URL is unset; CI sets it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, connections

from billing.models import Plan
from billing.services import plan_assign
from calls.models import Call, PhoneNumber
from tests.conftest import make_tenant
from tests.factories import make_agent, make_credential, make_phone_number
from tests.fakes.cartesia import FakeCartesia
from tests.fakes.deepgram import FakeDeepgram
from tests.fakes.openai import FakeOpenAI
from voice.carriers.twilio_caller import CallerConfig, Pause, place_call, signed_headers

pytestmark = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL); CI sets it"
)

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_BASE_URL = "https://voice.glassbox.example"
CALLER = "+15005550006"
LEASE_S = 2.0
HEARTBEAT_S = 0.4


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return "sqlite:///" + str(Path(db["NAME"]).resolve())
    assert connection.vendor == "postgresql", connection.vendor
    user = quote(db.get("USER") or "")
    password = quote(db.get("PASSWORD") or "")
    auth = f"{user}:{password}@" if password else f"{user}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "glassbox.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--lifespan",
                "off",
                "--ws",
                "websockets-sansio",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def ready(self, timeout_s: float = 90.0) -> None:
        async with asyncio.timeout(timeout_s), httpx.AsyncClient() as http:
            while True:
                assert self.process.poll() is None, "server exited; see its log"
                with contextlib.suppress(httpx.HTTPError):
                    await http.get(self.url + "/login/")
                    return
                await asyncio.sleep(0.2)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def _seed(prefix: str) -> tuple[PhoneNumber, int]:
    tenant = make_tenant("Two Lines Ltd")
    org = tenant.organization
    plan = Plan.objects.create(name=f"Two lines {prefix}", max_concurrent_calls=2)
    plan_assign(organization=org, plan=plan)
    agent = make_agent(
        org,
        first_message="Hello.",
        stt={"provider": "deepgram", "model": "nova-3", "language": "en-US"},
        llm={"provider": "openai", "model": "gpt-fake", "temperature": 0.2, "max_tokens": 50},
        tts={"provider": "cartesia", "voice": "fake-voice", "model": "sonic-2", "speed": 1.0},
        idle={"prompt": "Still there?", "timeout_s": 300.0, "max_prompts": 1, "goodbye": "Bye."},
    )
    number = make_phone_number(org, agent=agent, credential=make_credential(org, "twilio"))
    return number, org.pk


@contextlib.contextmanager
def _servers(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    a = Server(env, tmp_path / "a.log")
    b = Server(env, tmp_path / "b.log")
    try:
        yield a, b
    finally:
        for server in (a, b):
            server.stop()


@contextlib.asynccontextmanager
async def _fakes() -> AsyncIterator[tuple[FakeDeepgram, FakeOpenAI, FakeCartesia]]:
    deepgram, openai, cartesia = FakeDeepgram(), FakeOpenAI(), FakeCartesia()
    async with deepgram, openai, cartesia:
        yield deepgram, openai, cartesia


def _params(number: PhoneNumber, call_sid: str) -> dict[str, str]:
    return {
        "CallSid": call_sid,
        "AccountSid": number.credential.account_sid,
        "From": CALLER,
        "To": number.number,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }


async def _dial(server: Server, number: PhoneNumber) -> tuple[str, ET.Element]:
    """POST the signed voice webhook (no stream opened); the SID and the TwiML."""
    sid = "CA" + secrets.token_hex(16)
    params = _params(number, sid)
    path = "/telephony/twilio/voice/"
    headers = signed_headers(number.credential.auth_token, PUBLIC_BASE_URL + path, params)
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(server.url + path, data=params, headers=headers)
    assert response.status_code == 200, response.text
    return sid, ET.fromstring(response.text)


def _refused(twiml: ET.Element) -> bool:
    tags = [child.tag for child in twiml]
    if tags == ["Say", "Hangup"]:
        return True
    assert tags == ["Connect"], tags  # admitted: a media stream, nothing else
    return False


def _call(sid: str) -> Call | None:
    return Call.objects.dangerously_unscoped().filter(carrier_call_sid=sid).first()


async def _wait_connected(sid: str, timeout_s: float = 60.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            call = await sync_to_async(_call)(sid)
            if call is not None and call.stream_connected_at is not None:
                return
            await asyncio.sleep(0.1)


@pytest.mark.timeout(300)
async def test_third_call_refused_across_processes_and_dead_process_slot_expires(
    transactional_db: Any, tmp_path: Path
) -> None:
    prefix = f"glassbox-test-{secrets.token_hex(4)}:"
    number, organization_id = await sync_to_async(_seed)(prefix)
    number = await sync_to_async(
        lambda: (
            PhoneNumber.objects.dangerously_unscoped()
            .select_related("credential")
            .get(pk=number.pk)
        )
    )()
    async with _fakes() as (deepgram, openai, cartesia):
        env = {
            **os.environ,
            "DATABASE_URL": await sync_to_async(_database_url)(),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_TASK_ALWAYS_EAGER": "1",
            "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "DEEPGRAM_BASE_URL": deepgram.url,
            "DEEPGRAM_API_KEY": deepgram.api_key,
            "OPENAI_BASE_URL": openai.url,
            "OPENAI_API_KEY": openai.api_key,
            "CARTESIA_BASE_URL": cartesia.url,
            "CARTESIA_API_KEY": cartesia.api_key,
            "BILLING_CALL_LEASE_S": str(LEASE_S),
            "CALL_HEARTBEAT_S": str(HEARTBEAT_S),
            "BILLING_REDIS_PREFIX": prefix,
            "STRIPE_SECRET_KEY": "",
        }
        with _servers(env, tmp_path) as (a, b):
            await asyncio.gather(a.ready(), b.ready())

            def caller(server: Server, sid: str) -> CallerConfig:
                return CallerConfig(
                    public_base_url=PUBLIC_BASE_URL,
                    connect_base_url=server.url,
                    account_sid=number.credential.account_sid,
                    auth_token=number.credential.auth_token,
                    from_number=CALLER,
                    to_number=number.number,
                    call_sid=sid,
                    max_call_s=120.0,
                )

            sid_a, sid_b = "CA" + secrets.token_hex(16), "CA" + secrets.token_hex(16)
            # Two live calls, one on each process, talking silence for a long while.
            call_a = asyncio.create_task(place_call(caller(a, sid_a), [Pause(ms=100_000)]))
            call_b = asyncio.create_task(place_call(caller(b, sid_b), [Pause(ms=100_000)]))
            try:
                await asyncio.gather(_wait_connected(sid_a), _wait_connected(sid_b))
                # Longer than a lease: only the live calls' heartbeats keep their slots.
                await asyncio.sleep(LEASE_S * 2)

                for server in (a, b):
                    sid, twiml = await _dial(server, number)
                    assert _refused(twiml)
                    assert "lines are busy" in (twiml.find("Say").text or "")
                    refused = await sync_to_async(_call)(sid)
                    assert refused is not None and refused.end_reason == "refused"
                    assert refused.end_detail.startswith("Concurrent call limit reached: 2 of 2")
                    assert refused.stream_connected_at is None

                # The calls API lists the refused call with its reason.
                assert await sync_to_async(_api_refused_count)(organization_id) == 2

                a.kill()  # no call end, no release: only the lease's expiry frees the slot
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(call_a, 30)
                admitted = None
                async with asyncio.timeout(60):
                    while admitted is None:
                        sid, twiml = await _dial(b, number)
                        if not _refused(twiml):
                            admitted = sid
                        else:
                            await asyncio.sleep(0.2)
                # The process that lives still holds its call's slot: full again.
                _, twiml = await _dial(b, number)
                assert _refused(twiml)
                assert not call_b.done()
            finally:
                call_b.cancel()
                call_a.cancel()
                await asyncio.gather(call_a, call_b, return_exceptions=True)
    redis.Redis.from_url(settings.REDIS_URL).delete(f"{prefix}calls:{organization_id}")
    # The database work above ran on asgiref's worker thread: close its connection there,
    # or PostgreSQL refuses to drop the test database.
    await sync_to_async(connections.close_all)()


def _api_refused_count(organization_id: int) -> int:
    from rest_framework.test import APIClient

    from tenants.models import Organization
    from tenants.services import api_key_create

    organization = Organization.objects.get(pk=organization_id)
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {api_key_create(organization=organization).raw_key}"
    )
    rows = client.get("/api/v1/calls/").json()["results"]
    return sum(1 for row in rows if row["end_reason"] == "refused")
