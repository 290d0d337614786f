from __future__ import annotations

from typing import Any

import pytest

from agents.models import Agent
from tests.conftest import Tenant
from tests.factories import make_agent, make_credential, make_tool
from voice.config import IdleConfig, InterruptionConfig, LLMConfig, TurnConfig

BASE = {
    "name": "Support",
    "stt": {"provider": "deepgram", "model": "nova-3"},
    "llm": {"provider": "openai", "model": "gpt-4o-mini"},
    "tts": {"provider": "cartesia", "voice": "abc"},
}


def test_create_fills_engine_defaults(tenant_a: Tenant) -> None:
    response = tenant_a.client.post("/api/v1/agents/", BASE)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["llm"]["temperature"] == LLMConfig("x").temperature
    assert body["turn"] == {
        "min_wait_ms": TurnConfig().min_wait_ms,
        "max_wait_ms": TurnConfig().max_wait_ms,
        "preemptive": True,  # on by default (issue 16)
        "preemptive_after_ms": TurnConfig().preemptive_after_ms,
        "end_of_turn": "rules",  # today's rules stay the default (issue 16, item 2)
        "vad": "webrtc",
    }
    assert body["interruption"]["mode"] == "pause_then_decide"
    assert body["interruption"]["acknowledgements"] == list(InterruptionConfig().acknowledgements)
    assert body["idle"]["timeout_s"] == IdleConfig().timeout_s
    assert body["has_webhook_secret"] is False
    stored = Agent.objects.for_org(tenant_a.organization).get(pk=body["id"])
    assert stored.stt == {"provider": "deepgram", "model": "nova-3", "language": "en-US"}


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"stt": {"provider": "no-such-stt"}}, ("stt", "provider")),
        ({"llm": {"provider": "openai", "temperature": 3}}, ("llm", "temperature")),
        ({"llm": {"provider": "openai", "max_tokens": 0}}, ("llm", "max_tokens")),
        ({"llm": {"provider": "openai", "temperature": "hot"}}, ("llm", "temperature")),
        ({"tts": {"provider": "espeak", "speed": 10}}, ("tts", "speed")),
        ({"turn": {"min_wait_ms": 2000, "max_wait_ms": 1000}}, ("turn", "max_wait_ms")),
        ({"turn": {"min_wait_ms": -1}}, ("turn", "min_wait_ms")),
        ({"turn": {"end_of_turn": "magic"}}, ("turn", "end_of_turn")),
        ({"turn": {"vad": "silero-v9"}}, ("turn", "vad")),
        ({"interruption": {"min_speech_ms": 10**9}}, ("interruption", "min_speech_ms")),
        ({"interruption": {"acknowledgements": "mhm"}}, ("interruption", "acknowledgements")),
        ({"idle": {"timeout_s": 0}}, ("idle", "timeout_s")),
        ({"idle": {"max_prompts": 11}}, ("idle", "max_prompts")),
        ({"max_duration_s": 1}, ("max_duration_s",)),
        ({"end_call_phrases": ["x" * 201]}, ("end_call_phrases",)),
        ({"webhook_url": "ftp://nope"}, ("webhook_url",)),
        ({"analysis": {"structured_data_schema": {"type": 12}}}, ("analysis",)),
        ({"analysis": {"structured_data_schema": "not an object"}}, ("analysis",)),
        ({"name": ""}, ("name",)),
        ({"stt": "deepgram"}, ("stt",)),
        ({"tools": [10**12]}, ("tools",)),
        ({"tools": "1"}, ("tools",)),
        ({"stt_credential": True}, ("stt_credential",)),
    ],
)
def test_invalid_fields_are_400_with_field_errors(
    patch: dict[str, Any], path: tuple[str, ...], tenant_a: Tenant
) -> None:
    response = tenant_a.client.post("/api/v1/agents/", {**BASE, **patch})
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid"
    node: Any = error["fields"]
    for key in path:
        node = node[key]
    assert node


