"""The page-form adapter: POST -> the API's input shape, the API's errors -> fields."""

from __future__ import annotations

from typing import Any

from django.http import QueryDict

from agents import services
from agents.forms import agent_form, credential_form, tool_form
from glassbox.pageforms import flatten_errors, html_id
from tests.conftest import Tenant
from tests.factories import make_agent, make_credential, make_tool
from voice.providers import registry


def post(pairs: list[tuple[str, str]]) -> QueryDict:
    data = QueryDict(mutable=True)
    for key, value in pairs:
        data.appendlist(key, value)
    return data


BASIC = [
    ("name", "Support"),
    ("stt.provider", "deepgram"),
    ("llm.provider", "openai"),
    ("tts.provider", "cartesia"),
]


def test_flatten_errors_nested_lists_and_non_field() -> None:
    detail = {
        "name": ["This field is required."],
        "llm": {"temperature": ["Too hot."], "non_field_errors": ["Bad llm."]},
        "end_call_phrases": {1: ["Too long."]},
        "fallback": {"llm": {0: {"model": ["Too long."]}}},
        "non_field_errors": ["Whole thing."],
    }
    assert flatten_errors(detail) == {
        "name": ["This field is required."],
        "llm.temperature": ["Too hot."],
        "llm": ["Bad llm."],
        "end_call_phrases": ["Item 2: Too long."],
        "fallback.llm.0.model": ["Too long."],
        "": ["Whole thing."],
    }


