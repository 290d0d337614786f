"""Build providers by name. Modules are imported lazily so a deployment that never uses a
provider never pays for importing its SDK."""

from __future__ import annotations

from importlib import import_module

from voice.config import LLMConfig, STTConfig, TTSConfig
from voice.providers.base import LLMProvider, STTProvider, TTSProvider

STT_PROVIDERS = {
    "deepgram": "voice.providers.deepgram_stt:DeepgramSTT",
    "pocketsphinx": "voice.providers.pocketsphinx_stt:PocketSphinxSTT",
}
LLM_PROVIDERS = {
    "openai": "voice.providers.openai_llm:OpenAILLM",
    "scripted": "voice.providers.scripted_llm:ScriptedLLM",
}
TTS_PROVIDERS = {
    "cartesia": "voice.providers.cartesia_tts:CartesiaTTS",
    "espeak": "voice.providers.espeak_tts:EspeakTTS",
}


class UnknownProvider(ValueError):
    pass


def _load(table: dict[str, str], kind: str, name: str) -> type:
    try:
        target = table[name]
    except KeyError:
        known = ", ".join(sorted(table))
        raise UnknownProvider(f"unknown {kind} provider {name!r} (known: {known})") from None
    module, _, attr = target.partition(":")
    cls: type = getattr(import_module(module), attr)
    return cls


def build_stt(config: STTConfig) -> STTProvider:
    provider: STTProvider = _load(STT_PROVIDERS, "stt", config.provider)(config)
    return provider


def build_llm(config: LLMConfig) -> LLMProvider:
    provider: LLMProvider = _load(LLM_PROVIDERS, "llm", config.provider)(config)
    return provider


def build_tts(config: TTSConfig) -> TTSProvider:
    provider: TTSProvider = _load(TTS_PROVIDERS, "tts", config.provider)(config)
    return provider