def test_credentials_must_match_the_provider(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    deepgram, openai = make_credential(org, "deepgram"), make_credential(org, "openai")
    ok = tenant_a.client.post(
        "/api/v1/agents/", {**BASE, "stt_credential": deepgram.pk, "llm_credential": openai.pk}
    )
    assert ok.status_code == 201, ok.json()
    wrong = tenant_a.client.post("/api/v1/agents/", {**BASE, "stt_credential": openai.pk})
    assert wrong.status_code == 400
    assert "stt_credential" in wrong.json()["error"]["fields"]
    local = tenant_a.client.post(
        "/api/v1/agents/",
        {**BASE, "llm": {"provider": "scripted"}, "llm_credential": openai.pk},
    )
    assert local.status_code == 400
    assert "llm_credential" in local.json()["error"]["fields"]


def test_patch_merges_nested_settings_and_revalidates(tenant_a: Tenant) -> None:
    agent = make_agent(tenant_a.organization, turn={"min_wait_ms": 300, "max_wait_ms": 900})
    url = f"/api/v1/agents/{agent.pk}/"
    response = tenant_a.client.patch(url, {"llm": {"temperature": 0.1}})
    assert response.status_code == 200, response.json()
    assert response.json()["llm"] == {
        "provider": "scripted",
        "model": "",
        "temperature": 0.1,
        "max_tokens": 512,
    }
    # min_wait_ms alone is valid, but not against the stored max_wait_ms.
    clash = tenant_a.client.patch(url, {"turn": {"min_wait_ms": 1000}})
    assert clash.status_code == 400
    assert "turn" in clash.json()["error"]["fields"]
    assert Agent.objects.for_org(tenant_a.organization).get(pk=agent.pk).turn["min_wait_ms"] == 300


def test_tools_attach_and_detach(tenant_a: Tenant) -> None:
    agent = make_agent(tenant_a.organization)
    t1, t2 = make_tool(tenant_a.organization), make_tool(tenant_a.organization)
    url = f"/api/v1/agents/{agent.pk}/"
    assert sorted(
        tenant_a.client.patch(url, {"tools": [t1.pk, t2.pk, t1.pk]}).json()["tools"]
    ) == sorted([t1.pk, t2.pk])
    assert tenant_a.client.patch(url, {"tools": []}).json()["tools"] == []


def test_structured_data_schema_is_checked_against_the_meta_schema(tenant_a: Tenant) -> None:
    good = {"type": "object", "properties": {"booked": {"type": "boolean"}}, "required": ["booked"]}
    response = tenant_a.client.post(
        "/api/v1/agents/",
        {**BASE, "analysis": {"structured_data_schema": good, "summary_prompt": "Sum up."}},
    )
    assert response.status_code == 201, response.json()
    assert response.json()["analysis"]["structured_data_schema"] == good


def test_list_paginates_filters_and_orders_stably(tenant_a: Tenant) -> None:
    for i in range(5):
        make_agent(tenant_a.organization, name=f"Bot {i}")
    make_agent(tenant_a.organization, name="Other")
    page1 = tenant_a.client.get("/api/v1/agents/?page_size=2").json()
    assert page1["count"] == 6 and len(page1["results"]) == 2 and page1["next"]
    seen = []
    url: str | None = "/api/v1/agents/?page_size=2"
    while url:
        body = tenant_a.client.get(url).json()
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
    assert len(seen) == len(set(seen)) == 6
    assert seen == sorted(seen, reverse=True)  # newest first
    filtered = tenant_a.client.get("/api/v1/agents/?name=bot").json()
    assert filtered["count"] == 5
    assert tenant_a.client.get("/api/v1/agents/?page=99").status_code == 404


def test_delete(tenant_a: Tenant) -> None:
    agent = make_agent(tenant_a.organization)
    assert tenant_a.client.delete(f"/api/v1/agents/{agent.pk}/").status_code == 204
    assert not Agent.objects.for_org(tenant_a.organization).filter(pk=agent.pk).exists()


def test_fallback_chains_are_validated_stored_and_merged(tenant_a: Tenant) -> None:
    from voice.config import FallbackConfig

    org = tenant_a.organization
    backup_key = make_credential(org, "openai")
    body = {
        **BASE,
        "fallback": {
            "first_token_timeout_s": 2.5,
            "llm": [
                {"provider": "openai", "model": "gpt-4o", "credential": backup_key.pk},
                {"provider": "scripted"},
            ],
            "tts": [{"provider": "espeak"}],
        },
    }
    response = tenant_a.client.post("/api/v1/agents/", body, format="json")
    assert response.status_code == 201, response.json()
    fallback = response.json()["fallback"]
    assert fallback["first_token_timeout_s"] == 2.5
    assert fallback["apology"] == FallbackConfig().apology  # the engine's default
    assert [(e["provider"], e["credential"]) for e in fallback["llm"]] == [
        ("openai", backup_key.pk),
        ("scripted", None),
    ]
    assert fallback["llm"][1]["max_tokens"] == LLMConfig("x").max_tokens
    assert fallback["stt"] == []
    # a PATCH replaces only what it names
    agent_id = response.json()["id"]
    patched = tenant_a.client.patch(
        f"/api/v1/agents/{agent_id}/", {"fallback": {"apology": "Hold on."}}, format="json"
    )
    assert patched.status_code == 200, patched.json()
    assert patched.json()["fallback"]["apology"] == "Hold on."
    assert len(patched.json()["fallback"]["llm"]) == 2


@pytest.mark.parametrize(
    ("fallback", "field"),
    [
        ({"llm": [{"provider": "nope"}]}, "llm"),
        ({"llm": [{"provider": "scripted"}] * 4}, "llm"),
        ({"tts": [{"provider": "espeak", "credential": "WRONG_KIND"}]}, "tts"),
        ({"llm": [{"provider": "openai", "credential": "WRONG_KIND"}]}, "llm"),
        ({"stt": [{"provider": "deepgram", "credential": 10**9}]}, "stt"),
        ({"first_token_timeout_s": 0}, "first_token_timeout_s"),
        ({"stt": "deepgram"}, "stt"),
    ],
)
def test_bad_fallbacks_are_a_400_naming_the_field(
    tenant_a: Tenant, tenant_b: Tenant, fallback: dict[str, Any], field: str
) -> None:
    wrong = make_credential(tenant_a.organization, "cartesia")
    for entries in fallback.values():
        if isinstance(entries, list):
            for entry in entries:
                if entry.get("credential") == "WRONG_KIND":
                    entry["credential"] = wrong.pk
    response = tenant_a.client.post(
        "/api/v1/agents/", {**BASE, "fallback": fallback}, format="json"
    )
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]["fallback"]


