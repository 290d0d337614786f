"""The one list of providers: name, kind, label, the credential kind it takes, its
defaults, and how to build it.

Everything that names a provider derives from :data:`PROVIDERS`: the API's choices and the
dashboard's pickers (``choices``), the credential kinds a tenant can store
(``credential_kinds``), which credential an agent's provider takes (``spec(...).
credential``), the platform keys the Django side resolves for it, and the factories here.
Provider modules are imported lazily so a deployment that never uses a provider never pays
for importing its SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from importlib import import_module

from voice.config import LLMConfig, STTConfig, TTSConfig
from voice.providers.base import LLMProvider, STTProvider, TTSProvider


class Kind(StrEnum):
    STT = "stt"
    LLM = "llm"
    TTS = "tts"


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    kind: Kind
    label: str
    factory: str  # "module:Class", built with the kind's config dataclass
    # the tenant credential kind it takes ("" for a local provider that needs none); the
    # platform's own key and endpoint are <CREDENTIAL>_API_KEY / <CREDENTIAL>_BASE_URL
    credential: str = ""
    # the credential may name another server (OpenAI-compatible: Ollama, vLLM, Groq, ...)
    custom_base_url: bool = False
    default_base_url: str = ""
    default_model: str = ""
    default_voice: str = ""
    local: bool = False  # runs on this machine, no network


PROVIDERS: tuple[ProviderSpec, ...] = (
    ProviderSpec(
        "deepgram",
        Kind.STT,
        "Deepgram (streaming)",
        "voice.providers.deepgram_stt:DeepgramSTT",
        credential="deepgram",
        default_base_url="wss://api.deepgram.com",
        default_model="nova-3",
    ),
    ProviderSpec(
        "pocketsphinx",
        Kind.STT,
        "PocketSphinx (local, offline)",
        "voice.providers.pocketsphinx_stt:PocketSphinxSTT",
        local=True,
    ),
    ProviderSpec(
        "whisper",
        Kind.STT,
        "Whisper tiny.en (local, offline)",
        "voice.providers.whisper_stt:WhisperSTT",
        default_model="tiny.en",
        local=True,
    ),
    ProviderSpec(
        "openai",
        Kind.LLM,
        "OpenAI or an OpenAI-compatible server",
        "voice.providers.openai_llm:OpenAILLM",
        credential="openai",
        custom_base_url=True,
        default_base_url="https://api.openai.com/v1",
        default_model="gpt-4o-mini",
    ),
    ProviderSpec(
        "scripted",
        Kind.LLM,
        "Scripted responder (local, for demos and tests)",
        "voice.providers.scripted_llm:ScriptedLLM",
        local=True,
    ),
    ProviderSpec(
        "frontdesk",
        Kind.LLM,
        "Scripted front desk (local demo: hours, bookings, transfer)",
        "voice.providers.frontdesk_llm:FrontDeskLLM",
        local=True,
    ),
    ProviderSpec(
        "cartesia",
        Kind.TTS,
        "Cartesia (streaming)",
        "voice.providers.cartesia_tts:CartesiaTTS",
        credential="cartesia",
        default_base_url="https://api.cartesia.ai",
        default_model="sonic-2",
    ),
    ProviderSpec(
        "espeak",
        Kind.TTS,
        "eSpeak NG (local, offline)",
        "voice.providers.espeak_tts:EspeakTTS",
        default_voice="en-us",
        local=True,
    ),
)

_BY_KEY = {(p.kind, p.name): p for p in PROVIDERS}


class UnknownProvider(ValueError):
    pass


def providers(kind: Kind) -> tuple[ProviderSpec, ...]:
    return tuple(p for p in PROVIDERS if p.kind is kind)


def names(kind: Kind) -> tuple[str, ...]:
    return tuple(p.name for p in providers(kind))


def choices(kind: Kind) -> list[tuple[str, str]]:
    """``(name, label)`` pairs, for the API's choice fields and the dashboard's pickers."""
    return [(p.name, p.label) for p in providers(kind)]


def credential_kinds() -> tuple[str, ...]:
    """The provider credential kinds, in registry order, each once."""
    return tuple(dict.fromkeys(p.credential for p in PROVIDERS if p.credential))


def spec(kind: Kind, name: str) -> ProviderSpec:
    try:
        return _BY_KEY[(kind, name)]
    except KeyError:
        known = ", ".join(names(kind))
        raise UnknownProvider(f"unknown {kind} provider {name!r} (known: {known})") from None


def _load(kind: Kind, name: str) -> type:
    module, _, attr = spec(kind, name).factory.partition(":")
    cls: type = getattr(import_module(module), attr)
    return cls


def build_stt(config: STTConfig) -> STTProvider:
    provider: STTProvider = _load(Kind.STT, config.provider)(config)
    return provider


def build_llm(config: LLMConfig) -> LLMProvider:
    provider: LLMProvider = _load(Kind.LLM, config.provider)(config)
    return provider


def build_tts(config: TTSConfig) -> TTSProvider:
    provider: TTSProvider = _load(Kind.TTS, config.provider)(config)
    return provider
