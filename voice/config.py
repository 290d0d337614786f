"""The frozen, typed call configuration the platform hands to the engine.

Built by the Django side from an agent snapshot plus resolved credentials; the engine
never looks anything up itself. Everything here is immutable so one config can be shared
safely by the tasks of a call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from typing import Any, TypeVar


class Encoding(StrEnum):
    PCM16 = "pcm16"  # signed 16-bit little-endian
    MULAW = "mulaw"
    ALAW = "alaw"


@dataclass(frozen=True, slots=True)
class AudioFormat:
    encoding: Encoding
    sample_rate: int
    channels: int = 1

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding is Encoding.PCM16 else 1

    def bytes_for_ms(self, ms: int) -> int:
        return self.sample_rate * ms // 1000 * self.bytes_per_sample * self.channels


TWILIO_FORMAT = AudioFormat(Encoding.MULAW, 8000)


class RecordingMode(StrEnum):
    """What a call records (voice/recording.py): nothing, one mixed channel, or two
    channels (caller left, agent right)."""

    OFF = "off"
    MONO = "mono"
    DUAL = "dual"


@dataclass(frozen=True, slots=True)
class STTConfig:
    provider: str  # "deepgram" | "pocketsphinx" | ...
    model: str = ""
    language: str = "en-US"
    api_key: str = ""
    base_url: str = ""  # e.g. "wss://api.deepgram.com"; "" = provider default


@dataclass(frozen=True, slots=True)
class LLMConfig:
    provider: str  # "openai" (any OpenAI-compatible server) | "scripted"
    model: str = ""
    temperature: float = 0.7
    max_tokens: int = 512
    api_key: str = ""
    base_url: str = ""  # e.g. "https://api.openai.com/v1"
    # base_url came from a tenant's credential (not the operator's environment): connect
    # only to public addresses plus allowed_networks (CIDRs), see voice/netguard.py
    tenant_url: bool = False
    allowed_networks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TTSConfig:
    provider: str  # "cartesia" | "espeak"
    voice: str = ""
    model: str = ""
    speed: float = 1.0
    language: str = "en"
    api_key: str = ""
    base_url: str = ""  # e.g. "https://api.cartesia.ai"


class EndOfTurn(StrEnum):
    """What decides that the caller has finished (voice/turns.py)."""

    # silence, the STT provider's end of utterance and transcript cues (the default)
    RULES = "rules"
    # the rules, plus the Smart Turn v3 model (voice/smart_turn.py) asked about the
    # caller's audio each time they go quiet: "unfinished" waits max_wait_ms
    SMART_TURN = "smart_turn"


class VadKind(StrEnum):
    """The per-frame voice activity classifier (voice/vad.py)."""

    WEBRTC = "webrtc"
    SILERO = "silero"


@dataclass(frozen=True, slots=True)
class TurnConfig:
    """End-of-turn waits, in milliseconds after the caller's last voiced audio."""

    min_wait_ms: int = 200
    max_wait_ms: int = 1500
    # Preemptive replies: once the caller has been quiet ``preemptive_after_ms`` the STT is
    # asked to finalize and the reply is prepared (LLM and TTS run, audio held); it plays
    # only when the rules above confirm the turn, and is discarded if the caller goes on
    # or the confirmed words differ.
    preemptive: bool = True
    preemptive_after_ms: int = 40
    # Today's rules and webrtcvad stay the defaults: on the bench's labelled set the model
    # saved 1 false cut-off of 7, raised the p95 end-of-turn delay 361 -> 1,661 ms and
    # costs ~32 ms of CPU per pause; Silero gained nothing measurable for 12x the CPU
    # (docs/benchmarks.md, "End of turn (item 2)").
    end_of_turn: EndOfTurn = EndOfTurn.RULES
    vad: VadKind = VadKind.WEBRTC


class BargeInMode(StrEnum):
    """What the caller's speech over the bot does (see voice.machine)."""

    # stop the audio at the speech's onset, keep the reply; resume it unless the words
    # turn out to be a real interruption (not an acknowledgement, a cough or noise)
    PAUSE_THEN_DECIDE = "pause_then_decide"
    IMMEDIATE = "immediate"  # cut once the speech lasts min_speech_ms, whatever it says
    WORDS = "words"  # cut once the transcript shows words that are not acknowledgements


@dataclass(frozen=True, slots=True)
class InterruptionConfig:
    enabled: bool = True
    mode: BargeInMode = BargeInMode.PAUSE_THEN_DECIDE
    min_speech_ms: int = 250
    min_words: int = 0
    acknowledgements: tuple[str, ...] = ("mhm", "uh-huh", "yeah", "right", "okay", "ok")
    # With min_words = 0: speech that has no transcript yet interrupts only once it has
    # lasted this much longer than min_speech_ms. Streaming STT sends its first interim
    # some 250-500 ms into speech, later than min_speech_ms, so without this wait an
    # "mhm" would always interrupt before anyone knew it was one.
    transcript_wait_ms: int = 300
    # pause_then_decide: how long after the caller's speech ended the paused reply waits
    # for a transcript that makes it a real interruption before it resumes
    resume_wait_ms: int = 600


@dataclass(frozen=True, slots=True)
class IdleConfig:
    prompt: str = "Are you still there?"
    timeout_s: float = 8.0
    max_prompts: int = 2
    goodbye: str = "I haven't heard from you, so I'll end the call now. Goodbye."


