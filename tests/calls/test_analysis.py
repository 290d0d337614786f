"""Post-call analysis against the fake OpenAI server, through the official SDK.

The task runs as Celery runs it (in-process, the eager path): finalizing a call sends
``call_finalized``; once the transaction commits the analysis task is queued and runs
the real SDK against the fake on this test's event loop, from the worker thread.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from billing.models import CallUsage
from calls import services
from calls.models import Call
from calls.signals import call_analyzed
from tests.conftest import Tenant
from tests.factories import (
    make_agent,
    make_call,
    make_credential,
    make_phone_number,
    make_transcript_entry,
)
from tests.fakes.openai import FakeOpenAI, FakeReply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_in_process")]

SCHEMA = {
    "type": "object",
    "properties": {
        "order_number": {"type": ["string", "null"]},
        "items": {"type": "integer", "minimum": 0},
    },
    "required": ["order_number", "items"],
}
ANALYSIS = {
    "summary_prompt": "Sum the call up in one sentence.",
    "structured_data_schema": SCHEMA,
    "success_rubric": "The caller's order was found.",
}


@pytest.fixture
async def fake(settings: Any) -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    async with fake:
        settings.OPENAI_BASE_URL = fake.url
        settings.OPENAI_API_KEY = fake.api_key
        yield fake


@pytest.fixture
def analyzed() -> Iterator[list[Call]]:
    received: list[Call] = []

    def receiver(sender: Any, call: Call, **kwargs: Any) -> None:
        received.append(call)

    call_analyzed.connect(receiver, dispatch_uid="test-analyzed")
    yield received
    call_analyzed.disconnect(dispatch_uid="test-analyzed")


def answers(
    *, summary: str = "The caller asked about order 42.", data: Any = None, verdict: Any = None
) -> Any:
    """A structured responder: which request is which, from its schema's name."""
    data = data if data is not None else [{"order_number": "42", "items": 2}]
    verdicts = verdict if verdict is not None else [{"success": True, "reason": "Found it."}]

    def structured(messages: list[dict[str, Any]], response_format: dict[str, Any]) -> Any:
        name = response_format["json_schema"]["name"]
        pool = data if name == "structured_data" else verdicts
        reply = pool.pop(0) if len(pool) > 1 else pool[0]
        return reply if isinstance(reply, FakeReply) else json.dumps(reply)

    return summary, structured


def _ended_call(tenant: Tenant, analysis: dict[str, Any], **agent: Any) -> Call:
    org = tenant.organization
    agent_fields: dict[str, Any] = {
        "llm": {"provider": "openai", "model": "gpt-fake", "temperature": 0.2, "max_tokens": 200},
        "analysis": analysis,
        **agent,
    }
    number = make_phone_number(org, agent=make_agent(org, **agent_fields))
    call = make_call(org, phone_number=number)
    make_transcript_entry(org, call=call, role="assistant", text="Hello, how can I help?")
    make_transcript_entry(
        org,
        call=call,
        role="user",
        text="Where is order 42? Mail me at jo@example.com",
        turn_index=1,
    )
    call.status, call.ended_at = "completed", timezone.now()
    call.save(update_fields=["status", "ended_at"])
    return call


async def _finalize(call: Call) -> Call:
    await sync_to_async(services.call_finalize)(call=call)
    return await Call.objects.dangerously_unscoped().aget(pk=call.pk)


async def _setup(tenant: Tenant, analysis: dict[str, Any] = ANALYSIS, **agent: Any) -> Call:
    return await sync_to_async(_ended_call)(tenant, analysis, **agent)


