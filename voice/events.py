"""What the engine tells the platform, through a :class:`Sink`.

Times are milliseconds since the call started (the engine's monotonic clock), so a
timeline can be drawn without clock skew. ``None`` means "did not happen in this turn".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class TurnKind(StrEnum):
    GREETING = "greeting"
    REPLY = "reply"
    IDLE_PROMPT = "idle-prompt"
    APOLOGY = "apology"  # a provider was replaced mid-call: the caller hears why it went quiet
    CLOSING = "closing"  # idle goodbye, max-duration message, the technical-trouble goodbye
    OPERATOR = "operator"  # a line a supervisor asked for (voice.control.Say)


class EndReason(StrEnum):
    CALLER_HANGUP = "caller-hangup"
    ASSISTANT_HANGUP = "assistant-hangup"  # end_call tool or an end-call phrase
    TRANSFERRED = "transferred"
    SILENCE_TIMEOUT = "silence-timeout"
    MAX_DURATION = "max-duration"
    PROVIDER_ERROR = "provider-error"
    ERROR = "error"
    OPERATOR_ENDED = "operator-ended"  # voice.control.Hangup


@dataclass(slots=True)
class TranscriptEntry:
    role: Role
    text: str
    turn_index: int
    start_ms: float
    end_ms: float
    interrupted: bool = False


@dataclass(slots=True)
class TurnTimeline:
    """One assistant turn. Raw marks; derived stages are properties."""

    turn_index: int
    kind: TurnKind
    user_speech_start_ms: float | None = None  # VAD
    user_speech_end_ms: float | None = None  # VAD (carries webrtcvad's hangover)
    # the caller's last audible sound, from the audio itself (voice.vad: the hangover
    # removed); voice-to-voice starts here, as the caller hears it
    user_audio_end_ms: float | None = None
    stt_final_ms: float | None = None
    end_of_turn_ms: float | None = None
    llm_request_ms: float | None = None
    llm_first_token_ms: float | None = None
    tts_first_text_ms: float | None = None
    tts_first_audio_ms: float | None = None
    first_audio_sent_ms: float | None = None
    playback_finished_ms: float | None = None
    interrupted_at_ms: float | None = None
    tool_calls: int = 0
    # providers replaced during this turn (see Fallback)
    fallbacks: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def _span(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(b - a, 3)

    @property
    def vad_hangover_ms(self) -> float | None:
        """How long after the caller's last sound the VAD still heard voice."""
        return self._span(self.user_audio_end_ms, self.user_speech_end_ms)

    @property
    def endpointing_ms(self) -> float | None:
        return self._span(self.user_speech_end_ms, self.end_of_turn_ms)

    @property
    def stt_lag_ms(self) -> float | None:
        return self._span(self.user_speech_end_ms, self.stt_final_ms)

    @property
    def llm_ttft_ms(self) -> float | None:
        return self._span(self.llm_request_ms, self.llm_first_token_ms)

    @property
    def llm_first_clause_ms(self) -> float | None:
        """LLM first token -> first speakable chunk sent to the TTS: the model streaming
        its first clause (and any tool calls before it), not our processing."""
        return self._span(self.llm_first_token_ms, self.tts_first_text_ms)

    @property
    def tts_ttfb_ms(self) -> float | None:
        return self._span(self.tts_first_text_ms, self.tts_first_audio_ms)

    @property
    def voice_to_voice_ms(self) -> float | None:
        """The caller's last sound -> our first audio out (from the VAD's end of speech
        when the audible end is unknown)."""
        start = self.user_audio_end_ms
        if start is None:
            start = self.user_speech_end_ms
        return self._span(start, self.first_audio_sent_ms)

    @property
    def preemptive_hidden_ms(self) -> float | None:
        """How much of the reply's preparation (LLM request -> the TTS's first audio) ran
        before the end of turn was confirmed: a preemptive reply's LLM and TTS stages
        overlap the end-of-turn wait by this much, so the caller never waits for it.
        0 when the request followed the confirmation."""
        request, confirmed, ready = (
            self.llm_request_ms,
            self.end_of_turn_ms,
            self.tts_first_audio_ms,
        )
        if request is None or confirmed is None or ready is None:
            return None
        return round(max(0.0, min(ready, confirmed) - request), 3)

    @property
    def platform_overhead_ms(self) -> float | None:
        """Voice-to-voice minus every stage that is not ours: the VAD's hangover, the
        end-of-turn wait, the LLM's first token and first clause, the TTS's first byte.
        What is left is the hand-offs between them (end of turn -> LLM request, first
        clause -> TTS, first audio -> carrier): our own processing. Of a preemptive
        reply's LLM and TTS stages only the part after the end of turn is in series with
        the caller's wait (see ``preemptive_hidden_ms``); what ran before it is not
        subtracted twice, so the overhead is never negative."""
        parts = (
            self.voice_to_voice_ms,
            self.endpointing_ms,
            self.llm_ttft_ms,
            self.llm_first_clause_ms,
            self.tts_ttfb_ms,
        )
        if any(p is None for p in parts):
            return None
        v2v, ep, llm, clause, tts = parts
        assert v2v is not None and ep is not None and llm is not None
        assert clause is not None and tts is not None
        hangover = self.vad_hangover_ms or 0.0
        hidden = self.preemptive_hidden_ms or 0.0
        return round(v2v - hangover - ep - (llm + clause + tts - hidden), 3)

    def as_dict(self) -> dict[str, Any]:
        raw = {name: getattr(self, name) for name in self.__slots__}
        raw["kind"] = str(self.kind)
        for derived in (
            "vad_hangover_ms",
            "endpointing_ms",
            "stt_lag_ms",
            "llm_ttft_ms",
            "llm_first_clause_ms",
            "tts_ttfb_ms",
            "voice_to_voice_ms",
            "preemptive_hidden_ms",
            "platform_overhead_ms",
        ):
            raw[derived] = getattr(self, derived)
        return raw


