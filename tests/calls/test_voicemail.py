"""Answering machines on outbound calls: the AMD parameters Twilio is given, its
asynchronous verdict, and the agent's policy carried out through the REST API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree

import pytest

from agents.models import Agent
from calls.models import Call
from tests.calls.outbound import creates, fake_twilio, signed_post
from tests.conftest import Tenant
from tests.factories import make_agent, make_phone_number
from tests.fakes.twilio_rest import FakeTwilioRest

PUBLIC = "https://voice.glassbox.example"


@pytest.fixture
def twilio(settings: Any) -> Iterator[FakeTwilioRest]:
    settings.PUBLIC_BASE_URL = PUBLIC
    with fake_twilio(settings) as fake:
        yield fake


def _agent_and_number(tenant: Tenant, **voicemail: Any) -> tuple[Any, Any]:
    org = tenant.organization
    agent = make_agent(org, first_message="Hello {{name}}.", voicemail=voicemail)
    return agent, make_phone_number(org, agent=agent)


def _place(tenant: Tenant, agent: Any, number: Any) -> dict[str, Any]:
    response = tenant.client.post(
        "/api/v1/calls/",
        {
            "agent": agent.pk,
            "from_number": number.pk,
            "to": "+14155550100",
            "variables": {"name": "Grace"},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body: dict[str, Any] = response.json()
    return body


def _verdict(twilio: FakeTwilioRest, call: dict[str, Any], answered_by: str) -> Any:
    url = creates(twilio)[0].value("AsyncAmdStatusCallback") or ""
    params = {
        "CallSid": call["carrier_call_sid"],
        "AccountSid": twilio.account_sid,
        "AnsweredBy": answered_by,
        "MachineDetectionDuration": "2450",
    }
    return signed_post(url, params)


def _updates(twilio: FakeTwilioRest, sid: str) -> list[dict[str, str]]:
    return twilio.calls[sid].history


def test_without_detection_twilio_is_not_asked(tenant_a: Tenant, twilio: FakeTwilioRest) -> None:
    agent, number = _agent_and_number(tenant_a)
    _place(tenant_a, agent, number)
    request = creates(twilio)[0]
    assert request.value("MachineDetection") is None
    assert request.value("AsyncAmd") is None


@pytest.mark.parametrize(
    ("action", "mode"), [("hangup", "Enable"), ("leave_message", "DetectMessageEnd")]
)
def test_detection_asks_for_asynchronous_amd_with_a_callback(
    tenant_a: Tenant, twilio: FakeTwilioRest, action: str, mode: str
) -> None:
    agent, number = _agent_and_number(
        tenant_a, detect=True, action=action, message="Please call us back, {{name}}."
    )
    call = _place(tenant_a, agent, number)
    request = creates(twilio)[0]
    assert request.value("MachineDetection") == mode
    assert request.value("AsyncAmd") == "true"
    assert request.value("AsyncAmdStatusCallback") == f"{PUBLIC}/telephony/twilio/amd/{call['id']}/"
    assert request.value("AsyncAmdStatusCallbackMethod") == "POST"


def test_a_machine_is_hung_up_on(tenant_a: Tenant, twilio: FakeTwilioRest) -> None:
    agent, number = _agent_and_number(tenant_a, detect=True, action="hangup", message="")
    call = _place(tenant_a, agent, number)
    assert _verdict(twilio, call, "machine_start").status_code == 204
    assert _updates(twilio, call["carrier_call_sid"]) == [{"Status": "completed"}]
    detail = tenant_a.client.get(f"/api/v1/calls/{call['id']}/").json()
    assert detail["answered_by"] == "machine_start"
    assert detail["amd_duration_ms"] == 2450
    assert detail["voicemail_action"] == "hangup"
    assert detail["end_reason"] == "voicemail"
    # A repeated verdict does nothing more.
    assert _verdict(twilio, call, "machine_start").status_code == 204
    assert len(_updates(twilio, call["carrier_call_sid"])) == 1


def test_a_message_is_left_after_the_beep_with_variables(
    tenant_a: Tenant, twilio: FakeTwilioRest
) -> None:
    agent, number = _agent_and_number(
        tenant_a, detect=True, action="leave_message", message="Please call us back, {{name}}."
    )
    call = _place(tenant_a, agent, number)
    sid = call["carrier_call_sid"]
    # The greeting has started: wait for its end.
    assert _verdict(twilio, call, "machine_start").status_code == 204
    assert _updates(twilio, sid) == []
    assert _verdict(twilio, call, "machine_end_beep").status_code == 204
    [update] = _updates(twilio, sid)
    twiml = ElementTree.fromstring(update["Twiml"])
    assert [el.tag for el in twiml] == ["Say", "Hangup"]
    assert twiml[0].text == "Please call us back, Grace."
    stored = Call.objects.for_org(tenant_a.organization).get(pk=call["id"])
    assert (stored.answered_by, stored.voicemail_action) == ("machine_end_beep", "left-message")


def test_a_human_changes_nothing(tenant_a: Tenant, twilio: FakeTwilioRest) -> None:
    agent, number = _agent_and_number(tenant_a, detect=True, action="hangup", message="")
    call = _place(tenant_a, agent, number)
    assert _verdict(twilio, call, "human").status_code == 204
    assert _updates(twilio, call["carrier_call_sid"]) == []
    stored = Call.objects.for_org(tenant_a.organization).get(pk=call["id"])
    assert (stored.answered_by, stored.voicemail_action, stored.end_reason) == ("human", "", "")


def test_bad_or_forged_verdicts_are_refused(tenant_a: Tenant, twilio: FakeTwilioRest) -> None:
    agent, number = _agent_and_number(tenant_a, detect=True, action="hangup", message="")
    call = _place(tenant_a, agent, number)
    url = creates(twilio)[0].value("AsyncAmdStatusCallback") or ""
    params = {"CallSid": call["carrier_call_sid"], "AnsweredBy": "robot"}
    assert signed_post(url, params).status_code == 400
    params["AnsweredBy"] = "machine_start"
    assert signed_post(url, params, token="forged").status_code == 403
    assert _updates(twilio, call["carrier_call_sid"]) == []


def test_leaving_a_message_needs_one(tenant_a: Tenant) -> None:
    response = tenant_a.client.post(
        "/api/v1/agents/",
        {
            "name": "Reminder",
            "stt": {"provider": "deepgram"},
            "llm": {"provider": "openai"},
            "tts": {"provider": "cartesia"},
            "voicemail": {"detect": True, "action": "leave_message"},
        },
        format="json",
    )
    assert response.status_code == 400
    assert "voicemail" in response.json()["error"]["fields"]


def test_the_agent_page_sets_the_voicemail_policy(tenant_a: Tenant) -> None:
    from tests.agents.test_pages import AGENT_POST, client_for

    member = client_for(tenant_a.organization)
    page = member.get("/agents/new/").content.decode()
    assert 'name="voicemail.action"' in page and "leave_message" in page
    leave = {
        **AGENT_POST,
        "voicemail.detect": "true",
        "voicemail.action": "leave_message",
        "voicemail.message": "",
    }
    refused = member.post("/agents/new/", leave)
    assert refused.status_code == 400
    assert "Needed to leave a message." in refused.content.decode()
    saved = member.post("/agents/new/", {**leave, "voicemail.message": "Call us, {{name}}."})
    assert saved.status_code == 302
    agent = Agent.objects.for_org(tenant_a.organization).get()
    assert agent.voicemail == {
        "detect": True,
        "action": "leave_message",
        "message": "Call us, {{name}}.",
    }


def test_the_call_page_shows_the_verdict_and_the_variables(
    tenant_a: Tenant, twilio: FakeTwilioRest
) -> None:
    from tests.agents.test_pages import client_for

    agent, number = _agent_and_number(tenant_a, detect=True, action="hangup", message="")
    call = _place(tenant_a, agent, number)
    _verdict(twilio, call, "machine_start")
    html = client_for(tenant_a.organization).get(f"/calls/{call['id']}/").content.decode()
    assert "machine_start (hangup)" in html
    assert "<code>name</code>: Grace" in html
