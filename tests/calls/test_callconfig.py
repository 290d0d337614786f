"""From an agent (snapshotted on the Call) to the engine's frozen CallConfig."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import override_settings

from agents.services import agent_update, credential_create
from calls.callconfig import call_config_build
from calls.models import Call
from tests.conftest import Tenant
from tests.factories import make_agent, make_call, make_credential, make_phone_number, make_tool
from voice.config import (
    CallConfig,
    EndOfTurn,
    IdleConfig,
    InterruptionConfig,
    LLMConfig,
    STTConfig,
    ToolConfig,
    ToolKind,
    TTSConfig,
    TurnConfig,
    VadKind,
)

PLATFORM = {
    "DEEPGRAM_API_KEY": "platform-deepgram-key",
    "OPENAI_API_KEY": "platform-openai-key",
    "CARTESIA_API_KEY": "platform-cartesia-key",
    "DEEPGRAM_BASE_URL": "ws://127.0.0.1:9001",
    "OPENAI_BASE_URL": "http://127.0.0.1:9002/v1",
    "CARTESIA_BASE_URL": "http://127.0.0.1:9003",
}
CLOUD = {
    "stt": {"provider": "deepgram", "model": "nova-3", "language": "en-GB"},
    "llm": {"provider": "openai", "model": "gpt-4o-mini", "temperature": 0.3, "max_tokens": 200},
    "tts": {"provider": "cartesia", "voice": "voice-1", "model": "sonic-2", "speed": 1.1},
}


def _call_for(tenant: Tenant, **agent_data: Any) -> Call:
    agent = make_agent(tenant.organization, **agent_data)
    return make_call(
        tenant.organization, phone_number=make_phone_number(tenant.organization, agent=agent)
    )


@override_settings(**PLATFORM)
def test_tenant_credentials_win_over_platform_keys(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    deepgram, cartesia = make_credential(org, "deepgram"), make_credential(org, "cartesia")
    openai = make_credential(org, "openai")
    call = _call_for(
        tenant_a, **CLOUD, stt_credential=deepgram, llm_credential=openai, tts_credential=cartesia
    )
    config = call_config_build(call)
    assert config.stt == STTConfig(
        provider="deepgram",
        model="nova-3",
        language="en-GB",
        api_key=deepgram.api_key,
        base_url=PLATFORM["DEEPGRAM_BASE_URL"],
    )
    assert config.llm == LLMConfig(
        provider="openai",
        model="gpt-4o-mini",
        temperature=0.3,
        max_tokens=200,
        api_key=openai.api_key,
        base_url=PLATFORM["OPENAI_BASE_URL"],
    )
    assert config.tts.api_key == cartesia.api_key
    assert config.tts.base_url == PLATFORM["CARTESIA_BASE_URL"]
    assert (config.tts.voice, config.tts.model, config.tts.speed) == ("voice-1", "sonic-2", 1.1)


@override_settings(**PLATFORM)
def test_without_credentials_the_platform_keys_and_endpoints_apply(tenant_a: Tenant) -> None:
    config = call_config_build(_call_for(tenant_a, **CLOUD))
    assert (config.stt.api_key, config.stt.base_url) == (
        PLATFORM["DEEPGRAM_API_KEY"],
        PLATFORM["DEEPGRAM_BASE_URL"],
    )
    assert (config.llm.api_key, config.llm.base_url) == (
        PLATFORM["OPENAI_API_KEY"],
        PLATFORM["OPENAI_BASE_URL"],
    )
    assert (config.tts.api_key, config.tts.base_url) == (
        PLATFORM["CARTESIA_API_KEY"],
        PLATFORM["CARTESIA_BASE_URL"],
    )


@override_settings(**PLATFORM)
def test_an_openai_compatible_credential_brings_its_base_url(tenant_a: Tenant) -> None:
    ollama = credential_create(
        organization=tenant_a.organization,
        name="ollama",
        provider="openai",
        api_key="ollama-key-123456",
        base_url="http://127.0.0.1:11434/v1",
    )
    config = call_config_build(_call_for(tenant_a, **CLOUD, llm_credential=ollama))
    assert (config.llm.api_key, config.llm.base_url) == (
        "ollama-key-123456",
        "http://127.0.0.1:11434/v1",
    )


@override_settings(**PLATFORM)
def test_local_providers_get_no_keys(tenant_a: Tenant) -> None:
    config = call_config_build(_call_for(tenant_a))
    for stage in (config.stt, config.llm, config.tts):
        assert (stage.api_key, stage.base_url) == ("", "")


@override_settings(**PLATFORM)
def test_a_credential_removed_since_the_call_arrived_falls_back_to_the_platform(
    tenant_a: Tenant,
) -> None:
    own = make_credential(tenant_a.organization, "openai")
    call = _call_for(tenant_a, **CLOUD, llm_credential=own)
    assert call.agent is not None
    agent_update(agent=call.agent, data={"llm_credential": None})
    own.delete()
    config = call_config_build(call)
    assert config.llm.api_key == PLATFORM["OPENAI_API_KEY"]


def test_tools_become_tool_configs(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    tools = [
        make_tool(
            org,
            name="lookup_order",
            kind="http",
            description="Find an order.",
            url="https://tools.example.com/orders",
            method="GET",
            headers={"X-B": "2", "X-A": "1"},
            timeout_s=4.0,
            parameters={"type": "object", "properties": {"id": {"type": "string"}}},
            filler="One moment.",
            filler_after_s=0.5,
        ),
        make_tool(org, name="hang_up", kind="end_call"),
        make_tool(org, name="to_human", kind="transfer_call", transfer_to="+14155550100"),
        make_tool(
            org,
            name="card",
            kind="collect_digits",
            max_digits=19,
            terminator="*",
            digit_timeout_s=6.0,
        ),
    ]
    config = call_config_build(_call_for(tenant_a, tools=tools))
    by_name = {tool.name: tool for tool in config.tools}
    assert [t.name for t in config.tools] == ["card", "hang_up", "lookup_order", "to_human"]
    assert {name: t.kind for name, t in by_name.items()} == {
        "lookup_order": ToolKind.HTTP,
        "hang_up": ToolKind.END_CALL,
        "to_human": ToolKind.TRANSFER_CALL,
        "card": ToolKind.COLLECT_DIGITS,
    }
    assert by_name["lookup_order"] == ToolConfig(
        name="lookup_order",
        description="Find an order.",
        kind=ToolKind.HTTP,
        parameters={"type": "object", "properties": {"id": {"type": "string"}}},
        url="https://tools.example.com/orders",
        method="GET",
        headers=(("X-A", "1"), ("X-B", "2")),
        timeout_s=4.0,
        filler="One moment.",
        filler_after_s=0.5,
    )
    assert by_name["to_human"].transfer_to == "+14155550100"
    card = by_name["card"]
    assert (card.max_digits, card.terminator, card.digit_timeout_s) == (19, "*", 6.0)


def test_webhook_secret_comes_from_the_agent_decrypted(tenant_a: Tenant) -> None:
    call = _call_for(tenant_a, webhook_secret="whsec-live-0123456789")
    config = call_config_build(call)
    assert config.webhook_secret == "whsec-live-0123456789"


def test_the_snapshot_not_the_edited_agent_drives_the_call(tenant_a: Tenant) -> None:
    call = _call_for(tenant_a, system_prompt="Be brief.", first_message="Hello!")
    assert call.agent is not None
    agent_update(agent=call.agent, data={"system_prompt": "Be verbose.", "first_message": "Yo"})
    config = call_config_build(call)
    assert (config.system_prompt, config.first_message) == ("Be brief.", "Hello!")
    assert config.call_id == str(call.pk)


def test_agent_columns_carry_through(tenant_a: Tenant) -> None:
    call = _call_for(
        tenant_a,
        first_message_interruptible=False,
        turn={
            "min_wait_ms": 300,
            "max_wait_ms": 2000,
            "end_of_turn": "smart_turn",
            "vad": "silero",
        },
        interruption={
            "enabled": False,
            "min_speech_ms": 400,
            "min_words": 2,
            "transcript_wait_ms": 150,
            "acknowledgements": ["sure"],
        },
        idle={"prompt": "Hello?", "timeout_s": 5.0, "max_prompts": 1, "goodbye": "Bye."},
        max_duration_s=60.0,
        max_duration_message="Time's up.",
        end_call_phrases=["goodbye"],
    )
    config = call_config_build(call)
    assert config.first_message_interruptible is False
    assert config.turn == TurnConfig(
        min_wait_ms=300,
        max_wait_ms=2000,
        end_of_turn=EndOfTurn.SMART_TURN,
        vad=VadKind.SILERO,
    )
    assert config.interruption == InterruptionConfig(
        enabled=False,
        min_speech_ms=400,
        min_words=2,
        transcript_wait_ms=150,
        acknowledgements=("sure",),
    )
    assert config.idle == IdleConfig(prompt="Hello?", timeout_s=5.0, max_prompts=1, goodbye="Bye.")
    assert (config.max_duration_s, config.max_duration_message) == (60.0, "Time's up.")
    assert config.end_call_phrases == ("goodbye",)


@pytest.mark.parametrize("agent_gone", [False, True])
def test_missing_snapshot_keys_take_the_engines_defaults(
    tenant_a: Tenant, agent_gone: bool
) -> None:
    call = _call_for(tenant_a)
    call.agent_snapshot = {
        "stt": {"provider": "pocketsphinx"},
        "llm": {"provider": "scripted"},
        "tts": {"provider": "espeak"},
    }
    if agent_gone:
        call.agent = None
    call.save()
    config = call_config_build(call)
    engine = CallConfig(
        call_id=str(call.pk),
        system_prompt="",
        stt=STTConfig("pocketsphinx"),
        llm=LLMConfig("scripted"),
        tts=TTSConfig("espeak"),
    )
    assert config == engine


def test_tool_header_values_stay_out_of_the_call_record(tenant_a: Tenant) -> None:
    secret = "Bearer tool-server-s3cret-value"
    tool = make_tool(
        tenant_a.organization,
        name="crm",
        kind="http",
        url="https://crm.example.test/hook",
        headers={"Authorization": secret},
    )
    call = _call_for(tenant_a, tools=[tool])
    snapshot = json.dumps(call.agent_snapshot)
    assert secret not in snapshot
    assert call.agent_snapshot["tools"][0]["header_names"] == ["Authorization"]
    # Resolved, decrypted, when the stream starts...
    config = call_config_build(call)
    assert config.tools[0].headers == (("Authorization", secret),)
    # ... from the tool as it is then: a tool deleted since sends no stale secret.
    tool.delete()
    assert call_config_build(call).tools[0].headers == ()


@override_settings(**PLATFORM)
def test_fallback_chains_resolve_their_own_credentials(tenant_a: Tenant) -> None:
    from agents.serializers import AgentInputSerializer
    from voice.config import FallbackConfig

    org = tenant_a.organization
    groq = credential_create(
        organization=org,
        name="groq",
        provider="openai",
        api_key="groq-key-123456",
        base_url="https://api.groq.example/openai/v1",
    )
    serializer = AgentInputSerializer(
        data={
            "name": "x",
            **CLOUD,
            "fallback": {
                "apology": "Hang on.",
                "llm": [{"provider": "openai", "model": "llama", "credential": groq.pk}],
                "tts": [{"provider": "espeak", "voice": "en-gb"}],
                "stt": [{"provider": "deepgram"}],
            },
        },
        context={"organization": org},
    )
    assert serializer.is_valid(), serializer.errors
    call = _call_for(tenant_a, **serializer.validated_data)
    config = call_config_build(call)
    [llm] = config.llm_fallbacks
    assert (llm.provider, llm.model, llm.api_key, llm.base_url) == (
        "openai",
        "llama",
        "groq-key-123456",
        "https://api.groq.example/openai/v1",
    )
    [tts] = config.tts_fallbacks
    assert (tts.provider, tts.voice, tts.api_key) == ("espeak", "en-gb", "")
    [stt] = config.stt_fallbacks
    # no credential named: the platform's key, as for a primary
    assert (stt.api_key, stt.base_url) == (
        PLATFORM["DEEPGRAM_API_KEY"],
        PLATFORM["DEEPGRAM_BASE_URL"],
    )
    assert config.fallback == FallbackConfig(apology="Hang on.")
    # the snapshot names the credential by id only
    assert "groq-key" not in str(call.agent_snapshot)


@override_settings(**PLATFORM, OUTBOUND_ALLOWED_NETWORKS=["10.0.0.0/8"])
def test_a_tenant_base_url_goes_through_the_outbound_guard_the_platforms_does_not(
    tenant_a: Tenant,
) -> None:
    ollama = credential_create(
        organization=tenant_a.organization,
        name="ollama",
        provider="openai",
        api_key="ollama-key-123456",
        base_url="https://llm.example.com/v1",
    )
    config = call_config_build(_call_for(tenant_a, **CLOUD, llm_credential=ollama))
    assert (config.llm.tenant_url, config.llm.allowed_networks) == (True, ("10.0.0.0/8",))
    assert config.allowed_networks == ("10.0.0.0/8",)  # for HTTP tools
    platform = call_config_build(_call_for(tenant_a, **CLOUD))
    assert platform.llm.base_url == PLATFORM["OPENAI_BASE_URL"]
    assert platform.llm.tenant_url is False  # the operator's own endpoint stays trusted