@dataclass(frozen=True, slots=True)
class FallbackConfig:
    """What the call does when a provider is late or fails (see voice.conversation).

    An LLM that has not produced its first token ``first_token_timeout_s`` after a request
    is treated as failed: the caller hears ``apology`` (once per turn) and the request
    goes to the next LLM in the chain, or once more to the same one when there is no
    fallback. When every option of a stage has failed the call ends, after ``goodbye``
    where a TTS still works.
    """

    first_token_timeout_s: float = 4.0
    apology: str = "Sorry, one moment please."
    goodbye: str = (
        "I'm sorry, I'm having technical difficulties and have to end the call. "
        "Please call back later. Goodbye."
    )


class ToolKind(StrEnum):
    HTTP = "http"
    END_CALL = "end_call"
    TRANSFER_CALL = "transfer_call"
    COLLECT_DIGITS = "collect_digits"


@dataclass(frozen=True, slots=True)
class ToolConfig:
    name: str
    description: str
    kind: ToolKind
    # JSON schema of the arguments, as given to the LLM. Treat as read-only.
    parameters: dict[str, Any] = field(default_factory=dict)
    # http tools
    url: str = ""
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 10.0
    # transfer_call: default destination when the LLM does not name one
    transfer_to: str = ""
    # collect_digits
    max_digits: int = 16
    terminator: str = "#"
    digit_timeout_s: float = 10.0
    # collect_digits in secure mode: the digits go only to ``url`` (a signed POST through
    # the outbound guard); the LLM, transcript, logs and analysis get a placeholder with
    # the count, the destination's verdict and, if ``reveal_last_digits``, the last two.
    secure: bool = False
    reveal_last_digits: bool = False
    # say this when the tool has not answered within filler_after_s
    filler: str = ""
    filler_after_s: float = 1.0
    # the url is a tenant's: connect only to public addresses plus
    # CallConfig.allowed_networks (voice/netguard.py)
    tenant_url: bool = True


class SuccessEvaluation(StrEnum):
    PASS_FAIL = "pass_fail"
    SCORE = "score"


@dataclass(frozen=True, slots=True)
class AnalysisConfig:
    """Post-call analysis (run by the platform's worker after the call, not by the engine;
    kept here so its defaults, like every other agent setting's, are written once).

    Each part runs only when it is configured: a blank prompt, an empty schema or a blank
    rubric skips that part.
    """

    summary_prompt: str = ""
    # JSON Schema the structured data must satisfy ({} = none)
    structured_data_schema: dict[str, Any] = field(default_factory=dict)
    success_rubric: str = ""
    # the verdict against the rubric: pass/fail, or a score from 0 to score_max
    success_evaluation: SuccessEvaluation = SuccessEvaluation.PASS_FAIL
    score_max: int = 10
    # "" = the agent's own model when its LLM is OpenAI-compatible, else ANALYSIS_MODEL
    model: str = ""
    # attempts at structured data that does not satisfy the schema, before giving up
    max_attempts: int = 3


@dataclass(frozen=True, slots=True)
class CallConfig:
    call_id: str
    system_prompt: str
    stt: STTConfig
    llm: LLMConfig
    tts: TTSConfig
    first_message: str = ""
    first_message_interruptible: bool = True
    turn: TurnConfig = TurnConfig()
    interruption: InterruptionConfig = InterruptionConfig()
    idle: IdleConfig = IdleConfig()
    max_duration_s: float = 1800.0
    max_duration_message: str = "We've reached the time limit for this call. Goodbye."
    end_call_phrases: tuple[str, ...] = ()
    tools: tuple[ToolConfig, ...] = ()
    # tried in order after the primary fails to connect, errors or stalls
    stt_fallbacks: tuple[STTConfig, ...] = ()
    llm_fallbacks: tuple[LLMConfig, ...] = ()
    tts_fallbacks: tuple[TTSConfig, ...] = ()
    fallback: FallbackConfig = FallbackConfig()
    # signs HTTP tool requests (HMAC-SHA256 over timestamp + body)
    webhook_secret: str = ""
    carrier_format: AudioFormat = TWILIO_FORMAT
    # private networks (CIDRs) tenant-supplied URLs may reach anyway (OUTBOUND_ALLOWED_NETWORKS)
    allowed_networks: tuple[str, ...] = ()
    recording: RecordingMode = RecordingMode.OFF


# -- the platform's view of these dataclasses ----------------------------------------------
# Agents store their settings as JSON objects. These three functions are the only bridge,
# so the defaults above are written once: the API, the model columns and the call snapshot
# read them from here.

_Config = TypeVar("_Config")


def field_defaults(cls: type[Any]) -> dict[str, Any]:
    """Each field's default value (fields without one are left out)."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def to_plain(obj: Any) -> dict[str, Any]:
    """A flat config dataclass as JSON values (tuples become lists)."""
    return {
        f.name: list(v) if isinstance(v := getattr(obj, f.name), tuple) else v for f in fields(obj)
    }


def from_plain(cls: type[_Config], raw: Mapping[str, Any], **given: Any) -> _Config:
    """Build a flat config dataclass from stored JSON: unknown keys are ignored, missing
    ones take the default, lists become tuples where the field's default is a tuple."""
    defaults = field_defaults(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in given or f.name not in raw:
            continue
        value = raw[f.name]
        if isinstance(defaults.get(f.name), tuple) and isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return cls(**values, **given)
