from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from agents.models import Agent, Credential
from agents.serializers import e164
from calls.analytics import DEFAULT_PERIOD, PERIODS
from calls.models import (
    PHONE_CARRIERS,
    TIMELINE_STAGES,
    TURN_STAGES,
    AnalysisStatus,
    Call,
    CallControlAction,
    Carrier,
    DialingPolicy,
    PhoneNumber,
    ToolInvocation,
    TranscriptEntry,
    TurnMetric,
)
from glassbox.api.fields import E164_PATTERN, SafeJSONObjectField, TenantPrimaryKeyRelatedField
from glassbox.outbound import validate_outbound_url


# Input and output share a component name: the schema calls them PhoneNumberRequest / PhoneNumber.
@extend_schema_serializer(component_name="PhoneNumber")
class PhoneNumberInputSerializer(serializers.Serializer):
    number = serializers.RegexField(
        E164_PATTERN,
        max_length=16,
        help_text="E.164, e.g. +14155550123 (and a number that exists).",
        error_messages={"invalid": "Use E.164 format, e.g. +14155550123."},
    )
    name = serializers.CharField(max_length=100, allow_blank=True, default="")
    carrier = serializers.ChoiceField(PHONE_CARRIERS, default=Carrier.TWILIO)
    credential = TenantPrimaryKeyRelatedField(
        model=Credential, help_text="A twilio credential of your organization."
    )
    agent = TenantPrimaryKeyRelatedField(
        model=Agent, allow_null=True, default=None, help_text="The agent that answers calls."
    )
    lookup_url = serializers.URLField(
        max_length=2000,
        allow_blank=True,
        default="",
        validators=[validate_outbound_url],
        help_text="Asked for call variables before an inbound call is answered "
        "(signed with the agent's webhook secret); '' for none.",
    )

    def validate_number(self, value: str) -> str:
        return e164(value)


@extend_schema_serializer(component_name="PhoneNumber")
class PhoneNumberOutputSerializer(serializers.ModelSerializer):
    lookup_url = serializers.CharField(help_text="A URL, or '' when unset.")

    class Meta:
        model = PhoneNumber
        fields = (
            "id",
            "number",
            "name",
            "carrier",
            "credential",
            "agent",
            "lookup_url",
            "created",
            "updated",
        )
        read_only_fields = fields


class TranscriptEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = TranscriptEntry
        fields = ("role", "text", "turn_index", "start_ms", "end_ms", "interrupted")
        read_only_fields = fields


class FallbackEventSerializer(serializers.Serializer):
    """A provider replaced by the next in its chain (or retried, when it has none)."""

    stage = serializers.ChoiceField(("stt", "llm", "tts"))
    # "from" is a Python keyword: declared below
    to = serializers.CharField(help_text="e.g. 'openai (fallback 1)'")
    reason = serializers.CharField()
    at_ms = serializers.FloatField(help_text="ms since the call started")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = serializers.CharField(help_text="e.g. 'openai (primary)'")
        return fields


