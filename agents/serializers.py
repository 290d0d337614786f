"""Input and output serializers for agents, tools and credentials.

Defaults come from voice.config so an Agent maps onto the engine's CallConfig one to one.
"""

from __future__ import annotations

import re
from typing import Any

import phonenumbers
from drf_spectacular.utils import extend_schema_serializer
from jsonschema import SchemaError
from jsonschema.validators import validator_for
from rest_framework import serializers

from agents.models import (
    Agent,
    Credential,
    CredentialProvider,
    Recording,
    Tool,
    ToolKind,
    default_fallback,
)
from glassbox.api.fields import SafeJSONObjectField, TenantPrimaryKeyRelatedField
from glassbox.outbound import validate_outbound_url
from voice.config import (
    AnalysisConfig,
    BargeInMode,
    CallConfig,
    EndOfTurn,
    FallbackConfig,
    IdleConfig,
    InterruptionConfig,
    LLMConfig,
    STTConfig,
    SuccessEvaluation,
    ToolConfig,
    TTSConfig,
    TurnConfig,
    VadKind,
    field_defaults,
)
from voice.providers import registry

# Provider choices and every default below come from the engine (voice.config and the
# provider registry): one copy, which the model columns and the call snapshot read too.
STT_PROVIDERS = registry.choices(registry.Kind.STT)
LLM_PROVIDERS = registry.choices(registry.Kind.LLM)
TTS_PROVIDERS = registry.choices(registry.Kind.TTS)
_CALL = field_defaults(CallConfig)
_STT = field_defaults(STTConfig)
_LLM = field_defaults(LLMConfig)
_TTS = field_defaults(TTSConfig)
_TURN = field_defaults(TurnConfig)
_INTERRUPTION = field_defaults(InterruptionConfig)
_IDLE = field_defaults(IdleConfig)
_TOOL = field_defaults(ToolConfig)
_FALLBACK = field_defaults(FallbackConfig)
_ANALYSIS = field_defaults(AnalysisConfig)
MAX_FALLBACKS = 3  # per stage


def validate_json_schema(value: dict[str, Any]) -> None:
    """A JSON Schema document, checked against its own meta-schema (2020-12 by default)."""
    if not value:
        return
    try:
        validator_for(value, default=validator_for({})).check_schema(value)
    except SchemaError as exc:
        path = "/".join(str(p) for p in exc.path)
        where = f" at '{path}'" if path else ""
        raise serializers.ValidationError(f"Not a valid JSON Schema{where}: {exc.message}") from exc
    except (RecursionError, TypeError, ValueError) as exc:
        raise serializers.ValidationError("Not a valid JSON Schema.") from exc


def e164(value: str) -> str:
    if not value.startswith("+"):
        raise serializers.ValidationError("Use E.164 format, e.g. +14155550123.")
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise serializers.ValidationError("Not a phone number.") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise serializers.ValidationError("Not a valid phone number.")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


# --- nested agent settings ---------------------------------------------------------------


class STTSerializer(serializers.Serializer):
    provider = serializers.ChoiceField(STT_PROVIDERS)
    model = serializers.CharField(max_length=100, allow_blank=True, default=_STT["model"])
    language = serializers.CharField(max_length=35, default=_STT["language"])


class LLMSerializer(serializers.Serializer):
    provider = serializers.ChoiceField(LLM_PROVIDERS)
    model = serializers.CharField(max_length=100, allow_blank=True, default=_LLM["model"])
    temperature = serializers.FloatField(min_value=0.0, max_value=2.0, default=_LLM["temperature"])
    max_tokens = serializers.IntegerField(min_value=1, max_value=32768, default=_LLM["max_tokens"])


class TTSSerializer(serializers.Serializer):
    provider = serializers.ChoiceField(TTS_PROVIDERS)
    voice = serializers.CharField(max_length=100, allow_blank=True, default=_TTS["voice"])
    model = serializers.CharField(max_length=100, allow_blank=True, default=_TTS["model"])
    speed = serializers.FloatField(min_value=0.25, max_value=4.0, default=_TTS["speed"])
    language = serializers.CharField(max_length=35, default=_TTS["language"])