def test_post_becomes_the_api_input_shape(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    tool = make_tool(org)
    credential = make_credential(org, "deepgram")
    data = post(
        [
            *BASIC,
            ("stt.model", "nova-3"),
            ("stt_credential", str(credential.pk)),
            ("llm.temperature", "0.2"),
            ("llm_credential", ""),
            ("first_message_interruptible", "false"),  # hidden, box unticked
            ("interruption.enabled", "false"),
            ("interruption.enabled", "true"),  # hidden + ticked box
            ("interruption.acknowledgements", "mhm\n\n  uh-huh  \n"),
            ("tools", ""),
            ("tools", str(tool.pk)),
            ("analysis.structured_data_schema", '{"type": "object"}'),
            ("webhook_secret", ""),
        ]
    )
    form = agent_form(organization=org, data=data)
    assert form.api_data() == {
        "name": "Support",
        "stt": {"provider": "deepgram", "model": "nova-3"},
        "stt_credential": str(credential.pk),
        "llm": {"provider": "openai", "temperature": 0.2},
        "llm_credential": None,
        "tts": {"provider": "cartesia"},
        "first_message_interruptible": "false",
        "interruption": {"enabled": "true", "acknowledgements": ["mhm", "uh-huh"]},
        "tools": [str(tool.pk)],
        "analysis": {"structured_data_schema": {"type": "object"}},
    }
    agent = form.save(lambda d: services.agent_create(organization=org, data=d))
    assert agent is not None
    assert agent.stt == {"provider": "deepgram", "model": "nova-3", "language": "en-US"}
    assert agent.llm["temperature"] == 0.2
    assert agent.first_message_interruptible is False
    assert agent.interruption["acknowledgements"] == ["mhm", "uh-huh"]
    assert list(agent.tools.all()) == [tool]
    assert agent.stt_credential == credential


def test_provider_without_credential_sends_null(tenant_a: Tenant) -> None:
    # The scripted LLM has no credential picker: the page means "none".
    data = post([*BASIC[:2], ("llm.provider", "scripted"), ("tts.provider", "espeak")])
    api = agent_form(organization=tenant_a.organization, data=data).api_data()
    assert api["llm_credential"] is None
    assert api["tts_credential"] is None
    assert "stt_credential" not in api  # deepgram has a picker; it was not sent


def api_errors(tenant: Tenant, body: dict[str, Any], path: str = "/api/v1/agents/") -> Any:
    response = tenant.client.post(path, body, format="json")
    assert response.status_code == 400, response.json()
    return response.json()["error"]["fields"]


def test_invalid_temperature_gets_the_api_message(tenant_a: Tenant) -> None:
    api = api_errors(
        tenant_a,
        {
            "name": "x",
            "stt": {"provider": "deepgram"},
            "llm": {"provider": "openai", "temperature": 3},
            "tts": {"provider": "cartesia"},
        },
    )
    form = agent_form(
        organization=tenant_a.organization, data=post([*BASIC, ("llm.temperature", "3")])
    )
    assert not form.is_valid()
    assert form.errors == {"llm.temperature": api["llm"]["temperature"]}
    assert form["llm.temperature"].errors == api["llm"]["temperature"]
    summary = form.error_summary
    assert [link.href for link in summary] == ["#" + html_id("llm.temperature")]
    assert api["llm"]["temperature"][0] in summary[0].message


def test_nested_validate_errors_map_to_their_field(tenant_a: Tenant) -> None:
    data = post([*BASIC, ("turn.min_wait_ms", "2000"), ("turn.max_wait_ms", "1000")])
    form = agent_form(organization=tenant_a.organization, data=data)
    assert not form.is_valid()
    assert form.errors == {"turn.max_wait_ms": ["Must be greater than or equal to min_wait_ms."]}


def test_service_errors_map_like_the_api(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    openai = make_credential(org, "openai")
    api = api_errors(
        tenant_a,
        {
            "name": "x",
            "stt": {"provider": "deepgram"},
            "stt_credential": openai.pk,
            "llm": {"provider": "openai"},
            "tts": {"provider": "cartesia"},
        },
    )
    form = agent_form(organization=org, data=post([*BASIC, ("stt_credential", str(openai.pk))]))
    assert form.save(lambda d: services.agent_create(organization=org, data=d)) is None
    assert form.errors == {"stt_credential": api["stt_credential"]}


def test_not_json_gets_the_fields_own_message(tenant_a: Tenant) -> None:
    data = post([*BASIC, ("analysis.structured_data_schema", "{nope"), ("llm.max_tokens", "0")])
    form = agent_form(organization=tenant_a.organization, data=data)
    assert not form.is_valid()
    assert form.errors["analysis.structured_data_schema"] == ["Value must be valid JSON."]
    assert form.errors["llm.max_tokens"] == ["Ensure this value is greater than or equal to 1."]


def test_other_tenants_tool_is_the_api_error(tenant_a: Tenant, tenant_b: Tenant) -> None:
    theirs = make_tool(tenant_b.organization)
    api = api_errors(
        tenant_a,
        {
            "name": "x",
            "stt": {"provider": "deepgram"},
            "llm": {"provider": "openai"},
            "tts": {"provider": "cartesia"},
            "tools": [theirs.pk],
        },
    )
    form = agent_form(
        organization=tenant_a.organization, data=post([*BASIC, ("tools", str(theirs.pk))])
    )
    assert not form.is_valid()
    assert form.errors == {"tools": api["tools"]}
    # ... and the picker never offered it.
    assert form["tools"].choices == []


def test_edit_is_a_patch_merged_into_the_stored_settings(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    agent = make_agent(org, webhook_secret="s3cret-value")
    data = post([("llm.provider", "scripted"), ("llm.max_tokens", "99"), ("webhook_secret", "")])
    form = agent_form(organization=org, agent=agent, data=data)
    saved = form.save(lambda d: services.agent_update(agent=agent, data=d))
    assert saved is not None
    saved.refresh_from_db()
    assert saved.llm == {"provider": "scripted", "model": "", "temperature": 0.7, "max_tokens": 99}
    assert saved.webhook_secret == "s3cret-value"  # blank keeps it


def test_secret_can_be_removed_never_shown(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    agent = make_agent(org, webhook_secret="s3cret-value")
    form = agent_form(organization=org, agent=agent)
    field = form["webhook_secret"]
    assert field.value == "" and field.has_value and field.remove_name
    data = post([(field.remove_name, "true"), ("webhook_secret", "typed-but-removed")])
    form = agent_form(organization=org, agent=agent, data=data)
    assert form.save(lambda d: services.agent_update(agent=agent, data=d)) is not None
    agent.refresh_from_db()
    assert agent.webhook_secret == ""
    assert form["webhook_secret"].value == ""  # a posted secret is not echoed back


def test_stage_fields_follow_the_provider(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    deepgram = make_credential(org, "deepgram")
    make_credential(org, "openai")
    form = agent_form(organization=org, data=post(BASIC))
    assert form.stage_fields("stt") == [
        "stt.provider",
        "stt.model",
        "stt.language",
        "stt_credential",
    ]
    assert [v for v, _, _ in form["stt_credential"].choices] == [str(deepgram.pk)]
    form = agent_form(organization=org, data=post([("stt.provider", "pocketsphinx")]))
    assert form.stage_fields("stt") == ["stt.provider", "stt.language"]
    # Provider choices are the serializer's.
    assert [v for v, _, _ in form["stt.provider"].choices] == [
        "deepgram",
        "pocketsphinx",
        "whisper",
    ]


def test_unbound_form_shows_serializer_defaults(tenant_a: Tenant) -> None:
    form = agent_form(organization=tenant_a.organization)
    assert form["llm.temperature"].value == "0.7"
    assert form["interruption.enabled"].checked is True
    assert form["interruption.acknowledgements"].value.splitlines()[0] == "mhm"
    assert form["llm.temperature"].max == 2.0 and form["llm.temperature"].step == "any"


def test_tool_headers_lines_become_an_object(tenant_a: Tenant) -> None:
    data = post(
        [
            ("name", "lookup"),
            ("kind", "http"),
            ("url", "https://tools.example.test/x"),
            ("headers", "Authorization: Bearer abc\nX-Trace: 1"),
        ]
    )
    form = tool_form(organization=tenant_a.organization, data=data)
    assert form.api_data()["headers"] == {"Authorization": "Bearer abc", "X-Trace": "1"}
    bad = tool_form(
        organization=tenant_a.organization,
        data=post([("name", "bad name"), ("kind", "http"), ("url", "")]),
    )
    assert not bad.is_valid()
    assert bad.errors == {"name": ["Use 1-64 letters, digits, '_' or '-'."]}


def test_credential_form_is_write_only(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    credential = make_credential(org, "openai")
    form = credential_form(organization=org, credential=credential)
    assert "provider" not in form.fields
    assert form["api_key"].value == "" and form["api_key"].has_value
    form = credential_form(
        organization=org, data=post([("name", "k"), ("provider", "deepgram"), ("api_key", "")])
    )
    assert not form.is_valid()
    assert form.errors == {"api_key": ["Required for deepgram."]}


def test_tailored_choices_stay_with_their_form(tenant_a: Tenant, tenant_b: Tenant) -> None:
    # One organization's credentials must never show up in another's form.
    ours = make_credential(tenant_a.organization, "deepgram")
    mine = agent_form(organization=tenant_a.organization, data=post(BASIC))
    theirs = agent_form(organization=tenant_b.organization, data=post(BASIC))
    assert theirs["stt_credential"].choices == []
    assert [v for v, _, _ in mine["stt_credential"].choices] == [str(ours.pk)]


def test_pickers_and_hints_come_from_the_provider_registry(tenant_a: Tenant) -> None:
    form = agent_form(organization=tenant_a.organization, data=post(BASIC))
    labels = {v: label for v, label, _ in form["llm.provider"].choices}
    assert labels == dict(registry.choices(registry.Kind.LLM))
    deepgram = registry.spec(registry.Kind.STT, "deepgram")
    assert form["stt.model"].hint == f"Blank: {deepgram.default_model}."
    espeak = agent_form(organization=tenant_a.organization, data=post([("tts.provider", "espeak")]))
    assert (
        espeak["tts.voice"].hint
        == f"Blank: {registry.spec(registry.Kind.TTS, 'espeak').default_voice}."
    )