class TurnMetricSerializer(serializers.ModelSerializer):
    timeline = serializers.SerializerMethodField(
        help_text="Raw marks of the turn, in ms since the call started (null: did not happen)."
    )
    fallbacks = serializers.SerializerMethodField(
        help_text="Providers replaced during this turn (a late first token, an error)."
    )
    vad_hangover_ms = serializers.SerializerMethodField(
        help_text="The caller's last audible sound -> the VAD's end of speech (null: not "
        "measured on this turn)."
    )
    llm_first_clause_ms = serializers.SerializerMethodField(
        help_text="The LLM's first token -> its first speakable clause sent to the TTS."
    )
    preemptive_hidden_ms = serializers.SerializerMethodField(
        help_text="How much of the reply's preparation (LLM request -> the TTS's first "
        "audio) ran before the end of turn was confirmed (preemptive replies): it overlaps "
        "endpointing, so it is not in series with the caller's wait. 0 when the request "
        "followed the confirmation."
    )

    class Meta:
        model = TurnMetric
        fields = (
            "turn_index",
            "kind",
            "interrupted",
            *TURN_STAGES,
            *TIMELINE_STAGES,
            "timeline",
            "fallbacks",
        )
        read_only_fields = fields

    def get_timeline(self, obj: TurnMetric) -> dict[str, float | None]:
        derived = (*TURN_STAGES, *TIMELINE_STAGES)
        return {k: v for k, v in obj.timeline.items() if k.endswith("_ms") and k not in derived}

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_vad_hangover_ms(self, obj: TurnMetric) -> float | None:
        return obj.vad_hangover_ms

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_llm_first_clause_ms(self, obj: TurnMetric) -> float | None:
        return obj.llm_first_clause_ms

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_preemptive_hidden_ms(self, obj: TurnMetric) -> float | None:
        return obj.preemptive_hidden_ms

    @extend_schema_field(FallbackEventSerializer(many=True))
    def get_fallbacks(self, obj: TurnMetric) -> list[dict[str, Any]]:
        return list(obj.timeline.get("fallbacks") or [])


class ToolInvocationSerializer(serializers.ModelSerializer):
    class Meta:
        model = ToolInvocation
        fields = ("turn_index", "name", "arguments", "ok", "result", "duration_ms")
        read_only_fields = fields


_CALL_FIELDS = (
    "id",
    "agent",
    "phone_number",
    "direction",
    "status",
    "from_number",
    "to_number",
    "carrier",
    "carrier_call_sid",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_ms",
    "end_reason",
    "end_detail",
    "transferred_to",
    "stt_seconds",
    "llm_prompt_tokens",
    "llm_completion_tokens",
    "tts_characters",
    "analysis_prompt_tokens",
    "analysis_completion_tokens",
    "discarded_llm_requests",
    "discarded_llm_tokens",
    "fallback_count",
    "variables",
    "metadata",
    "answered_by",
    "amd_duration_ms",
    "voicemail_action",
)


class CallAnalysisSerializer(serializers.Serializer):
    """Post-call analysis (the agent's ``analysis`` settings), once the call is over."""

    status = serializers.ChoiceField(
        [s.value for s in AnalysisStatus],
        help_text="'' (the agent asks for none), pending, completed, or failed (see error).",
    )
    # the parts, from the call's stored analysis
    summary = serializers.CharField(allow_null=True, help_text="Null: not asked for, or failed.")
    structured_data = serializers.JSONField(
        allow_null=True, help_text="Valid against the agent's structured_data_schema, or null."
    )
    success = serializers.JSONField(
        allow_null=True,
        help_text="The verdict against the rubric: true/false, or an integer score.",
    )
    success_reason = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_blank=True, help_text="Which part failed, and why.")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    analyzed_at = serializers.DateTimeField(allow_null=True)

    def get_attribute(self, instance: Call) -> Call:
        return instance  # built from several of the call's columns

    def to_representation(self, instance: Call) -> dict[str, Any]:
        stored = instance.analysis or {}
        analyzed_at = instance.analyzed_at
        when = serializers.DateTimeField().to_representation(analyzed_at) if analyzed_at else None
        return {
            "status": instance.analysis_status,
            "summary": stored.get("summary"),
            "structured_data": stored.get("structured_data"),
            "success": stored.get("success"),
            "success_reason": stored.get("success_reason") or "",
            "error": instance.analysis_error,
            "prompt_tokens": instance.analysis_prompt_tokens,
            "completion_tokens": instance.analysis_completion_tokens,
            "analyzed_at": when,
        }


class CallOutputSerializer(serializers.ModelSerializer):
    fallback_count = serializers.SerializerMethodField(
        help_text="How many times a provider was replaced during the call (see fallbacks)."
    )

    class Meta:
        model = Call
        fields = _CALL_FIELDS
        read_only_fields = fields

    def get_fallback_count(self, obj: Call) -> int:
        return len(obj.fallbacks or [])


