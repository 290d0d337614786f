"""From an agent to the engine's frozen ``voice.config.CallConfig``.

Two steps, at two moments:

- ``agent_snapshot(agent)`` when the call arrives: the agent's whole configuration as
  plain JSON, stored on the Call. No secrets, only credential ids.
- ``call_config_build(call)`` when the media stream starts: the snapshot plus secrets
  resolved from the tenant's credentials (else the platform's env keys) and endpoint
  overrides from settings. The result goes to the engine and is never stored. Defaults
  for anything the snapshot lacks are voice.config's own (``from_plain``): no copies here.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from agents.models import Agent, Credential, Tool
from calls.models import Call
from calls.variables import snapshot_render
from voice.config import (
    CallConfig,
    FallbackConfig,
    IdleConfig,
    InterruptionConfig,
    LLMConfig,
    RecordingMode,
    STTConfig,
    ToolConfig,
    ToolKind,
    TTSConfig,
    TurnConfig,
    from_plain,
)
from voice.providers.registry import Kind, spec

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
        "secure": tool.secure,
        "reveal_last_digits": tool.reveal_last_digits,
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
        "fallback": dict(agent.fallback),
        "voicemail": dict(agent.voicemail),
        "recording": agent.recording,
    }


def _credential(call: Call, credential_id: int | None) -> Credential | None:
    if credential_id is None:
        return None
    # A credential deleted (or, impossibly, moved) since the snapshot: fall back to the
    # platform keys rather than failing the call.
    return Credential.objects.for_org(call.organization).filter(pk=credential_id).first()


def _endpoint(call: Call, kind: Kind, provider: str, credential_id: int | None) -> dict[str, Any]:
    """The API key and base URL for a provider: the tenant's credential, else the
    platform's ``<CREDENTIAL>_API_KEY`` / ``<CREDENTIAL>_BASE_URL`` settings. A base URL
    from the tenant is marked so the engine connects to it through the outbound guard;
    the operator's own stay trusted."""
    found = spec(kind, provider)
    if not found.credential:
        return {}
    prefix = found.credential.upper()
    api_key = getattr(settings, f"{prefix}_API_KEY", "")
    base_url = getattr(settings, f"{prefix}_BASE_URL", "")
    tenant_url = False
    credential = _credential(call, credential_id)
    if credential is not None and credential.provider == found.credential:
        api_key = credential.api_key or api_key
        if credential.base_url:
            base_url, tenant_url = credential.base_url, True
    endpoint: dict[str, Any] = {"api_key": api_key, "base_url": base_url}
    if found.custom_base_url:  # only such providers (LLMConfig) take a tenant URL
        endpoint["tenant_url"] = tenant_url
        endpoint["allowed_networks"] = tuple(settings.OUTBOUND_ALLOWED_NETWORKS)
    return endpoint


def _tool_headers(call: Call, snapshot_tools: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    ids = [t["id"] for t in snapshot_tools if t.get("header_names")]
    if not ids:
        return {}
    tools = Tool.objects.for_org(call.organization).filter(pk__in=ids)
    return {tool.pk: tool.headers for tool in tools}


def _tool_config(raw: dict[str, Any], headers: dict[str, str]) -> ToolConfig:
    return from_plain(
        ToolConfig,
        raw,
        kind=ToolKind(raw["kind"]),
        parameters=raw.get("parameters") or {},
        headers=tuple(sorted(headers.items())),
    )


def call_snapshot_rendered(call: Call) -> dict[str, Any]:
    """The call's snapshot with its variables filled in (calls/variables.py)."""
    builtins = {
        "from_number": call.from_number,
        "to_number": call.to_number,
        "direction": call.direction,
    }
    return snapshot_render(call.agent_snapshot, call.variables or {}, builtins)


def call_config_build(call: Call) -> CallConfig:
    snap = call_snapshot_rendered(call)
    tools = list(snap.get("tools", ()))
    headers = _tool_headers(call, tools)
    webhook_secret = ""
    if call.agent_id is not None:
        agent = Agent.objects.for_org(call.organization).filter(pk=call.agent_id).first()
        webhook_secret = agent.webhook_secret if agent is not None else ""
    fallback = snap.get("fallback") or {}
    providers: dict[Kind, Any] = {}
    fallbacks: dict[Kind, tuple[Any, ...]] = {}
    for kind, cls in ((Kind.STT, STTConfig), (Kind.LLM, LLMConfig), (Kind.TTS, TTSConfig)):
        raw = snap[kind]
        endpoint = _endpoint(call, kind, raw["provider"], snap.get(f"{kind}_credential_id"))
        providers[kind] = from_plain(cls, raw, **endpoint)
        fallbacks[kind] = tuple(
            from_plain(
                cls, entry, **_endpoint(call, kind, entry["provider"], entry.get("credential"))
            )
            for entry in fallback.get(kind, ())
        )
    return from_plain(
        CallConfig,
        snap,
        call_id=str(call.pk),
        system_prompt=snap.get("system_prompt", ""),
        stt=providers[Kind.STT],
        llm=providers[Kind.LLM],
        tts=providers[Kind.TTS],
        turn=from_plain(TurnConfig, snap.get("turn") or {}),
        interruption=from_plain(InterruptionConfig, snap.get("interruption") or {}),
        idle=from_plain(IdleConfig, snap.get("idle") or {}),
        tools=tuple(_tool_config(t, headers.get(t.get("id"), {})) for t in tools),
        webhook_secret=webhook_secret,
        stt_fallbacks=fallbacks[Kind.STT],
        llm_fallbacks=fallbacks[Kind.LLM],
        tts_fallbacks=fallbacks[Kind.TTS],
        fallback=from_plain(FallbackConfig, fallback),
        allowed_networks=tuple(settings.OUTBOUND_ALLOWED_NETWORKS),
        recording=RecordingMode(snap.get("recording") or RecordingMode.OFF),
    )