@dataclass(slots=True)
class ToolCallRecord:
    turn_index: int
    name: str
    # secure tools (collect_digits) carry redacted arguments and results here
    arguments: dict[str, Any]
    ok: bool
    result: str
    duration_ms: float


@dataclass(slots=True)
class SecureCapture:
    """A secure ``collect_digits`` window, in ms since the call started.

    Emitted twice per capture: when it opens (``end_ms`` None) and when it closes. The
    caller's audio between the two carries keypad tones: a recording mutes it, so the
    digits can't be decoded from the tones. Carries no digits.
    """

    tool: str
    turn_index: int
    start_ms: float
    end_ms: float | None = None


@dataclass(slots=True)
class Usage:
    stt_seconds: float = 0.0
    llm_prompt_tokens: int = 0
    llm_completion_tokens: int = 0
    tts_characters: int = 0
    # preemptive replies prepared and then discarded: requests, and their tokens as the
    # providers reported them (already counted in the two above: usage stays true)
    discarded_llm_requests: int = 0
    discarded_llm_tokens: int = 0


@dataclass(slots=True)
class CallEnded:
    reason: EndReason
    detail: str = ""
    duration_ms: float = 0.0
    usage: Usage = field(default_factory=Usage)
    transfer_to: str = ""
    # caller audio dropped because the engine fell behind (see voice.conversation)
    dropped_frames: int = 0
    # every provider switch of the call, in order (see Fallback)
    fallbacks: list[dict[str, Any]] = field(default_factory=list)


def chain_label(name: str, at: int) -> str:
    """How a provider's place in its fallback chain is named in the record."""
    return f"{name} (primary)" if at == 0 else f"{name} (fallback {at})"


@dataclass(frozen=True, slots=True)
class Fallback:
    """A provider replaced by the next in its chain (or retried, when it has none)."""

    stage: str  # "stt" | "llm" | "tts"
    from_provider: str  # "openai (primary)", "openai (fallback 1)"
    to_provider: str
    reason: str
    at_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "from": self.from_provider,
            "to": self.to_provider,
            "reason": self.reason,
            "at_ms": round(self.at_ms, 1),
        }


Event = TranscriptEntry | TurnTimeline | ToolCallRecord | SecureCapture | CallEnded


class Sink(Protocol):
    """Receives engine events. ``emit`` must not block: queue and return.

    A transcript entry is emitted once the turn it belongs to has ended, so a platform that
    persists each event as it arrives loses at most the turn in flight if it crashes.
    """

    def emit(self, event: Event) -> None: ...