class CallControlActionSerializer(serializers.ModelSerializer):
    """A supervisor's action on the call (``POST /calls/{id}/control/``), on its timeline."""

    class Meta:
        model = CallControlAction
        fields = ("id", "action", "params", "actor", "at", "at_ms", "delivered", "detail")
        read_only_fields = fields


class CallDetailSerializer(CallOutputSerializer):
    fallbacks = FallbackEventSerializer(many=True, read_only=True)
    transcript = TranscriptEntrySerializer(many=True, read_only=True)
    metrics = TurnMetricSerializer(source="turns", many=True, read_only=True)
    tool_calls = ToolInvocationSerializer(source="tool_invocations", many=True, read_only=True)
    control_actions = CallControlActionSerializer(many=True, read_only=True)
    analysis = CallAnalysisSerializer(read_only=True)
    transcript_purged_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="Set: the organization's transcript retention deleted the transcript and "
        "tool calls.",
    )

    class Meta:
        model = Call
        fields = (
            *_CALL_FIELDS,
            "fallbacks",
            "agent_snapshot",
            "transcript",
            "metrics",
            "tool_calls",
            "control_actions",
            "analysis",
            "transcript_purged_at",
        )
        read_only_fields = fields


class CallCreateSerializer(serializers.Serializer):
    """An outbound call. ``variables`` fill the agent's ``{{name}}`` placeholders."""

    agent = TenantPrimaryKeyRelatedField(model=Agent, help_text="The agent that talks.")
    from_number = TenantPrimaryKeyRelatedField(
        model=PhoneNumber, help_text="One of your phone numbers (its id): the caller ID."
    )
    to = serializers.CharField(max_length=32, help_text="E.164, e.g. +14155550123.")
    variables = SafeJSONObjectField(
        default=dict,
        help_text="Values for the agent's {{name}} placeholders: strings, numbers, booleans.",
    )
    metadata = SafeJSONObjectField(default=dict, help_text="Your own data, returned as given.")
    max_duration_s = serializers.FloatField(
        min_value=10.0,
        max_value=4 * 3600.0,
        required=False,
        allow_null=True,
        default=None,
        help_text="Overrides the agent's maximum duration for this call.",
    )


class DialingPolicySerializer(serializers.ModelSerializer):
    allowed_countries = serializers.ListField(
        child=serializers.RegexField(r"^[A-Z]{2}$", max_length=2),
        max_length=300,
        required=False,
        help_text="ISO 3166 codes (US, GB); empty: every country not denied.",
    )
    denied_countries = serializers.ListField(
        child=serializers.RegexField(r"^[A-Z]{2}$", max_length=2),
        max_length=300,
        required=False,
        help_text="ISO 3166 codes never called.",
    )

    class Meta:
        model = DialingPolicy
        fields = ("allowed_countries", "denied_countries", "allow_premium", "updated")
        read_only_fields = ("updated",)


# -- analytics -------------------------------------------------------------------------


class AnalyticsQuerySerializer(serializers.Serializer):
    """Query parameters shared by the analytics endpoints."""

    agent = TenantPrimaryKeyRelatedField(
        model=Agent,
        required=False,
        allow_null=False,  # leave it out for every agent; an empty ?agent= is a 400
        default=None,
        help_text="Only calls answered by this agent of your organization.",
    )
    period = serializers.ChoiceField(
        choices=list(PERIODS),
        default=DEFAULT_PERIOD,
        help_text="The window ending now: the last 24 hours, or 7, 30 or 90 days.",
    )


class StageStatsSerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True, help_text="Median, in milliseconds.")
    p95 = serializers.FloatField(allow_null=True, help_text="95th percentile, in milliseconds.")
    count = serializers.IntegerField(help_text="Turns that measured this stage.")


