from __future__ import annotations

from django.db import models

from tenants.scoping import TenantModel


class Carrier(models.TextChoices):
    TWILIO = "twilio"
    WEB = "web"  # a browser, over the web-call protocol (docs/web-calls.md)


# Carriers that own phone numbers (a browser has none).
PHONE_CARRIERS = [(Carrier.TWILIO.value, Carrier.TWILIO.label)]


class PhoneNumber(TenantModel):
    # E.164, unique across the platform: an inbound call must map to exactly one tenant.
    number = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=100, blank=True)
    carrier = models.CharField(max_length=16, choices=PHONE_CARRIERS, default=Carrier.TWILIO)
    credential = models.ForeignKey(
        "agents.Credential", on_delete=models.RESTRICT, related_name="phone_numbers"
    )
    agent = models.ForeignKey(
        "agents.Agent",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="phone_numbers",
    )
    # Asked for variables (and agent overrides) before an inbound call is answered
    # (calls/lookup.py); signed with the agent's webhook secret. "" for none.
    lookup_url = models.URLField(max_length=2000, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created", "-id")

    def __str__(self) -> str:
        return self.number


class Direction(models.TextChoices):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    WEB = "web"  # from a browser: the dashboard's "Talk to this agent" or the widget


class CallStatus(models.TextChoices):
    # Twilio's call statuses; a call only moves forward through them.
    QUEUED = "queued"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"


TERMINAL_STATUSES = frozenset(
    {
        CallStatus.COMPLETED,
        CallStatus.BUSY,
        CallStatus.FAILED,
        CallStatus.NO_ANSWER,
        CallStatus.CANCELED,
    }
)


class AnalysisStatus(models.TextChoices):
    NONE = "", "Not configured"
    PENDING = "pending"
    COMPLETED = "completed"
    # some part failed for good (analysis_error says which and why); the rest is kept
    FAILED = "failed"


class Call(TenantModel):
    """One phone call, from the carrier's webhook to finalization.

    ``agent_snapshot`` freezes the agent's configuration (no secrets) when the call
    arrives, so editing an agent mid-call changes nothing for that call and the call's
    record says exactly what it ran with.
    """

    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    phone_number = models.ForeignKey(
        PhoneNumber, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    direction = models.CharField(max_length=8, choices=Direction.choices)
    from_number = models.CharField(max_length=32)
    to_number = models.CharField(max_length=32)
    carrier = models.CharField(max_length=16, choices=Carrier.choices, default=Carrier.TWILIO)
    carrier_call_sid = models.CharField(max_length=64)
    carrier_stream_sid = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=CallStatus.choices)
    end_reason = models.CharField(max_length=32, blank=True)
    end_detail = models.TextField(blank=True)
    transferred_to = models.CharField(max_length=32, blank=True)
    agent_snapshot = models.JSONField(default=dict)
    # The media-stream token is single-use: the nonce it carries must match and the
    # stream is accepted only while ``stream_connected_at`` is still empty.
    stream_nonce = models.CharField(max_length=32)
    stream_connected_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    carrier_duration_s = models.PositiveIntegerField(null=True, blank=True)
    stt_seconds = models.FloatField(default=0.0)
    llm_prompt_tokens = models.PositiveIntegerField(default=0)
    llm_completion_tokens = models.PositiveIntegerField(default=0)
    tts_characters = models.PositiveIntegerField(default=0)
    # preemptive replies prepared and discarded (their tokens are inside the two above)
    discarded_llm_requests = models.PositiveIntegerField(default=0)
    discarded_llm_tokens = models.PositiveIntegerField(default=0)
    # providers replaced during the call, in order: {stage, from, to, reason, at_ms}
    fallbacks = models.JSONField(default=list, blank=True)
    # secure digit captures (voice.events.SecureCapture): {tool, turn_index, start_ms,
    # end_ms}, ms since the call started; a recording is muted over these windows
    secure_captures = models.JSONField(default=list, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    # post-call analysis (calls/analysis.py): {summary, structured_data, success}
    analysis = models.JSONField(default=dict, blank=True)
    analysis_status = models.CharField(
        max_length=16, choices=AnalysisStatus.choices, default=AnalysisStatus.NONE, blank=True
    )
    analysis_error = models.TextField(blank=True)
    analysis_prompt_tokens = models.PositiveIntegerField(default=0)
    analysis_completion_tokens = models.PositiveIntegerField(default=0)
    analyzed_at = models.DateTimeField(null=True, blank=True)
    # the organization's transcript retention deleted the transcript and tool calls
    transcript_purged_at = models.DateTimeField(null=True, blank=True)
    # Per-call variables (calls/variables.py), escaped; filled into the snapshot's
    # templates when the engine's configuration is built.
    variables = models.JSONField(default=dict, blank=True)
    # The tenant's own data, returned as given (at most 16 KB).
    metadata = models.JSONField(default=dict, blank=True)
    # Outbound: the API's Idempotency-Key ("" when none); unique per organization.
    idempotency_key = models.CharField(max_length=255, blank=True)
    # Outbound with answering-machine detection: the carrier's verdict (human,
    # machine_start, machine_end_beep, ..., fax, unknown), how long it took, and what
    # the agent's voicemail policy did (hangup, left-message, or "" for a human).
    answered_by = models.CharField(max_length=32, blank=True)
    amd_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    voicemail_action = models.CharField(max_length=16, blank=True)
    # The recording (calls/recordings.py): its name in the "recordings" storage, "" when
    # there is none (never made, or deleted).
    recording_name = models.CharField(max_length=300, blank=True)
    recording_content_type = models.CharField(max_length=32, blank=True)
    recording_channels = models.PositiveSmallIntegerField(null=True, blank=True)
    recording_duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    recording_bytes = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ("-started_at", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=("carrier", "carrier_call_sid"), name="call_unique_carrier_sid"
            ),
            models.UniqueConstraint(
                fields=("organization", "idempotency_key"),
                condition=~models.Q(idempotency_key=""),
                name="call_unique_org_idempotency_key",
            ),
        ]
        indexes = [models.Index(fields=("organization", "-started_at"))]

    def __str__(self) -> str:
        return f"{self.direction} {self.from_number} -> {self.to_number} ({self.status})"


class DialingPolicy(TenantModel):
    """Where an organization's outbound calls may go (one row per organization).

    Country codes are ISO 3166 regions ("US", "GB"), as the number's own metadata says
    (libphonenumber). Empty ``allowed_countries``: anywhere not denied. Premium-rate and
    shared-cost numbers are refused unless ``allow_premium``; so are the platform's
    ``OUTBOUND_REFUSED_PREFIXES`` whatever this says.
    """

    allowed_countries = models.JSONField(default=list, blank=True)
    denied_countries = models.JSONField(default=list, blank=True)
    allow_premium = models.BooleanField(default=False)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("organization",), name="dialing_policy_one_per_org")
        ]