async def test_summary_structured_data_and_verdict_are_stored_and_returned(
    tenant_a: Tenant, fake: FakeOpenAI, analyzed: list[Call]
) -> None:
    summary, structured = answers()
    fake.responder = lambda messages, tools: summary
    fake.structured_responder = structured
    call = await _finalize(await _setup(tenant_a))

    assert call.analysis_status == "completed", call.analysis_error
    assert [c.pk for c in analyzed] == [call.pk]
    detail = await sync_to_async(tenant_a.client.get)(f"/api/v1/calls/{call.pk}/")
    analysis = detail.json()["analysis"]
    assert analysis["status"] == "completed" and analysis["error"] == ""
    assert analysis["summary"] == "The caller asked about order 42."
    assert analysis["structured_data"] == {"order_number": "42", "items": 2}
    assert analysis["success"] is True and analysis["success_reason"] == "Found it."
    assert analysis["analyzed_at"] is not None
    # every request's tokens are counted on the call
    assert analysis["prompt_tokens"] > 0 and analysis["completion_tokens"] > 0
    assert detail.json()["analysis_prompt_tokens"] == analysis["prompt_tokens"]
    # ... and in billing's usage of the call
    usage = await CallUsage.objects.for_org(tenant_a.organization).aget(call_id=call.pk)
    assert (usage.analysis_prompt_tokens, usage.analysis_completion_tokens) == (
        analysis["prompt_tokens"],
        analysis["completion_tokens"],
    )

    # structured outputs on the wire: the tenant's schema as the response format
    formats = [r.get("response_format") for r in fake.requests]
    assert formats[0] is None  # the summary is text
    assert formats[1] == {
        "type": "json_schema",
        "json_schema": {"name": "structured_data", "schema": SCHEMA, "strict": False},
    }
    verdict = formats[2]["json_schema"]
    assert verdict["strict"] is True and verdict["schema"]["properties"]["success"] == {
        "type": "boolean"
    }
    assert all(r["model"] == "gpt-fake" for r in fake.requests)
    assert "Where is order 42?" in fake.requests[0]["messages"][-1]["content"]


async def test_invalid_structured_data_is_retried_with_the_reason(
    tenant_a: Tenant, fake: FakeOpenAI
) -> None:
    summary, structured = answers(
        data=[{"order_number": "42", "items": -1}, {"order_number": "42", "items": 1}]
    )
    fake.responder = lambda messages, tools: summary
    fake.structured_responder = structured
    call = await _finalize(await _setup(tenant_a))
    assert call.analysis_status == "completed"
    assert call.analysis["structured_data"] == {"order_number": "42", "items": 1}
    retry = [r for r in fake.requests if "response_format" in r][1]["messages"]
    assert retry[-2]["content"] == json.dumps({"order_number": "42", "items": -1})
    assert "-1 is less than the minimum of 0" in retry[-1]["content"]


async def test_output_that_never_validates_fails_that_part_only(
    tenant_a: Tenant, fake: FakeOpenAI, analyzed: list[Call]
) -> None:
    summary, structured = answers(data=["not json at all"])
    fake.responder = lambda messages, tools: summary
    fake.structured_responder = lambda m, f: (
        "not json" if f["json_schema"]["name"] == "structured_data" else structured(m, f)
    )
    call = await _finalize(await _setup(tenant_a, {**ANALYSIS, "max_attempts": 2}))
    assert call.analysis_status == "failed"
    assert call.analysis_error.startswith(
        "structured_data: invalid output after 2 attempts: not JSON"
    )
    assert call.analysis["structured_data"] is None
    # the other parts are kept
    assert call.analysis["summary"] == "The caller asked about order 42."
    assert call.analysis["success"] is True
    assert [c.pk for c in analyzed] == [call.pk]


async def test_a_score_against_the_rubric(tenant_a: Tenant, fake: FakeOpenAI) -> None:
    fake.structured_responder = lambda m, f: json.dumps({"score": 7, "reason": "Mostly."})
    analysis = {
        "success_rubric": "Was the caller helped?",
        "success_evaluation": "score",
        "score_max": 10,
    }
    call = await _finalize(await _setup(tenant_a, analysis))
    assert call.analysis_status == "completed"
    assert call.analysis["success"] == 7 and call.analysis["summary"] is None
    schema = fake.requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["score"] == {"type": "integer", "minimum": 0, "maximum": 10}


async def test_provider_errors_are_retried_then_succeed(tenant_a: Tenant, fake: FakeOpenAI) -> None:
    fake.responder = lambda messages, tools: "A summary."
    # the SDK tries twice per task attempt: two task attempts fail, the third works
    fake.fail_next(500, times=4)
    call = await _finalize(await _setup(tenant_a, {"summary_prompt": "Sum up."}))
    assert call.analysis_status == "completed"
    assert call.analysis["summary"] == "A summary."
    assert len(fake.requests) == 5


