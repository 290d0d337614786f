"""Live state and control across web processes, with a real Redis.

Two real server processes (uvicorn subprocesses, tests/billing/test_concurrency_
processes.py's ``Server``) share the test database and Redis. A web call runs on
process B; process A serves the call's live view (its socket streams B's call) and the
control API, and the agent on B says the line that A was asked for, then ends the call.

Needs Redis (skipped when REDIS_URL is unset; CI sets it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.test import Client
from websockets.asyncio.client import connect

from calls.models import CallControlAction
from tenants.models import Role
from tenants.services import membership_create
from tenants.web import SESSION_ORG_KEY
from tests.billing.test_concurrency_processes import _database_url, _servers
from tests.calls.webclient import web_call
from tests.conftest import make_tenant
from tests.factories import make_agent, make_user

pytestmark = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL); CI sets it"
)

LINE = "Process A asked me to say this."


def _seed() -> tuple[str, int, str]:
    tenant = make_tenant("Two Processes Ltd")
    agent = make_agent(
        tenant.organization,
        first_message="Hello.",
        idle={"prompt": "Still there?", "timeout_s": 300.0, "max_prompts": 1, "goodbye": "Bye."},
    )
    user = make_user()
    membership_create(organization=tenant.organization, user=user, role=Role.MEMBER)
    client = Client()
    client.force_login(user)
    session = client.session
    session[SESSION_ORG_KEY] = tenant.organization.pk
    session.save()
    return tenant.key, agent.pk, session.session_key or ""


def _actions(call_id: int) -> list[tuple[str, bool]]:
    rows = CallControlAction.objects.dangerously_unscoped().filter(call_id=call_id)
    return list(rows.order_by("id").values_list("action", "delivered"))


@pytest.mark.timeout(300)
async def test_control_and_live_view_served_by_a_reach_the_call_on_b(
    transactional_db: Any, tmp_path: Path
) -> None:
    api_key, agent_id, session_key = await sync_to_async(_seed)()
    env = {
        **os.environ,
        "DATABASE_URL": await sync_to_async(_database_url)(),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "CELERY_TASK_ALWAYS_EAGER": "1",
        "CALL_LIVE_INTERVAL_S": "0.05",
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

                states: list[dict[str, Any]] = []
                ended_seen = asyncio.Event()
                live_url = a.url.replace("http://", "ws://") + f"/ws/calls/{call_id}/live/"
                headers = {
                    "Cookie": f"{settings.SESSION_COOKIE_NAME}={session_key}",
                    "Origin": a.url,
                }
                async with connect(live_url, additional_headers=headers) as live:

                    async def watch() -> None:
                        async for raw in live:
                            states.append(json.loads(raw))
                            if states[-1].get("state", {}).get("phase") == "ended":
                                ended_seen.set()

                    watcher = asyncio.create_task(watch())
                    await caller.until(lambda: bool(states))
                    assert states[0]["type"] == "state"  # the stored state, first
                    # the mirror may lag the socket's own transcript frame a little
                    await caller.until(
                        lambda: any(
                            [t["text"] for t in s["state"]["transcript"]][:1] == ["Hello."]
                            for s in states
                        )
                    )

                    mirrored = (await api.get(f"/api/v1/calls/{call_id}/live/")).json()
                    assert mirrored["live"] is True and mirrored["phase"] == "listening"

                    said = await api.post(
                        f"/api/v1/calls/{call_id}/control/", json={"action": "say", "text": LINE}
                    )
                    assert said.status_code == 202, said.text
                    await caller.until(lambda: LINE in caller.transcript("assistant"))
                    await caller.until(
                        lambda: any(
                            LINE in [t["text"] for t in s.get("state", {}).get("transcript", [])]
                            for s in states
                        )
                    )
                    ended = await api.post(
                        f"/api/v1/calls/{call_id}/control/", json={"action": "end"}
                    )
                    assert ended.status_code == 202, ended.text
                    await caller.until(lambda: bool(caller.events("stop")))
                    assert caller.events("stop") == [{"reason": "operator-ended"}]
                    # the live view (A) may hear "ended" after the caller's socket (B) has
                    # closed, so this waits on the live view alone
                    async with asyncio.timeout(30):
                        await ended_seen.wait()
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
            # The engine's own phase reads "ended" a moment before B drops the mirror.
            async with asyncio.timeout(10):
                while True:
                    if not (await api.get(f"/api/v1/calls/{call_id}/live/")).json()["live"]:
                        break
                    await asyncio.sleep(0.1)
            detail = (await api.get(f"/api/v1/calls/{call_id}/")).json()
            assert detail["direction"] == "web"
            assert [(c["action"], c["delivered"]) for c in detail["control_actions"]] == [
                ("say", True),
                ("end", True),
            ]
    assert await sync_to_async(_actions)(call_id) == [("say", True), ("end", True)]
    # The database work above ran on asgiref's worker thread: close its connection there.
    await sync_to_async(connections.close_all)()
