"""The issue's "done" line: a tenant with a webhook endpoint (and an agent webhook) gets,
for a ``simulate_call``, ``call.started``, ``call.ended`` and ``call.analyzed`` (the
agent's post-call analysis, run against the fake OpenAI server) at its listener,
verifiable with the snippet in docs/webhooks.md.

The whole platform runs (tests/calls/e2e.py): the real ASGI app under uvicorn, the fake
speech providers, the simulated Twilio caller, and Celery (in-process, or a real worker
through Redis when ``REDIS_URL`` is set)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from agents import services as agent_services
from tests.calls.e2e import Platform, platform
from tests.factories import make_webhook_endpoint
from tests.webhooks.listener import Listener, documented_verify

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

AGENT_SECRET = "agent-webhook-secret-123"


@pytest.fixture
async def live(settings: Any, listener: Listener) -> Any:
    async with platform(settings) as p:
        yield p


def _simulate(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("simulate_call", *args, stdout=out)
    return json.loads(out.getvalue())


def _setup(live: Platform, listener: Listener) -> str:
    endpoint = make_webhook_endpoint(
        live.organization,
        url=listener.url + "/endpoint",
        events=["call.started", "call.ended", "call.analyzed"],
    )
    agent_services.agent_update(
        agent=live.agent,
        data={
            "webhook_url": listener.url + "/agent",
            "webhook_secret": AGENT_SECRET,
            # Post-call analysis against the fake OpenAI server: its end sends call_analyzed.
            "analysis": {
                "summary_prompt": "Summarize the call in one sentence.",
                "structured_data_schema": {},
                "success_rubric": "",
            },
        },
    )
    return endpoint.secret


async def test_simulate_call_delivers_signed_call_events(
    live: Platform, listener: Listener
) -> None:
    secret = await sync_to_async(_setup)(live, listener)
    report = await sync_to_async(_simulate, thread_sensitive=False)(
        "--base-url", live.url, "--to", live.number.number,
        "--say", "I need help with my order", "--json",
    )  # fmt: skip
    call_id = report["call"]["id"]

    def ended_at_both(got: list[Any]) -> bool:
        return {(r.path, r.event["type"]) for r in got} >= {
            ("/hooks/endpoint", "call.started"),
            ("/hooks/endpoint", "call.ended"),
            ("/hooks/agent", "call.started"),
            ("/hooks/agent", "call.ended"),
        }

    await sync_to_async(listener.wait_for, thread_sensitive=False)(ended_at_both)
    got = await sync_to_async(listener.wait_for, thread_sensitive=False)(
        lambda got: len([r for r in got if r.event["type"] == "call.analyzed"]) == 2
    )

    verify = documented_verify()
    for request in got:
        key = secret if request.path == "/hooks/endpoint" else AGENT_SECRET
        assert verify(request.body, request.signature, key), request.path
        assert request.event["data"]["call"]["id"] == call_id
    endpoint_events = [r.event for r in got if r.path == "/hooks/endpoint"]
    assert sorted(e["type"] for e in endpoint_events) == [
        "call.analyzed",
        "call.ended",
        "call.started",
    ]
    analyzed = next(e for e in endpoint_events if e["type"] == "call.analyzed")["data"]
    assert analyzed["analysis"]["status"] == "completed", analyzed["analysis"]
    assert analyzed["analysis"]["summary"]
    ended = next(e for e in endpoint_events if e["type"] == "call.ended")["data"]
    assert ended["call"]["status"] == "completed"
    assert ended["call"]["end_reason"] == "caller-hangup"
    assert ended["call"]["duration_ms"] > 0
    assert [t["role"] for t in ended["transcript"]][:3] == ["assistant", "user", "assistant"]
    assert ended["metrics"]["turns"] >= 1
    assert ended["metrics"]["stages"]["voice_to_voice_ms"]["p50"] is not None
    assert ended["usage"]["stt_seconds"] > 0
    # Each event went to each destination once, under one id.
    ids = [(r.path, r.event["id"]) for r in got]
    assert len(ids) == len(set(ids)) == 6