async def test_a_provider_that_keeps_failing_is_recorded_as_failed(
    tenant_a: Tenant, fake: FakeOpenAI, analyzed: list[Call]
) -> None:
    fake.fail_next(503, times=100)
    call = await _finalize(await _setup(tenant_a, {"summary_prompt": "Sum up."}))
    assert call.analysis_status == "failed"
    assert call.analysis_error.startswith("provider: the model's server kept failing")
    assert [c.pk for c in analyzed] == [call.pk]


async def test_an_unauthorized_key_fails_at_once_with_the_reason(
    tenant_a: Tenant, fake: FakeOpenAI
) -> None:
    # the tenant's own key, which the server does not know
    credential = await sync_to_async(make_credential)(tenant_a.organization, "openai")
    call = await _finalize(
        await _setup(tenant_a, {"summary_prompt": "Sum up."}, llm_credential=credential)
    )
    assert call.analysis_status == "failed"
    assert call.analysis_error == "summary: the model's server answered HTTP 401"
    assert len(fake.requests) == 0  # refused before it was recorded: the key was checked
    assert len(fake.request_headers) == 1


async def test_no_analysis_configured_sends_nothing(tenant_a: Tenant, fake: FakeOpenAI) -> None:
    call = await _finalize(await _setup(tenant_a, {}))
    assert call.analysis_status == "" and call.analysis == {}
    assert fake.requests == []


async def test_an_agent_without_an_openai_llm_uses_the_platform_model(
    tenant_a: Tenant, fake: FakeOpenAI, settings: Any
) -> None:
    settings.ANALYSIS_MODEL = "platform-model"
    fake.responder = lambda messages, tools: "Summed up."
    call = await _finalize(
        await _setup(
            tenant_a,
            {"summary_prompt": "Sum up."},
            llm={"provider": "scripted", "model": "", "temperature": 0.7, "max_tokens": 100},
        )
    )
    assert call.analysis_status == "completed"
    assert fake.requests[0]["model"] == "platform-model"


async def test_no_model_at_all_is_a_clear_failure(tenant_a: Tenant, settings: Any) -> None:
    settings.OPENAI_API_KEY = ""
    call = await _finalize(
        await _setup(
            tenant_a,
            {"summary_prompt": "Sum up."},
            llm={"provider": "scripted", "model": "", "temperature": 0.7, "max_tokens": 100},
        )
    )
    assert call.analysis_status == "failed"
    assert "No OpenAI-compatible model for analysis" in call.analysis_error


async def test_analysis_inputs_are_redacted_when_the_organization_redacts(
    tenant_a: Tenant, fake: FakeOpenAI
) -> None:
    fake.responder = lambda messages, tools: "Summed up."
    org = tenant_a.organization
    call = await _setup(tenant_a, {"summary_prompt": "Sum up."})
    org.redact_transcripts = True
    await org.asave(update_fields=["redact_transcripts"])
    await _finalize(call)
    sent = fake.requests[0]["messages"][-1]["content"]
    assert "jo@example.com" not in sent and "Mail me at [email]" in sent


def test_the_call_page_shows_the_analysis(tenant_a: Tenant) -> None:
    from django.test import Client

    from tenants.services import membership_create
    from tests.factories import make_user

    call = _ended_call(tenant_a, ANALYSIS)
    user = make_user()
    membership_create(organization=tenant_a.organization, user=user, role="viewer")
    client = Client()
    client.force_login(user)
    assert "data-analysis" not in client.get(f"/calls/{call.pk}/").content.decode()
    call.analysis_status = "failed"
    call.analysis = {
        "summary": "The caller <b>asked</b> about order 42.",
        "structured_data": {"order_number": "42"},
        "success": False,
        "success_reason": "Not found.",
    }
    call.analysis_error = "structured_data: invalid output after 3 attempts: 'items' is required"
    call.save()
    html = client.get(f"/calls/{call.pk}/").content.decode()
    section = html[html.index("data-analysis") :]
    assert "The caller &lt;b&gt;asked&lt;/b&gt; about order 42." in section
    assert '"order_number": "42"' in section.replace("&quot;", '"')
    assert "Not found." in section and ">fail<" in section
    assert "&#x27;items&#x27; is required" in section