class TranscriptEntry(TenantModel):
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="transcript")
    role = models.CharField(max_length=16)
    text = models.TextField()
    turn_index = models.PositiveIntegerField()
    start_ms = models.FloatField()
    end_ms = models.FloatField()
    interrupted = models.BooleanField(default=False)

    class Meta:
        ordering = ("call_id", "start_ms", "id")


# The derived stages of a turn's latency timeline, each a column of TurnMetric (for
# aggregation) as well as a key of voice.events.TurnTimeline.as_dict().
TURN_STAGES = (
    "voice_to_voice_ms",
    "platform_overhead_ms",
    "endpointing_ms",
    "stt_lag_ms",
    "llm_ttft_ms",
    "tts_ttfb_ms",
)
# Derived stages kept in the timeline JSON only (no column, not aggregated yet): the VAD's
# hangover, the LLM's first clause, and how much of a preemptive reply's preparation was
# hidden behind the end-of-turn wait (issue 16), shown per turn by the API and the
# waterfall.
TIMELINE_STAGES = ("vad_hangover_ms", "llm_first_clause_ms", "preemptive_hidden_ms")


class TurnMetric(TenantModel):
    """The latency timeline of one assistant turn (raw marks) plus its derived stages.

    ``call_started_at`` and ``agent`` copy the call's (neither changes once the call
    exists) so that analytics over a period read one covering index instead of joining a
    million turns to their calls; measured in docs/analytics.md.
    """

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="turns")
    call_started_at = models.DateTimeField()
    # Follows the call's agent: deleting the agent clears both.
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    turn_index = models.PositiveIntegerField()
    kind = models.CharField(max_length=16)
    interrupted = models.BooleanField(default=False)
    timeline = models.JSONField(default=dict)
    voice_to_voice_ms = models.FloatField(null=True, blank=True)
    platform_overhead_ms = models.FloatField(null=True, blank=True)
    endpointing_ms = models.FloatField(null=True, blank=True)
    stt_lag_ms = models.FloatField(null=True, blank=True)
    llm_ttft_ms = models.FloatField(null=True, blank=True)
    tts_ttfb_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ("call_id", "turn_index")
        constraints = [
            models.UniqueConstraint(fields=("call", "turn_index"), name="turn_unique_call_index")
        ]
        indexes = [
            # Analytics: an organization's turns in a period, with every aggregated column
            # in the index (PostgreSQL answers from it alone; elsewhere a plain index).
            models.Index(
                fields=("organization", "call_started_at"),
                include=(*TURN_STAGES, "interrupted", "agent"),
                name="turn_org_started_cover",
            )
        ]

    def _timeline_stage(self, key: str) -> float | None:
        value = self.timeline.get(key)
        return float(value) if isinstance(value, int | float) else None

    @property
    def vad_hangover_ms(self) -> float | None:
        """From the stored timeline (see TIMELINE_STAGES); None for older turns."""
        return self._timeline_stage("vad_hangover_ms")

    @property
    def llm_first_clause_ms(self) -> float | None:
        return self._timeline_stage("llm_first_clause_ms")

    @property
    def preemptive_hidden_ms(self) -> float | None:
        return self._timeline_stage("preemptive_hidden_ms")


