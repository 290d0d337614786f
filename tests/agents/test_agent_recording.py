"""The agent's recording mode: one setting, from the API and the form to the engine."""

from __future__ import annotations

from typing import Any

from django.test import Client

from agents.models import Agent
from calls.callconfig import call_config_build
from tenants.models import Role
from tenants.services import membership_create
from tests.agents.test_pages import AGENT_POST
from tests.conftest import Tenant
from tests.factories import make_agent, make_call, make_phone_number, make_user
from voice.config import CallConfig, RecordingMode

BASE = {
    "name": "Support",
    "stt": {"provider": "deepgram"},
    "llm": {"provider": "openai"},
    "tts": {"provider": "cartesia"},
}


def test_recording_is_off_unless_asked_for(tenant_a: Tenant) -> None:
    body = tenant_a.client.post("/api/v1/agents/", BASE, format="json").json()
    assert body["recording"] == CallConfig.__dataclass_fields__["recording"].default == "off"


def test_the_api_sets_and_validates_it(tenant_a: Tenant) -> None:
    created = tenant_a.client.post("/api/v1/agents/", {**BASE, "recording": "dual"}, format="json")
    assert created.status_code == 201 and created.json()["recording"] == "dual"
    url = f"/api/v1/agents/{created.json()['id']}/"
    bad = tenant_a.client.patch(url, {"recording": "stereo"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"]["recording"] == ['"stereo" is not a valid choice.']
    assert tenant_a.client.patch(url, {"recording": "mono"}, format="json").json()["recording"] == (
        "mono"
    )


def test_a_call_runs_with_the_mode_its_agent_had(tenant_a: Tenant) -> None:
    agent = make_agent(tenant_a.organization, recording="dual")
    call = make_call(
        tenant_a.organization, phone_number=make_phone_number(tenant_a.organization, agent=agent)
    )
    agent.recording = "off"  # changed after the call arrived: not this call's business
    agent.save()
    assert call.agent_snapshot["recording"] == "dual"
    assert call_config_build(call).recording is RecordingMode.DUAL


def test_the_form_has_it(tenant_a: Tenant) -> None:
    member = Client()
    user = make_user()
    membership_create(organization=tenant_a.organization, user=user, role=Role.MEMBER)
    member.force_login(user)
    page = member.get("/agents/new/").content.decode()
    assert 'name="recording"' in page and "Dual-channel (caller left, agent right)" in page
    response = member.post("/agents/new/", {**AGENT_POST, "recording": "mono"})
    assert response.status_code == 302
    assert Agent.objects.for_org(tenant_a.organization).get(name="Support").recording == "mono"


def test_a_snapshot_from_before_recordings_records_nothing(tenant_a: Tenant) -> None:
    call = make_call(tenant_a.organization)
    snapshot: dict[str, Any] = dict(call.agent_snapshot)
    snapshot.pop("recording", None)
    call.agent_snapshot = snapshot
    call.save()
    assert call_config_build(call).recording is RecordingMode.OFF