class StagesSerializer(serializers.Serializer):
    endpointing_ms = StageStatsSerializer()
    stt_lag_ms = StageStatsSerializer()
    llm_ttft_ms = StageStatsSerializer()
    tts_ttfb_ms = StageStatsSerializer()
    platform_overhead_ms = StageStatsSerializer()
    voice_to_voice_ms = StageStatsSerializer()


class _WindowSerializer(serializers.Serializer):
    period = serializers.CharField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    agent = serializers.IntegerField(allow_null=True)


class LatencyDaySerializer(serializers.Serializer):
    date = serializers.DateField(source="day")
    turns = serializers.IntegerField()
    voice_to_voice_ms = StageStatsSerializer(source="voice_to_voice")


class LatencyAnalyticsSerializer(_WindowSerializer):
    turns = serializers.IntegerField(help_text="Assistant turns in calls started in the window.")
    stages = StagesSerializer(
        help_text="Continuous percentiles (PostgreSQL's percentile_cont) of each stage."
    )
    by_day = LatencyDaySerializer(many=True)


class ReasonCountSerializer(serializers.Serializer):
    reason = serializers.CharField()
    count = serializers.IntegerField()


class CallsDaySerializer(serializers.Serializer):
    date = serializers.DateField(source="day")
    calls = serializers.IntegerField()
    minutes = serializers.FloatField()


class CallsAnalyticsSerializer(_WindowSerializer):
    calls = serializers.IntegerField(help_text="Calls started in the window.")
    minutes = serializers.FloatField(help_text="Their total duration (finalized calls).")
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    turns = serializers.IntegerField()
    interruptions = serializers.IntegerField(help_text="Assistant turns the caller barged in on.")
    interruptions_per_call = serializers.FloatField(allow_null=True)
    end_reasons = ReasonCountSerializer(many=True)
    by_day = CallsDaySerializer(many=True)


class AgentLatencySerializer(serializers.Serializer):
    agent = serializers.IntegerField(
        source="agent_id", allow_null=True, help_text="Null: the agent was deleted."
    )
    agent_name = serializers.CharField()
    turns = serializers.IntegerField()
    voice_to_voice_ms = StageStatsSerializer(source="voice_to_voice")


class AgentsAnalyticsSerializer(_WindowSerializer):
    results = AgentLatencySerializer(many=True)


# -- web calls and control (docs/web-calls.md) ------------------------------------------


class WebCallTicketSerializer(serializers.Serializer):
    """A started web call: open ``ws_url`` within ``expires_in_s`` (once)."""

    call = serializers.IntegerField(source="call.pk")
    token = serializers.CharField()
    ws_url = serializers.CharField()
    ws_path = serializers.CharField()
    expires_in_s = serializers.FloatField()
    sample_rate = serializers.IntegerField(help_text="send PCM16 at this rate (start.mediaFormat)")


class CallControlInputSerializer(serializers.Serializer):
    action = serializers.ChoiceField(
        ["say", "inject", "mute_agent", "unmute_agent", "transfer", "end"]
    )
    text = serializers.CharField(required=False, max_length=1000)
    to = serializers.CharField(required=False, max_length=200)
    detail = serializers.CharField(required=False, max_length=1000, allow_blank=True)


RECORDING_STATUSES = ("ready", "none")


class RecordingSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=RECORDING_STATUSES,
        help_text="'none': the agent records nothing, the call is still running, or the "
        "recording was deleted.",
    )
    url = serializers.URLField(
        allow_null=True,
        help_text="A short-lived link to the audio (S3: presigned; local storage: a signed "
        "token). Fetch a new one once it expires.",
    )
    expires_at = serializers.DateTimeField(allow_null=True)
    content_type = serializers.CharField(allow_null=True, help_text="audio/mpeg")
    channels = serializers.IntegerField(
        allow_null=True, help_text="2: caller left, agent right; 1: both mixed."
    )
    duration_ms = serializers.IntegerField(allow_null=True)
    size_bytes = serializers.IntegerField(allow_null=True)