class ToolInvocation(TenantModel):
    """A tool call made during a call. Secure tools arrive here already redacted."""

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="tool_invocations")
    turn_index = models.PositiveIntegerField()
    name = models.CharField(max_length=64)
    arguments = models.JSONField(default=dict)
    ok = models.BooleanField()
    result = models.TextField(blank=True)
    duration_ms = models.FloatField()

    class Meta:
        ordering = ("call_id", "id")


class CallControlAction(TenantModel):
    """A supervisor's action on a running call (voice.control), on the call's timeline.

    Recorded when requested; ``delivered`` once the process holding the call took it (a
    call that ended in between, or a full inbox, leaves it false with ``detail`` saying
    why)."""

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="control_actions")
    action = models.CharField(max_length=16)
    params = models.JSONField(default=dict, blank=True)
    # who asked: "user:<email>" or "api-key:<prefix>"
    actor = models.CharField(max_length=200)
    at = models.DateTimeField(auto_now_add=True)
    # ms since the call's media stream connected: where it sits on the call's timeline
    at_ms = models.FloatField(null=True, blank=True)
    delivered = models.BooleanField(default=False)
    detail = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ("call_id", "at", "id")

    @property
    def summary(self) -> str:
        """The line said or injected, the transfer target, or why it ended."""
        params = self.params or {}
        return str(params.get("text") or params.get("to") or params.get("detail") or "")


class WidgetKey(TenantModel):
    """The public key of an agent's embeddable widget (docs/web-calls.md#the-widget).

    Public by design (it sits in the tenant's page source), so it grants only this: start
    a web call with this agent, from a page whose Origin is listed, within the rate limits
    per key and per client address."""

    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="widget_keys")
    key = models.CharField(max_length=40, unique=True)
    allowed_origins = models.JSONField(default=list)
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created", "-id")

    def __str__(self) -> str:
        return self.key