def test_another_tenants_credential_is_no_fallback(tenant_a: Tenant, tenant_b: Tenant) -> None:
    theirs = make_credential(tenant_b.organization, "openai")
    body = {**BASE, "fallback": {"llm": [{"provider": "openai", "credential": theirs.pk}]}}
    response = tenant_a.client.post("/api/v1/agents/", body, format="json")
    assert response.status_code == 400
    assert "llm" in response.json()["error"]["fields"]["fallback"]


def test_a_patch_with_an_incomplete_fallback_is_a_400_not_a_500(tenant_a: Tenant) -> None:
    agent = make_agent(tenant_a.organization)
    for fallback in ({"llm": [{}]}, {"llm": [{"model": "x"}]}, {"tts": [{"voice": "v"}]}):
        response = tenant_a.client.patch(
            f"/api/v1/agents/{agent.pk}/", {"fallback": fallback}, format="json"
        )
        assert response.status_code == 400, response.json()
        assert "fallback" in response.json()["error"]["fields"]
    # a complete entry added by a PATCH gets the engine's defaults
    ok = tenant_a.client.patch(
        f"/api/v1/agents/{agent.pk}/",
        {"fallback": {"tts": [{"provider": "espeak"}]}},
        format="json",
    )
    assert ok.status_code == 200, ok.json()
    assert ok.json()["fallback"]["tts"][0]["speed"] == 1.0


def test_end_of_turn_and_vad_are_chosen_per_agent(tenant_a: Tenant) -> None:
    turn = {"end_of_turn": "smart_turn", "vad": "silero"}
    response = tenant_a.client.post("/api/v1/agents/", {**BASE, "turn": turn})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["turn"]["end_of_turn"] == "smart_turn" and body["turn"]["vad"] == "silero"
    response = tenant_a.client.patch(f"/api/v1/agents/{body['id']}/", {"turn": {"vad": "nope"}})
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["turn"]["vad"] == ['"nope" is not a valid choice.']