class TurnSerializer(serializers.Serializer):
    min_wait_ms = serializers.IntegerField(
        min_value=0, max_value=10_000, default=_TURN["min_wait_ms"]
    )
    max_wait_ms = serializers.IntegerField(
        min_value=0, max_value=30_000, default=_TURN["max_wait_ms"]
    )
    preemptive = serializers.BooleanField(
        default=_TURN["preemptive"],
        help_text=(
            "Prepare the reply (language model and speech, audio held) as soon as the caller "
            "goes quiet; it plays only once the turn is confirmed, and is discarded if the "
            "caller goes on. Discarded requests still count in usage."
        ),
    )
    preemptive_after_ms = serializers.IntegerField(
        min_value=0, max_value=2_000, default=_TURN["preemptive_after_ms"]
    )
    end_of_turn = serializers.ChoiceField(
        [str(m) for m in EndOfTurn],
        default=str(_TURN["end_of_turn"]),
        help_text=(
            "rules: the caller's turn ends on silence, the speech-to-text provider's end of "
            "utterance and transcript cues (a trailing 'and', 'um', a digit string). "
            "smart_turn: the same rules, plus an audio model (Smart Turn v3) asked each time "
            "the caller goes quiet; when it hears an unfinished sentence the agent waits "
            "max_wait_ms. Costs ~30 ms of server CPU per pause."
        ),
    )
    vad = serializers.ChoiceField(
        [str(m) for m in VadKind],
        default=str(_TURN["vad"]),
        help_text=(
            "Voice activity detection on the caller's audio: webrtc (lightest) or silero "
            "(a neural model, ~2 ms of CPU per second of audio)."
        ),
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Under PATCH only some keys arrive; the merged object is validated again in full.
        low, high = attrs.get("min_wait_ms"), attrs.get("max_wait_ms")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError(
                {"max_wait_ms": "Must be greater than or equal to min_wait_ms."}
            )
        return attrs


class InterruptionSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(default=_INTERRUPTION["enabled"])
    mode = serializers.ChoiceField(
        [str(m) for m in BargeInMode],
        default=str(_INTERRUPTION["mode"]),
        help_text=(
            "pause_then_decide: the agent's audio stops as the caller starts speaking and "
            "plays on from where it stopped if it was only an acknowledgement, a cough or "
            "noise. immediate: any speech of min_speech_ms cuts the agent off. words: the "
            "agent is cut off once the transcript shows words that are not acknowledgements."
        ),
    )
    min_speech_ms = serializers.IntegerField(
        min_value=0, max_value=5_000, default=_INTERRUPTION["min_speech_ms"]
    )
    min_words = serializers.IntegerField(
        min_value=0, max_value=50, default=_INTERRUPTION["min_words"]
    )
    transcript_wait_ms = serializers.IntegerField(
        min_value=0,
        max_value=5_000,
        default=_INTERRUPTION["transcript_wait_ms"],
        help_text=(
            "Speech not yet transcribed interrupts only after min_speech_ms plus this long, "
            "so a backchannel ('mhm') whose transcript arrives late does not cut the agent off."
        ),
    )
    resume_wait_ms = serializers.IntegerField(
        min_value=0,
        max_value=5_000,
        default=_INTERRUPTION["resume_wait_ms"],
        help_text="pause_then_decide: how long after the caller stops a paused reply waits "
        "for words before it plays on.",
    )
    acknowledgements = serializers.ListField(
        child=serializers.CharField(max_length=50),
        max_length=50,
        default=list(_INTERRUPTION["acknowledgements"]),
        help_text="Short phrases that never interrupt the agent (backchannels).",
    )


class IdleSerializer(serializers.Serializer):
    prompt = serializers.CharField(max_length=1000, allow_blank=True, default=_IDLE["prompt"])
    timeout_s = serializers.FloatField(min_value=1.0, max_value=600.0, default=_IDLE["timeout_s"])
    max_prompts = serializers.IntegerField(min_value=0, max_value=10, default=_IDLE["max_prompts"])
    goodbye = serializers.CharField(max_length=1000, allow_blank=True, default=_IDLE["goodbye"])


class VoicemailSerializer(serializers.Serializer):
    """Outbound calls: answering-machine detection (Twilio's asynchronous AMD) and what to
    do when a machine answers."""

    detect = serializers.BooleanField(
        default=False, help_text="Ask the carrier to detect answering machines."
    )
    action = serializers.ChoiceField(
        ("hangup", "leave_message"),
        default="hangup",
        help_text="hangup: end the call at once; leave_message: wait for the beep, say "
        "the message, hang up.",
    )
    message = serializers.CharField(
        max_length=1000,
        allow_blank=True,
        default="",
        help_text="The line left on the machine; may use {{variables}}.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("action") == "leave_message" and not attrs.get("message", "").strip():
            raise serializers.ValidationError({"message": "Needed to leave a message."})
        return attrs


class AnalysisSerializer(serializers.Serializer):
    """Post-call analysis (voice.config.AnalysisConfig); each blank part is skipped."""

    summary_prompt = serializers.CharField(
        max_length=5000,
        allow_blank=True,
        default=_ANALYSIS["summary_prompt"],
        help_text="How to sum up the call; '' for no summary.",
    )
    structured_data_schema = SafeJSONObjectField(
        default=dict,
        validators=[validate_json_schema],
        help_text="JSON Schema of the data to extract from each call; {} to disable.",
    )
    success_rubric = serializers.CharField(
        max_length=5000,
        allow_blank=True,
        default=_ANALYSIS["success_rubric"],
        help_text="What a successful call is; '' for no verdict.",
    )
    success_evaluation = serializers.ChoiceField(
        [e.value for e in SuccessEvaluation],
        default=_ANALYSIS["success_evaluation"].value,
        help_text="pass_fail (success is true or false) or score (0 to score_max).",
    )
    score_max = serializers.IntegerField(min_value=1, max_value=100, default=_ANALYSIS["score_max"])
    model = serializers.CharField(
        max_length=100,
        allow_blank=True,
        default=_ANALYSIS["model"],
        help_text="'' = the agent's own model when its LLM is openai, else the platform's.",
    )
    max_attempts = serializers.IntegerField(
        min_value=1,
        max_value=5,
        default=_ANALYSIS["max_attempts"],
        help_text="Tries at structured data that satisfies the schema before it is failed.",
    )


def _with_credential(base: type[serializers.Serializer], *, output: bool) -> type:
    """A provider's settings plus the credential it uses (an id of this organization)."""
    credential: serializers.Field
    if output:
        credential = serializers.IntegerField(allow_null=True)
    else:
        credential = TenantPrimaryKeyRelatedField(
            model=Credential, allow_null=True, required=False, default=None
        )
    name = base.__name__.removesuffix("Serializer") + ("FallbackOut" if output else "Fallback")
    return type(f"{name}Serializer", (base,), {"credential": credential})


class FallbackSerializer(serializers.Serializer):
    """What a call does when a provider is late or fails (voice.config.FallbackConfig),
    and the providers each stage falls back to, in order."""

    first_token_timeout_s = serializers.FloatField(
        min_value=0.5,
        max_value=30.0,
        default=_FALLBACK["first_token_timeout_s"],
        help_text="An LLM silent this long after a request counts as failed.",
    )
    apology = serializers.CharField(
        max_length=500,
        allow_blank=True,
        default=_FALLBACK["apology"],
        help_text="Said when a provider is late or replaced; '' for none.",
    )
    goodbye = serializers.CharField(
        max_length=1000,
        allow_blank=True,
        default=_FALLBACK["goodbye"],
        help_text="Said before the call ends because every option of a stage failed.",
    )
    stt = serializers.ListField(
        child=_with_credential(STTSerializer, output=False)(),
        max_length=MAX_FALLBACKS,
        default=list,
    )
    llm = serializers.ListField(
        child=_with_credential(LLMSerializer, output=False)(),
        max_length=MAX_FALLBACKS,
        default=list,
    )
    tts = serializers.ListField(
        child=_with_credential(TTSSerializer, output=False)(),
        max_length=MAX_FALLBACKS,
        default=list,
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        for stage in registry.Kind:
            if stage not in attrs:  # a PATCH that leaves this chain as it is
                continue
            entries = []
            for n, entry in enumerate(attrs[stage]):
                if "provider" not in entry:  # a PATCH validates its parts partially
                    errors[stage] = f"Fallback {n + 1}: provider: This field is required."
                    continue
                credential = entry.get("credential")
                wanted = registry.spec(stage, entry["provider"]).credential
                if credential is not None and credential.provider != wanted:
                    what = f"a {wanted} credential" if wanted else "no credential"
                    errors[stage] = (
                        f"Fallback {n + 1}: the {entry['provider']} provider takes {what}."
                    )
                entries.append({**entry, "credential": credential.pk if credential else None})
            attrs[stage] = entries
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class FallbackOutputSerializer(serializers.Serializer):
    first_token_timeout_s = serializers.FloatField()
    apology = serializers.CharField()
    goodbye = serializers.CharField()
    stt = serializers.ListField(child=_with_credential(STTSerializer, output=True)())
    llm = serializers.ListField(child=_with_credential(LLMSerializer, output=True)())
    tts = serializers.ListField(child=_with_credential(TTSSerializer, output=True)())


NESTED = {
    "stt": STTSerializer,
    "llm": LLMSerializer,
    "tts": TTSSerializer,
    "turn": TurnSerializer,
    "interruption": InterruptionSerializer,
    "idle": IdleSerializer,
    "analysis": AnalysisSerializer,
    "voicemail": VoicemailSerializer,
}


def _full(name: str, data: dict[str, Any]) -> dict[str, Any]:
    serializer = NESTED[name](data=data)
    if not serializer.is_valid():
        raise serializers.ValidationError({name: serializer.errors})
    return dict(serializer.validated_data)


# --- agents ------------------------------------------------------------------------------


# Input and output share a component name: the schema calls them AgentRequest / Agent.
@extend_schema_serializer(component_name="Agent")
class AgentInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    system_prompt = serializers.CharField(max_length=50_000, allow_blank=True, default="")
    first_message = serializers.CharField(max_length=2000, allow_blank=True, default="")
    first_message_interruptible = serializers.BooleanField(
        default=_CALL["first_message_interruptible"]
    )
    stt = STTSerializer()
    llm = LLMSerializer()
    tts = TTSSerializer()
    stt_credential = TenantPrimaryKeyRelatedField(model=Credential, allow_null=True, required=False)
    llm_credential = TenantPrimaryKeyRelatedField(model=Credential, allow_null=True, required=False)
    tts_credential = TenantPrimaryKeyRelatedField(model=Credential, allow_null=True, required=False)
    turn = TurnSerializer(required=False)
    interruption = InterruptionSerializer(required=False)
    idle = IdleSerializer(required=False)
    max_duration_s = serializers.FloatField(
        min_value=10.0, max_value=4 * 3600.0, default=_CALL["max_duration_s"]
    )
    max_duration_message = serializers.CharField(
        max_length=1000, allow_blank=True, default=_CALL["max_duration_message"]
    )
    end_call_phrases = serializers.ListField(
        child=serializers.CharField(max_length=200), max_length=50, default=list
    )
    tools = TenantPrimaryKeyRelatedField(model=Tool, many=True, required=False)
    webhook_url = serializers.URLField(
        max_length=2000, allow_blank=True, default="", validators=[validate_outbound_url]
    )
    webhook_secret = serializers.CharField(
        max_length=500,
        allow_blank=True,
        required=False,
        write_only=True,
        help_text="Signs event webhooks (HMAC-SHA256). Write-only; '' removes it.",
    )
    analysis = AnalysisSerializer(required=False)
    fallback = FallbackSerializer(required=False)
    voicemail = VoicemailSerializer(required=False)
    recording = serializers.ChoiceField(
        choices=Recording.choices,
        default=_CALL["recording"].value,
        help_text="What calls record: off, mono (one mixed channel) or dual "
        "(caller left, agent right).",
    )

    def validate_tools(self, value: list[Tool]) -> list[Tool]:
        if len(value) > 64:
            raise serializers.ValidationError("At most 64 tools per agent.")
        return list(dict.fromkeys(value))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Nested settings are stored whole. A PATCH of {"llm": {"temperature": 0.2}} merges
        # into the stored object and the result is validated as a whole (e.g. min <= max).
        instance: Agent | None = self.instance
        for name in NESTED:
            stored = getattr(instance, name) if instance is not None else {}
            if name in attrs or instance is None:
                attrs[name] = _full(name, {**stored, **attrs.get(name, {})})
        if "fallback" in attrs:  # a PATCH replaces the keys it names...
            stored = instance.fallback if instance is not None else default_fallback()
            merged = {**default_fallback(), **stored, **attrs["fallback"]}
            # ... and the result is validated whole, defaults and all, as on create
            full = FallbackSerializer(data=merged, context=self.context)
            if not full.is_valid():
                raise serializers.ValidationError({"fallback": full.errors})
            attrs["fallback"] = dict(full.validated_data)
        return attrs


@extend_schema_serializer(component_name="Agent")
class AgentOutputSerializer(serializers.ModelSerializer):
    stt = STTSerializer()
    llm = LLMSerializer()
    tts = TTSSerializer()
    turn = TurnSerializer()
    interruption = InterruptionSerializer()
    idle = IdleSerializer()
    analysis = AnalysisSerializer()
    fallback = FallbackOutputSerializer()
    voicemail = VoicemailSerializer()
    # many_init is what many=True calls; spelled out, the stubs see the ManyRelatedField.
    tools = serializers.PrimaryKeyRelatedField.many_init(read_only=True)
    end_call_phrases = serializers.ListField(child=serializers.CharField())
    has_webhook_secret = serializers.BooleanField(read_only=True)
    webhook_url = serializers.CharField(help_text="A URL, or '' when unset.")

    class Meta:
        model = Agent
        fields = (
            "id",
            "name",
            "system_prompt",
            "first_message",
            "first_message_interruptible",
            "stt",
            "llm",
            "tts",
            "stt_credential",
            "llm_credential",
            "tts_credential",
            "turn",
            "interruption",
            "idle",
            "max_duration_s",
            "max_duration_message",
            "end_call_phrases",
            "tools",
            "webhook_url",
            "has_webhook_secret",
            "analysis",
            "fallback",
            "voicemail",
            "recording",
            "created",
            "updated",
        )
        read_only_fields = fields


# --- tools -------------------------------------------------------------------------------

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


# Input and output share a component name: the schema calls them ToolRequest / Tool.
@extend_schema_serializer(component_name="Tool")
class ToolInputSerializer(serializers.Serializer):
    name = serializers.RegexField(
        TOOL_NAME,
        max_length=64,
        help_text="The function name the LLM sees: letters, digits, '_' and '-'.",
        error_messages={"invalid": "Use 1-64 letters, digits, '_' or '-'."},
    )
    description = serializers.CharField(max_length=2000, allow_blank=True, default="")
    kind = serializers.ChoiceField(
        ToolKind.choices, help_text="An http tool needs a url; the other kinds ignore it."
    )
    parameters = SafeJSONObjectField(
        default=dict,
        validators=[validate_json_schema],
        help_text="JSON Schema (type object) of the arguments the LLM supplies.",
    )
    url = serializers.URLField(
        max_length=2000,
        allow_blank=True,
        default="",
        validators=[validate_outbound_url],
        help_text="Required when kind is http: an http(s) URL on a public address.",
    )
    method = serializers.ChoiceField(HTTP_METHODS, default=_TOOL["method"])
    headers = serializers.DictField(
        child=serializers.CharField(max_length=2000, allow_blank=True),
        default=dict,
        write_only=True,
        help_text=(
            "Sent with every call of an http tool (e.g. Authorization). Write-only: stored "
            "encrypted; responses list only the names (header_names)."
        ),
    )
    timeout_s = serializers.FloatField(min_value=0.5, max_value=60.0, default=_TOOL["timeout_s"])
    transfer_to = serializers.RegexField(
        r"^(\+[1-9][0-9]{1,14})?$",
        max_length=16,
        allow_blank=True,
        default="",
        help_text="transfer_call: the default destination, E.164 (e.g. +14155550123).",
        error_messages={"invalid": "Use E.164 format, e.g. +14155550123."},
    )
    max_digits = serializers.IntegerField(min_value=1, max_value=64, default=_TOOL["max_digits"])
    terminator = serializers.ChoiceField(("#", "*", ""), default=_TOOL["terminator"])
    digit_timeout_s = serializers.FloatField(
        min_value=1.0, max_value=60.0, default=_TOOL["digit_timeout_s"]
    )
    secure = serializers.BooleanField(
        default=_TOOL["secure"],
        help_text=(
            "collect_digits: the digits go only to url (a signed POST), never to the language "
            "model, the transcript, the logs or the analysis, which see a placeholder."
        ),
    )
    reveal_last_digits = serializers.BooleanField(
        default=_TOOL["reveal_last_digits"],
        help_text="Secure collect_digits: the placeholder may tell the last two digits.",
    )
    filler = serializers.CharField(max_length=500, allow_blank=True, default="")
    filler_after_s = serializers.FloatField(
        min_value=0.0, max_value=30.0, default=_TOOL["filler_after_s"]
    )

    def validate_parameters(self, value: dict[str, Any]) -> dict[str, Any]:
        if value and value.get("type") != "object":
            raise serializers.ValidationError(
                'Tool parameters must be a schema of "type": "object".'
            )
        return value

    def validate_headers(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 50:
            raise serializers.ValidationError("At most 50 headers.")
        for name in value:
            if not HEADER_NAME.match(name):
                raise serializers.ValidationError(f"Invalid header name: {name!r}.")
        for text in value.values():
            if "\r" in text or "\n" in text:
                raise serializers.ValidationError("Header values cannot contain line breaks.")
        return value

    def validate_transfer_to(self, value: str) -> str:
        return e164(value) if value else value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        tool: Tool | None = self.instance
        merged = {**(_tool_fields(tool) if tool is not None else {}), **attrs}
        kind = merged.get("kind")
        secure = kind == ToolKind.COLLECT_DIGITS and merged.get("secure")
        if kind == ToolKind.HTTP or secure:
            what = "An http tool" if kind == ToolKind.HTTP else "Secure digit collection"
            if not merged.get("url"):
                raise serializers.ValidationError(
                    {"url": f"{what} needs a url (where the request goes)."}
                )
            if not merged["url"].lower().startswith(("http://", "https://")):
                raise serializers.ValidationError({"url": "Use an http(s) URL."})
        return attrs


def _tool_fields(tool: Tool) -> dict[str, Any]:
    return {"kind": tool.kind, "url": tool.url, "secure": tool.secure}


@extend_schema_serializer(component_name="Tool")
class ToolOutputSerializer(serializers.ModelSerializer):
    parameters = serializers.JSONField()
    header_names = serializers.SerializerMethodField(
        help_text="Names of the headers set on this tool; their values are never returned."
    )
    url = serializers.CharField(help_text="A URL (http tools), or ''.")

    class Meta:
        model = Tool
        fields = (
            "id",
            "name",
            "description",
            "kind",
            "parameters",
            "url",
            "method",
            "header_names",
            "timeout_s",
            "transfer_to",
            "max_digits",
            "terminator",
            "digit_timeout_s",
            "secure",
            "reveal_last_digits",
            "filler",
            "filler_after_s",
            "created",
            "updated",
        )
        read_only_fields = fields

    def get_header_names(self, obj: Tool) -> list[str]:
        return sorted(obj.headers)


# --- credentials -------------------------------------------------------------------------

TWILIO_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")


# Input and output share a component name: the schema calls them CredentialRequest / Credential.
@extend_schema_serializer(component_name="Credential")
class CredentialInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    provider = serializers.ChoiceField(CredentialProvider.choices)
    api_key = serializers.CharField(
        max_length=2000,
        write_only=True,
        required=False,
        trim_whitespace=True,
        help_text="Required for deepgram, openai and cartesia; not taken for twilio.",
    )
    account_sid = serializers.CharField(
        max_length=64,
        write_only=True,
        required=False,
        help_text="twilio only, required there: 'AC' followed by 32 hex digits.",
    )
    auth_token = serializers.CharField(
        max_length=200,
        write_only=True,
        required=False,
        help_text="twilio only, required there.",
    )
    base_url = serializers.URLField(
        max_length=500,
        allow_blank=True,
        required=False,
        validators=[validate_outbound_url],
        help_text="OpenAI only: an OpenAI-compatible server (Ollama, vLLM, Groq, ...).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        credential: Credential | None = self.instance
        if (
            credential is not None
            and attrs.get("provider", credential.provider) != credential.provider
        ):
            raise serializers.ValidationError(
                {"provider": "The provider of a credential cannot change; create a new one."}
            )
        provider = credential.provider if credential is not None else attrs["provider"]

        def current(field: str) -> str:
            if field in attrs:
                return str(attrs[field])
            return str(getattr(credential, field)) if credential is not None else ""

        errors: dict[str, str] = {}
        if provider == CredentialProvider.TWILIO:
            if not TWILIO_SID.match(current("account_sid")):
                errors["account_sid"] = "A Twilio Account SID: 'AC' followed by 32 hex digits."
            if not current("auth_token"):
                errors["auth_token"] = "Required for twilio."
            if current("api_key"):
                errors["api_key"] = "Twilio credentials use account_sid and auth_token."
        else:
            if not current("api_key"):
                errors["api_key"] = f"Required for {provider}."
            for field in ("account_sid", "auth_token"):
                if current(field):
                    errors[field] = "Only for twilio."
        if current("base_url") and provider != CredentialProvider.OPENAI:
            errors["base_url"] = "Only OpenAI-compatible credentials take a base_url."
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


@extend_schema_serializer(component_name="Credential")
class CredentialOutputSerializer(serializers.ModelSerializer):
    base_url = serializers.CharField(help_text="A URL (OpenAI-compatible servers), or ''.")
    hint = serializers.CharField(
        read_only=True, help_text="Last 4 characters of the secret, to tell keys apart."
    )

    class Meta:
        model = Credential
        fields = ("id", "name", "provider", "base_url", "hint", "created", "updated")
        read_only_fields = fields
