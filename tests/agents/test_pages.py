"""Dashboard pages for agents, tools, credentials and phone numbers: every view, every
role, other tenants' objects, and the API's own error messages on the page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from agents.models import Agent, Credential, Tool
from calls.models import PhoneNumber
from tenants.models import Organization, Role
from tenants.services import membership_create
from tests.conftest import Tenant
from tests.factories import (
    make_agent,
    make_credential,
    make_phone_number,
    make_tool,
    make_user,
)

AGENT_POST = {
    "name": "Support",
    "system_prompt": "You help.",
    "first_message": "Hello!",
    "first_message_interruptible": "false",
    "stt.provider": "deepgram",
    "stt.model": "nova-3",
    "stt.language": "en-US",
    "stt_credential": "",
    "llm.provider": "openai",
    "llm.model": "gpt-4o-mini",
    "llm.temperature": "0.4",
    "llm.max_tokens": "300",
    "llm_credential": "",
    "tts.provider": "cartesia",
    "tts.voice": "voice-1",
    "tts.model": "",
    "tts.speed": "1.0",
    "tts.language": "en",
    "tts_credential": "",
    "turn.min_wait_ms": "200",
    "turn.max_wait_ms": "1500",
    "interruption.enabled": "true",
    "interruption.min_speech_ms": "250",
    "interruption.min_words": "0",
    "interruption.transcript_wait_ms": "300",
    "interruption.acknowledgements": "mhm\nuh-huh",
    "idle.prompt": "Still there?",
    "idle.timeout_s": "8",
    "idle.max_prompts": "2",
    "idle.goodbye": "Bye.",
    "max_duration_s": "600",
    "max_duration_message": "Time is up.",
    "end_call_phrases": "goodbye",
    "tools": "",
    "webhook_url": "",
    "webhook_secret": "",
    "analysis.summary_prompt": "",
    "analysis.structured_data_schema": "",
    "analysis.success_rubric": "",
}


def client_for(organization: Organization, role: Role = Role.MEMBER) -> Client:
    user = make_user()
    membership_create(organization=organization, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def member(tenant_a: Tenant) -> Client:
    return client_for(tenant_a.organization, Role.MEMBER)


@pytest.fixture
def viewer(tenant_a: Tenant) -> Client:
    return client_for(tenant_a.organization, Role.VIEWER)


def text(response: Any) -> str:
    return response.content.decode()


def api_message(tenant: Tenant, path: str, body: dict[str, Any], *keys: str) -> list[str]:
    response = tenant.client.post(path, body, format="json")
    assert response.status_code == 400, response.json()
    node = response.json()["error"]["fields"]
    for key in keys:
        node = node[key]
    return list(node)


def assert_labelled(html: str) -> None:
    """Every visible input, select and textarea has a <label for> naming its id."""
    labels = set(re.findall(r'<label[^>]*for="([^"]+)"', html))
    for tag in re.findall(r"<(?:input|select|textarea)\b[^>]*>", html):
        if 'type="hidden"' in tag or 'type="submit"' in tag:
            continue
        found = re.search(r'id="([^"]+)"', tag)
        assert found, f"no id: {tag}"
        assert found.group(1) in labels, f"no label for {found.group(1)}"


# --- agents --------------------------------------------------------------------------------


def test_agent_list_shows_own_agents_only(tenant_a: Tenant, tenant_b: Tenant, member: Client):
    make_agent(tenant_a.organization, name="Ours")
    make_agent(tenant_b.organization, name="Theirs")
    response = member.get("/agents/")
    assert response.status_code == 200
    assert "Ours" in text(response) and "Theirs" not in text(response)
    assert "/agents/new/" in text(response)
    filtered = member.get("/agents/?name=zzz")
    assert "Ours" not in text(filtered)


def test_agent_create_form_is_structured_and_labelled(member: Client) -> None:
    response = member.get("/agents/new/")
    assert response.status_code == 200
    html = text(response)
    assert 'name="csrfmiddlewaretoken"' in html
    for name in ("llm.temperature", "stt.provider", "tts.voice", "turn.max_wait_ms", "tools"):
        assert f'name="{name}"' in html
    assert "<textarea" in html and 'name="llm"' not in html  # no JSON blobs per stage
    # Provider options are the serializer's choices.
    assert '<option value="deepgram"' in html and '<option value="pocketsphinx"' in html
    assert_labelled(html)


def test_agent_create_saves_through_the_api_path(tenant_a: Tenant, member: Client) -> None:
    tool = make_tool(tenant_a.organization)
    response = member.post("/agents/new/", {**AGENT_POST, "tools": ["", str(tool.pk)]})
    assert response.status_code == 302
    agent = Agent.objects.for_org(tenant_a.organization).get(name="Support")
    assert response["Location"] == f"/agents/{agent.pk}/"
    assert agent.llm == {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "temperature": 0.4,
        "max_tokens": 300,
    }
    assert agent.first_message_interruptible is False
    assert agent.interruption["acknowledgements"] == ["mhm", "uh-huh"]
    assert agent.end_call_phrases == ["goodbye"]
    assert list(agent.tools.all()) == [tool]
    # The same agent through the API reads the same.
    api = tenant_a.client.get(f"/api/v1/agents/{agent.pk}/").json()
    assert api["tts"]["voice"] == "voice-1" and api["max_duration_s"] == 600.0


def test_end_of_turn_and_vad_are_chosen_on_the_agent_page(tenant_a: Tenant, member: Client) -> None:
    html = text(member.get("/agents/new/"))
    for value in ("rules", "smart_turn", "webrtc", "silero"):
        assert f'<option value="{value}"' in html
    post = {**AGENT_POST, "turn.end_of_turn": "smart_turn", "turn.vad": "silero"}
    assert member.post("/agents/new/", post).status_code == 302
    agent = Agent.objects.for_org(tenant_a.organization).get(name="Support")
    assert agent.turn["end_of_turn"] == "smart_turn" and agent.turn["vad"] == "silero"
    page = member.post("/agents/new/", {**AGENT_POST, "turn.vad": "nope"})
    assert page.status_code == 400 and "is not a valid choice." in text(page)


def test_invalid_temperature_shows_the_api_message(tenant_a: Tenant, member: Client) -> None:
    expected = api_message(
        tenant_a,
        "/api/v1/agents/",
        {
            "name": "x",
            "stt": {"provider": "deepgram"},
            "llm": {"provider": "openai", "temperature": 3},
            "tts": {"provider": "cartesia"},
        },
        "llm",
        "temperature",
    )
    response = member.post("/agents/new/", {**AGENT_POST, "llm.temperature": "3"})
    assert response.status_code == 400
    html = text(response)
    assert expected == ["Ensure this value is less than or equal to 2.0."]
    # In the summary, linking to the field, and beside the field.
    assert f'<a href="#id_llm-temperature">Temperature: {expected[0]}</a>' in html
    assert re.search(
        r'id="id_llm-temperature-error">\s*<span class="visually-hidden">Error:</span> '
        + re.escape(expected[0]),
        html,
    )
    assert 'value="3"' in html  # what was typed comes back
    assert not Agent.objects.for_org(tenant_a.organization).exists()


@pytest.mark.parametrize(
    ("field", "value", "api_body", "keys"),
    [
        ("turn.max_wait_ms", "10", {"turn": {"min_wait_ms": 200, "max_wait_ms": 10}}, ("turn",)),
        ("webhook_url", "ftp://nope", {"webhook_url": "ftp://nope"}, ("webhook_url",)),
        ("name", "", {"name": ""}, ("name",)),
        ("idle.timeout_s", "abc", {"idle": {"timeout_s": "abc"}}, ("idle", "timeout_s")),
    ],
)
def test_agent_errors_match_the_api(
    tenant_a: Tenant, member: Client, field: str, value: str, api_body: Any, keys: Any
) -> None:
    body = {
        "name": "x",
        "stt": {"provider": "deepgram"},
        "llm": {"provider": "openai"},
        "tts": {"provider": "cartesia"},
        **api_body,
    }
    response = tenant_a.client.post("/api/v1/agents/", body, format="json")
    node = response.json()["error"]["fields"]
    for key in keys:
        node = node[key]
    messages = node if isinstance(node, list) else [m for v in node.values() for m in v]
    page = member.post("/agents/new/", {**AGENT_POST, field: value})
    assert page.status_code == 400
    for message in messages:
        assert message in text(page)


def test_provider_change_redraws_the_stage_fragment(tenant_a: Tenant, member: Client) -> None:
    deepgram = make_credential(tenant_a.organization, "deepgram")
    make_credential(tenant_a.organization, "openai")
    data = {**AGENT_POST, "stt.provider": "deepgram", "_refresh": "stt"}
    response = member.post("/agents/new/", data, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = text(response)
    assert html.lstrip().startswith('<div id="stage-stt"')
    assert "<html" not in html
    assert 'name="stt_credential"' in html and f'value="{deepgram.pk}"' in html
    assert "openai" not in html  # only credentials this provider can use
    local = member.post(
        "/agents/new/", {**data, "stt.provider": "pocketsphinx"}, HTTP_HX_REQUEST="true"
    )
    assert 'name="stt_credential"' not in text(local)
    assert 'name="stt.model"' not in text(local)
    assert not Agent.objects.for_org(tenant_a.organization).exists()  # nothing saved


def test_provider_change_without_javascript_redraws_the_page(member: Client) -> None:
    response = member.post(
        "/agents/new/", {**AGENT_POST, "tts.provider": "espeak", "_refresh": "tts"}
    )
    html = text(response)
    assert response.status_code == 200 and "<html" in html
    assert 'name="tts.model"' not in html and 'name="tts.voice"' in html
    assert "<noscript>" in html  # the button that does this without JavaScript
    assert "There is a problem" not in html  # a redraw does not validate


def test_agent_edit(tenant_a: Tenant, member: Client) -> None:
    agent = make_agent(tenant_a.organization, name="Before", webhook_secret="whsec-very-secret")
    page = member.get(f"/agents/{agent.pk}/")
    assert page.status_code == 200
    html = text(page)
    assert 'value="Before"' in html and "whsec-very-secret" not in html
    assert f"/agents/{agent.pk}/duplicate/" in html and f"/agents/{agent.pk}/delete/" in html
    assert_labelled(html)
    response = member.post(
        f"/agents/{agent.pk}/",
        {"name": "After", "llm.provider": "scripted", "llm.max_tokens": "64", "webhook_secret": ""},
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.name == "After" and agent.llm["max_tokens"] == 64
    assert agent.webhook_secret == "whsec-very-secret"  # blank keeps it


def test_viewer_reads_but_cannot_write(tenant_a: Tenant, viewer: Client) -> None:
    agent = make_agent(tenant_a.organization, name="Look")
    listing = text(viewer.get("/agents/"))
    assert "Look" in listing and "/agents/new/" not in listing
    page = viewer.get(f"/agents/{agent.pk}/")
    assert page.status_code == 200
    html = text(page)
    assert 'name="llm.temperature"' not in html and "/duplicate/" not in html
    assert "Maximum tokens per reply" in html  # shown read-only
    fallback = {"llm": [{"provider": "scripted", "model": "spare"}]}
    tenant_a.client.patch(f"/api/v1/agents/{agent.pk}/", {"fallback": fallback})
    shown = text(viewer.get(f"/agents/{agent.pk}/"))
    assert "Language model fallback 1" in shown and "spare" in shown
    assert "Language model fallback 2" not in shown  # empty places are not listed
    assert viewer.get("/agents/new/").status_code == 403
    assert viewer.get(f"/agents/{agent.pk}/delete/").status_code == 403
    assert viewer.post(f"/agents/{agent.pk}/", {"name": "Hacked"}).status_code == 403
    assert viewer.post(f"/agents/{agent.pk}/delete/").status_code == 403
    assert viewer.post(f"/agents/{agent.pk}/duplicate/", {"name": "x"}).status_code == 403
    agent.refresh_from_db()
    assert agent.name == "Look"


def test_other_tenants_agent_is_404(tenant_b: Tenant, member: Client) -> None:
    theirs = make_agent(tenant_b.organization)
    for path in ("", "duplicate/", "delete/"):
        assert member.get(f"/agents/{theirs.pk}/{path}").status_code == 404
        assert member.post(f"/agents/{theirs.pk}/{path}", {"name": "x"}).status_code == 404
    assert Agent.objects.for_org(tenant_b.organization).filter(pk=theirs.pk).exists()


def test_duplicate(tenant_a: Tenant, member: Client) -> None:
    tool = make_tool(tenant_a.organization)
    agent = make_agent(tenant_a.organization, name="Orig", tools=[tool], webhook_secret="whsec-1")
    make_phone_number(tenant_a.organization, agent=agent)
    page = member.get(f"/agents/{agent.pk}/duplicate/")
    assert 'value="Copy of Orig"' in text(page)
    for data in ({"name": ""}, {}):
        blank = member.post(f"/agents/{agent.pk}/duplicate/", data)
        assert blank.status_code == 400
        assert "This field may not be blank." in text(blank)
    response = member.post(f"/agents/{agent.pk}/duplicate/", {"name": "Twin"})
    assert response.status_code == 302
    twin = Agent.objects.for_org(tenant_a.organization).get(name="Twin")
    assert response["Location"] == f"/agents/{twin.pk}/"
    assert twin.pk != agent.pk and twin.llm == agent.llm and twin.stt == agent.stt
    assert list(twin.tools.all()) == [tool] and twin.webhook_secret == "whsec-1"
    assert not PhoneNumber.objects.for_org(tenant_a.organization).filter(agent=twin).exists()


def test_delete_confirm_names_the_numbers(tenant_a: Tenant, member: Client) -> None:
    agent = make_agent(tenant_a.organization, name="Gone")
    number = make_phone_number(tenant_a.organization, agent=agent, name="Main line")
    make_phone_number(tenant_a.organization)  # routes elsewhere
    page = member.get(f"/agents/{agent.pk}/delete/")
    html = text(page)
    assert page.status_code == 200
    assert number.number in html and "Main line" in html
    assert "1 phone number routes to this agent" in html
    assert len(re.findall(r'<li><a href="/phone-numbers/\d+/">', html)) == 1
    response = member.post(f"/agents/{agent.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == "/agents/"
    assert not Agent.objects.for_org(tenant_a.organization).filter(pk=agent.pk).exists()
    number.refresh_from_db()
    assert number.agent is None


def test_forms_need_csrf(tenant_a: Tenant) -> None:
    user = make_user()
    membership_create(organization=tenant_a.organization, user=user, role=Role.OWNER)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/agents/new/", AGENT_POST).status_code == 403
    assert not Agent.objects.for_org(tenant_a.organization).exists()


# --- tools ---------------------------------------------------------------------------------


def test_tool_create_edit_and_headers_stay_secret(tenant_a: Tenant, member: Client) -> None:
    page = member.get("/tools/new/")
    assert page.status_code == 200
    assert_labelled(text(page))
    response = member.post(
        "/tools/new/",
        {
            "name": "lookup",
            "kind": "http",
            "description": "Finds an order.",
            "parameters": '{"type": "object", "properties": {"id": {"type": "string"}}}',
            "url": "https://tools.example.test/lookup",
            "method": "POST",
            "headers": "Authorization: Bearer tool-secret-123",
            "timeout_s": "5",
            "filler": "",
            "filler_after_s": "1",
        },
    )
    assert response.status_code == 302
    tool = Tool.objects.for_org(tenant_a.organization).get(name="lookup")
    assert tool.headers == {"Authorization": "Bearer tool-secret-123"}
    assert tool.parameters["properties"]["id"] == {"type": "string"}
    edit = text(member.get(f"/tools/{tool.pk}/"))
    assert "tool-secret-123" not in edit and "A value is stored" in edit
    member.post(f"/tools/{tool.pk}/", {"description": "Changed.", "headers": ""})
    tool.refresh_from_db()
    assert tool.description == "Changed." and tool.headers  # blank keeps the headers
    member.post(f"/tools/{tool.pk}/", {"headers": "X-Typed: too", "headers.remove": "true"})
    tool.refresh_from_db()
    assert tool.headers == {}
    assert "lookup" in text(member.get("/tools/"))


def test_tool_errors_match_the_api(tenant_a: Tenant, member: Client) -> None:
    make_tool(tenant_a.organization, name="taken")
    for post, api_body, key in [
        ({"name": "a b", "kind": "end_call"}, {"name": "a b", "kind": "end_call"}, "name"),
        ({"name": "h", "kind": "http", "url": ""}, {"name": "h", "kind": "http"}, "url"),
        ({"name": "taken", "kind": "end_call"}, {"name": "taken", "kind": "end_call"}, "name"),
        (
            {"name": "p", "kind": "end_call", "parameters": '{"type": "array"}'},
            {"name": "p", "kind": "end_call", "parameters": {"type": "array"}},
            "parameters",
        ),
    ]:
        expected = api_message(tenant_a, "/api/v1/tools/", api_body, key)
        response = member.post("/tools/new/", post)
        assert response.status_code == 400
        for message in expected:
            assert message.replace('"', "&quot;").replace("'", "&#x27;") in text(response)


def test_tool_kind_redraws_its_settings(member: Client) -> None:
    response = member.post(
        "/tools/new/",
        {"name": "t", "kind": "transfer_call", "_refresh": "kind"},
        HTTP_HX_REQUEST="true",
    )
    html = text(response)
    assert html.lstrip().startswith('<div id="tool-kind-fields"')
    assert 'name="transfer_to"' in html and 'name="url"' not in html
    # collect_digits offers secure mode and, for it, where the digits go
    digits = text(
        member.post(
            "/tools/new/",
            {"name": "t", "kind": "collect_digits", "_refresh": "kind"},
            HTTP_HX_REQUEST="true",
        )
    )
    assert all(f'name="{n}"' in digits for n in ("max_digits", "secure", "url"))
    assert 'name="filler"' not in digits


def test_tool_delete_names_its_agents(tenant_a: Tenant, member: Client, viewer: Client) -> None:
    tool = make_tool(tenant_a.organization)
    make_agent(tenant_a.organization, name="User of tool", tools=[tool])
    assert "User of tool" in text(member.get(f"/tools/{tool.pk}/delete/"))
    assert viewer.post(f"/tools/{tool.pk}/delete/").status_code == 403
    assert member.post(f"/tools/{tool.pk}/delete/").status_code == 302
    assert not Tool.objects.for_org(tenant_a.organization).exists()


def test_other_tenants_tool_is_404(tenant_b: Tenant, member: Client) -> None:
    theirs = make_tool(tenant_b.organization)
    assert member.get(f"/tools/{theirs.pk}/").status_code == 404
    assert member.post(f"/tools/{theirs.pk}/delete/").status_code == 404


# --- credentials ---------------------------------------------------------------------------


def test_credential_secrets_are_write_only(tenant_a: Tenant, member: Client) -> None:
    response = member.post(
        "/credentials/new/",
        {"name": "My Deepgram", "provider": "deepgram", "api_key": "dg-secret-abcd1234"},
    )
    assert response.status_code == 302
    credential = Credential.objects.for_org(tenant_a.organization).get()
    assert credential.api_key == "dg-secret-abcd1234"
    listing = text(member.get("/credentials/"))
    assert "My Deepgram" in listing and "••••1234" in listing
    assert "dg-secret" not in listing
    edit = text(member.get(f"/credentials/{credential.pk}/"))
    assert "dg-secret" not in edit and 'type="password"' in edit
    assert 'name="provider"' not in edit  # a credential's provider cannot change
    member.post(f"/credentials/{credential.pk}/", {"name": "Renamed", "api_key": ""})
    credential.refresh_from_db()
    assert credential.name == "Renamed" and credential.api_key == "dg-secret-abcd1234"
    member.post(f"/credentials/{credential.pk}/", {"name": "Renamed", "api_key": "new-key-9876"})
    credential.refresh_from_db()
    assert credential.api_key == "new-key-9876" and credential.hint == "9876"


def test_credential_errors_match_the_api(tenant_a: Tenant, member: Client) -> None:
    # A blank secret field on the page means "none given", as a missing key in the API.
    body = {"name": "t", "provider": "twilio", "account_sid": "nope"}
    api = tenant_a.client.post("/api/v1/credentials/", body, format="json").json()
    response = member.post("/credentials/new/", body)
    assert response.status_code == 400
    for messages in api["error"]["fields"].values():
        for message in messages:
            assert message.replace("'", "&#x27;") in text(response)


def test_credential_provider_redraws_its_fields(member: Client) -> None:
    response = member.post(
        "/credentials/new/",
        {"name": "t", "provider": "twilio", "_refresh": "provider"},
        HTTP_HX_REQUEST="true",
    )
    html = text(response)
    assert 'name="account_sid"' in html and 'name="api_key"' not in html


def test_credential_in_use_cannot_be_deleted(tenant_a: Tenant, member: Client) -> None:
    credential = make_credential(tenant_a.organization, "deepgram")
    make_agent(
        tenant_a.organization,
        name="Uses key",
        stt={"provider": "deepgram"},
        stt_credential=credential,
    )
    page = text(member.get(f"/credentials/{credential.pk}/delete/"))
    assert "Uses key" in page
    response = member.post(f"/credentials/{credential.pk}/delete/")
    assert response.status_code == 409
    api = tenant_a.client.delete(f"/api/v1/credentials/{credential.pk}/")
    assert api.status_code == 409
    assert api.json()["error"]["message"] in text(response)
    unused = make_credential(tenant_a.organization, "openai")
    assert member.post(f"/credentials/{unused.pk}/delete/").status_code == 302


def test_other_tenants_credential_is_404(tenant_b: Tenant, member: Client) -> None:
    theirs = make_credential(tenant_b.organization)
    assert member.get(f"/credentials/{theirs.pk}/").status_code == 404
    assert member.post(f"/credentials/{theirs.pk}/", {"name": "x"}).status_code == 404


# --- phone numbers -------------------------------------------------------------------------


def test_phone_number_create_edit_delete(tenant_a: Tenant, member: Client) -> None:
    org = tenant_a.organization
    twilio = make_credential(org, "twilio")
    make_credential(org, "openai")
    agent = make_agent(org, name="Front desk")
    page = text(member.get("/phone-numbers/new/"))
    assert_labelled(page)
    assert f'<option value="{twilio.pk}"' in page and "openai" not in page
    response = member.post(
        "/phone-numbers/new/",
        {
            "number": "+14155550199",
            "name": "Main",
            "carrier": "twilio",
            "credential": str(twilio.pk),
            "agent": str(agent.pk),
        },
    )
    assert response.status_code == 302
    number = PhoneNumber.objects.for_org(org).get()
    assert number.number == "+14155550199" and number.agent == agent
    assert "Front desk" in text(member.get("/phone-numbers/"))
    member.post(f"/phone-numbers/{number.pk}/", {"agent": ""})
    number.refresh_from_db()
    assert number.agent is None
    assert member.post(f"/phone-numbers/{number.pk}/delete/").status_code == 302
    assert not PhoneNumber.objects.for_org(org).exists()


def test_phone_number_errors_match_the_api(
    tenant_a: Tenant, tenant_b: Tenant, member: Client
) -> None:
    twilio = make_credential(tenant_a.organization, "twilio")
    taken = make_phone_number(tenant_b.organization)
    for number in ("4155550123", taken.number):
        body = {"number": number, "credential": twilio.pk}
        expected = api_message(tenant_a, "/api/v1/phone-numbers/", body, "number")
        response = member.post(
            "/phone-numbers/new/", {"number": number, "carrier": "twilio", "credential": twilio.pk}
        )
        assert response.status_code == 400
        for message in expected:
            assert message in text(response)


def test_phone_numbers_viewer_and_other_tenant(
    tenant_a: Tenant, tenant_b: Tenant, member: Client, viewer: Client
) -> None:
    ours = make_phone_number(tenant_a.organization)
    theirs = make_phone_number(tenant_b.organization)
    assert member.get(f"/phone-numbers/{theirs.pk}/").status_code == 404
    page = text(viewer.get(f"/phone-numbers/{ours.pk}/"))
    assert ours.number in page and 'name="number"' not in page
    assert viewer.post(f"/phone-numbers/{ours.pk}/", {"name": "x"}).status_code == 403
    assert viewer.get("/phone-numbers/new/").status_code == 403


def test_fallback_settings_and_chains(tenant_a: Tenant, member: Client) -> None:
    org = tenant_a.organization
    agent = make_agent(org, name="Fallbacks")
    openai = make_credential(org, "openai")
    chain = {"llm": [{"provider": "scripted", "model": "backup", "max_tokens": 77}]}
    patched = tenant_a.client.patch(f"/api/v1/agents/{agent.pk}/", {"fallback": chain})
    assert patched.status_code == 200
    page = text(member.get(f"/agents/{agent.pk}/"))
    assert 'name="fallback.apology"' in page
    assert 'name="fallback.llm.0.model" value="backup"' in page
    assert 'name="fallback.llm.2.provider"' in page  # MAX_FALLBACKS places per stage
    bad = member.post(f"/agents/{agent.pk}/", {"fallback.first_token_timeout_s": "0"})
    assert bad.status_code == 400
    assert "Ensure this value is greater than or equal to 0.5." in text(bad)
    response = member.post(
        f"/agents/{agent.pk}/",
        {
            "fallback.first_token_timeout_s": "4",
            "fallback.apology": "One moment.",
            "fallback.llm.0.provider": "scripted",
            "fallback.llm.0.model": "backup-2",
            "fallback.llm.0.credential": "",
            "fallback.llm.1.provider": "",  # an unused place
            "fallback.llm.1.model": "",
            "fallback.llm.2.provider": "openai",
            "fallback.llm.2.model": "gpt-4o-mini",
            "fallback.llm.2.credential": str(openai.pk),
        },
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.fallback["first_token_timeout_s"] == 4.0
    assert agent.fallback["apology"] == "One moment."
    first, second = agent.fallback["llm"]
    assert (first["provider"], first["model"], first["max_tokens"]) == ("scripted", "backup-2", 77)
    assert (second["provider"], second["credential"]) == ("openai", openai.pk)
    # A credential the provider can't use: the API's message.
    wrong = member.post(
        f"/agents/{agent.pk}/",
        {"fallback.llm.0.provider": "scripted", "fallback.llm.0.credential": str(openai.pk)},
    )
    assert wrong.status_code == 400
    assert "Fallback 1: the scripted provider takes no credential." in text(wrong)
    # An entry's error shows beside its place, even after an empty place.
    long = member.post(
        f"/agents/{agent.pk}/",
        {
            "fallback.llm.0.provider": "",
            "fallback.llm.1.provider": "scripted",
            "fallback.llm.1.model": "x" * 101,
        },
    )
    assert long.status_code == 400
    assert re.search(
        r'id="id_fallback-llm-1-model-error">\s*<span class="visually-hidden">Error:</span> '
        r"Ensure this field has no more than 100 characters.",
        text(long),
    )
    # Emptying every place removes the chain.
    cleared = {f"fallback.llm.{n}.provider": "" for n in range(3)}
    assert member.post(f"/agents/{agent.pk}/", cleared).status_code == 302
    agent.refresh_from_db()
    assert agent.fallback["llm"] == []


@pytest.mark.parametrize(
    "bad",
    [
        {"tools": ["abc"]},
        {"tools": ["99999999999999999999999"]},
        {"stt_credential": "abc"},
        {"stt_credential": "-1"},
        {"llm.temperature": "nan"},
        {"llm.max_tokens": "1e400"},
        {"name": "a\x00b"},
        {"stt.provider": "nonesuch"},
        {"analysis.structured_data_schema": "[" * 5000},
        {"analysis.structured_data_schema": "NaN"},
        {"interruption.acknowledgements": "x" * 51},
        {"first_message_interruptible": "maybe"},
    ],
)
def test_bad_input_is_a_page_error_never_a_500(member: Client, bad: dict[str, Any]) -> None:
    response = member.post("/agents/new/", {**AGENT_POST, **bad})
    assert response.status_code == 400
    assert "There is a problem" in text(response)


def test_undecodable_form_body_is_not_a_500(member: Client) -> None:
    response = member.generic(
        "POST",
        "/agents/new/",
        b"name=%FF%FE&stt.provider=%ED%A0%80&llm.temperature=%00",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
