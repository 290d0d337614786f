"""From an agent to the engine's frozen ``voice.config.CallConfig``.

Two steps, at two moments:

- ``agent_snapshot(agent)`` when the call arrives: the agent's whole configuration as
  plain JSON, stored on the Call. No secrets, only credential ids.
- ``call_config_build(call)`` when the media stream starts: the snapshot plus secrets
  resolved from the tenant's credentials (else the platform's env keys) and endpoint
  overrides from settings. The result goes to the engine and is never stored.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from agents.models import Agent, Credential, Tool
from calls.models import Call
from voice.config import (
    CallConfig,
    IdleConfig,
    InterruptionConfig,
    LLMConfig,
    STTConfig,
    ToolConfig,
    ToolKind,
    TTSConfig,
    TurnConfig,
)

SNAPSHOT_VERSION = 1


def _tool_snapshot(tool: Any) -> dict[str, Any]:
    return {
        "id": tool.pk,
        "name": tool.name,
        "description": tool.description,
        "kind": tool.kind,
        "parameters": tool.parameters,
        "url": tool.url,
        "method": tool.method,
        # Values are secrets, resolved when the call starts; the record keeps the names.
        "header_names": sorted(tool.headers),
        "timeout_s": tool.timeout_s,
        "transfer_to": tool.transfer_to,
        "max_digits": tool.max_digits,
        "terminator": tool.terminator,
        "digit_timeout_s": tool.digit_timeout_s,
        "filler": tool.filler,
        "filler_after_s": tool.filler_after_s,
    }


def agent_snapshot(agent: Agent) -> dict[str, Any]:
    return {
        "version": SNAPSHOT_VERSION,
        "agent_id": agent.pk,
        "name": agent.name,
        "system_prompt": agent.system_prompt,
        "first_message": agent.first_message,
        "first_message_interruptible": agent.first_message_interruptible,
        "stt": dict(agent.stt),
        "llm": dict(agent.llm),
        "tts": dict(agent.tts),
        "stt_credential_id": agent.stt_credential_id,
        "llm_credential_id": agent.llm_credential_id,
        "tts_credential_id": agent.tts_credential_id,
        "turn": dict(agent.turn),
        "interruption": dict(agent.interruption),
        "idle": dict(agent.idle),
        "max_duration_s": agent.max_duration_s,
        "max_duration_message": agent.max_duration_message,
        "end_call_phrases": list(agent.end_call_phrases),
        "tools": [_tool_snapshot(t) for t in agent.tools.all().order_by("name")],
        "webhook_url": agent.webhook_url,
        "analysis": dict(agent.analysis),
    }


def _credential(call: Call, credential_id: int | None) -> Credential | None:
    if credential_id is None:
        return None
    # A credential deleted (or, impossibly, moved) since the snapshot: fall back to the
    # platform keys rather than failing the call.
    return Credential.objects.for_org(call.organization).filter(pk=credential_id).first()


def _platform_defaults(provider: str) -> tuple[str, str]:
    return {
        "deepgram": (settings.DEEPGRAM_API_KEY, settings.DEEPGRAM_BASE_URL),
        "openai": (settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL),
        "cartesia": (settings.CARTESIA_API_KEY, settings.CARTESIA_BASE_URL),
    }.get(provider, ("", ""))


def _endpoint(call: Call, provider: str, credential_id: int | None) -> tuple[str, str]:
    api_key, base_url = _platform_defaults(provider)
    credential = _credential(call, credential_id)
    if credential is not None and credential.provider == provider:
        api_key = credential.api_key or api_key
        base_url = credential.base_url or base_url
    return api_key, base_url


def _tool_headers(call: Call, snapshot_tools: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    ids = [t["id"] for t in snapshot_tools if t.get("header_names")]
    if not ids:
        return {}
    tools = Tool.objects.for_org(call.organization).filter(pk__in=ids)
    return {tool.pk: tool.headers for tool in tools}


def _tool_config(raw: dict[str, Any], headers: dict[str, str]) -> ToolConfig:
    return ToolConfig(
        name=raw["name"],
        description=raw.get("description", ""),
        kind=ToolKind(raw["kind"]),
        parameters=raw.get("parameters") or {},
        url=raw.get("url", ""),
        method=raw.get("method", "POST"),
        headers=tuple(sorted(headers.items())),
        timeout_s=raw.get("timeout_s", 10.0),
        transfer_to=raw.get("transfer_to", ""),
        max_digits=raw.get("max_digits", 16),
        terminator=raw.get("terminator", "#"),
        digit_timeout_s=raw.get("digit_timeout_s", 10.0),
        filler=raw.get("filler", ""),
        filler_after_s=raw.get("filler_after_s", 1.0),
    )


def call_config_build(call: Call) -> CallConfig:
    snap = call.agent_snapshot
    stt, llm, tts = snap["stt"], snap["llm"], snap["tts"]
    stt_key, stt_url = _endpoint(call, stt["provider"], snap.get("stt_credential_id"))
    llm_key, llm_url = _endpoint(call, llm["provider"], snap.get("llm_credential_id"))
    tts_key, tts_url = _endpoint(call, tts["provider"], snap.get("tts_credential_id"))
    interruption = snap.get("interruption") or {}
    idle = snap.get("idle") or {}
    turn = snap.get("turn") or {}
    tools = list(snap.get("tools", ()))
    headers = _tool_headers(call, tools)
    webhook_secret = ""
    if call.agent_id is not None:
        agent = Agent.objects.for_org(call.organization).filter(pk=call.agent_id).first()
        webhook_secret = agent.webhook_secret if agent is not None else ""
    defaults = CallConfig("", "", STTConfig(""), LLMConfig(""), TTSConfig(""))
    return CallConfig(
        call_id=str(call.pk),
        system_prompt=snap.get("system_prompt", ""),
        first_message=snap.get("first_message", ""),
        first_message_interruptible=snap.get("first_message_interruptible", True),
        stt=STTConfig(
            provider=stt["provider"],
            model=stt.get("model", ""),
            language=stt.get("language", "en-US"),
            api_key=stt_key,
            base_url=stt_url,
        ),
        llm=LLMConfig(
            provider=llm["provider"],
            model=llm.get("model", ""),
            temperature=llm.get("temperature", 0.7),
            max_tokens=llm.get("max_tokens", 512),
            api_key=llm_key,
            base_url=llm_url,
        ),
        tts=TTSConfig(
            provider=tts["provider"],
            voice=tts.get("voice", ""),
            model=tts.get("model", ""),
            speed=tts.get("speed", 1.0),
            language=tts.get("language", "en"),
            api_key=tts_key,
            base_url=tts_url,
        ),
        turn=TurnConfig(**{k: turn[k] for k in ("min_wait_ms", "max_wait_ms") if k in turn}),
        interruption=InterruptionConfig(
            **{
                k: interruption[k]
                for k in ("enabled", "min_speech_ms", "min_words", "transcript_wait_ms")
                if k in interruption
            },
            acknowledgements=tuple(
                interruption.get("acknowledgements", InterruptionConfig().acknowledgements)
            ),
        ),
        idle=IdleConfig(
            **{k: idle[k] for k in ("prompt", "timeout_s", "max_prompts", "goodbye") if k in idle}
        ),
        max_duration_s=snap.get("max_duration_s", defaults.max_duration_s),
        max_duration_message=snap.get("max_duration_message", defaults.max_duration_message),
        end_call_phrases=tuple(snap.get("end_call_phrases", ())),
        tools=tuple(_tool_config(t, headers.get(t.get("id"), {})) for t in tools),
        webhook_secret=webhook_secret,
        labels=(("organization", str(call.organization_id)), ("agent", str(call.agent_id))),
    )
