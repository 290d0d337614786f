"""API shapes for endpoints and deliveries, and the documented shapes of the events
themselves (the ``payload`` of a delivery's event, exactly the body POSTed)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from calls.models import TURN_STAGES
from calls.serializers import CallOutputSerializer, TranscriptEntrySerializer
from glassbox.outbound import validate_outbound_url
from webhooks.events import API_VERSION
from webhooks.models import Delivery, EndpointState, Event, EventType, WebhookEndpoint
from webhooks.services import MAX_OVERLAP_S

DEFAULT_OVERLAP_S = 24 * 3600


def _all_events() -> list[str]:
    return list(EventType.values)


class WebhookEndpointInputSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2000, validators=[validate_outbound_url])
    description = serializers.CharField(max_length=200, allow_blank=True, default="")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices),
        min_length=1,
        max_length=len(EventType.values),
        default=_all_events,
        help_text="The event types sent to this endpoint. Default: all of them.",
    )
    enabled = serializers.BooleanField(
        required=False,
        help_text="false disables the endpoint; true enables a disabled one (and clears "
        "its failure count).",
    )


class WebhookEndpointOutputSerializer(serializers.ModelSerializer):
    enabled = serializers.SerializerMethodField()
    state = serializers.ChoiceField(
        choices=EndpointState.choices,
        help_text="enabled; failing (a delivery used up its retries: still tried); disabled "
        "(kept failing, or switched off: receives nothing).",
    )

    class Meta:
        model = WebhookEndpoint
        fields: tuple[str, ...] = (
            "id",
            "url",
            "description",
            "events",
            "enabled",
            "state",
            "disabled_reason",
            "failing_since",
            "consecutive_failures",
            "previous_secret_expires_at",
            "created",
            "updated",
        )
        read_only_fields: tuple[str, ...] = fields

    def get_enabled(self, obj: WebhookEndpoint) -> bool:
        return obj.state != EndpointState.DISABLED


class WebhookEndpointSecretSerializer(WebhookEndpointOutputSerializer):
    secret = serializers.CharField(
        help_text="The signing secret. Shown only in this response: store it now."
    )

    class Meta(WebhookEndpointOutputSerializer.Meta):
        fields = (*WebhookEndpointOutputSerializer.Meta.fields, "secret")
        read_only_fields = fields


class RotateSecretInputSerializer(serializers.Serializer):
    overlap_s = serializers.IntegerField(
        min_value=0,
        max_value=MAX_OVERLAP_S,
        default=DEFAULT_OVERLAP_S,
        help_text="How long the old secret keeps signing too (a second v1 in the header). "
        "0 retires it at once.",
    )


# -- the events, as POSTed -----------------------------------------------------------------


class _StageStatsSerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)


class _TurnSummarySerializer(serializers.Serializer):
    turn_index = serializers.IntegerField()
    kind = serializers.CharField()
    interrupted = serializers.BooleanField()

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for stage in TURN_STAGES:
            fields[stage] = serializers.FloatField(allow_null=True)
        return fields


class _StagesSerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        return {stage: _StageStatsSerializer() for stage in TURN_STAGES}


class MetricsSummarySerializer(serializers.Serializer):
    turns = serializers.IntegerField(help_text="Assistant turns with a latency timeline.")
    interrupted = serializers.IntegerField()
    stages = _StagesSerializer(help_text="p50/p95 of each latency stage over the call, in ms.")
    per_turn = _TurnSummarySerializer(many=True)


class CallUsageTotalsSerializer(serializers.Serializer):
    duration_ms = serializers.IntegerField(allow_null=True)
    stt_seconds = serializers.FloatField()
    llm_prompt_tokens = serializers.IntegerField()
    llm_completion_tokens = serializers.IntegerField()
    tts_characters = serializers.IntegerField()


class _TurnCallSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    agent = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()


def _envelope(name: str, event_type: str, data: serializers.Serializer, doc: str) -> type:
    fields: dict[str, Any] = {
        "id": serializers.CharField(
            help_text="evt_...: the same in every delivery and redelivery of this event; "
            "use it to ignore duplicates."
        ),
        "object": serializers.ChoiceField(choices=["event"]),
        "type": serializers.CharField(help_text=f"{event_type}"),
        "api_version": serializers.CharField(help_text=f"Currently {API_VERSION}."),
        "created": serializers.IntegerField(help_text="When it happened, unix seconds."),
        "data": data,
        "__doc__": doc,
    }
    return type(name, (serializers.Serializer,), fields)


CallStartedEvent = _envelope(
    "CallStartedEvent",
    EventType.CALL_STARTED,
    type("CallStartedData", (serializers.Serializer,), {"call": CallOutputSerializer()})(),
    "The call was answered and its media stream is running.",
)
CallEndedEvent = _envelope(
    "CallEndedEvent",
    EventType.CALL_ENDED,
    type(
        "CallEndedData",
        (serializers.Serializer,),
        {
            "call": CallOutputSerializer(help_text="status, end_reason, duration_ms, ..."),
            "usage": CallUsageTotalsSerializer(),
            "transcript": TranscriptEntrySerializer(many=True),
            "metrics": MetricsSummarySerializer(),
        },
    )(),
    "The call is over and finalized: its totals are set.",
)
CallAnalyzedEvent = _envelope(
    "CallAnalyzedEvent",
    EventType.CALL_ANALYZED,
    type(
        "CallAnalyzedData",
        (serializers.Serializer,),
        {
            "call": CallOutputSerializer(),
            "analysis": serializers.JSONField(
                help_text="The call's analysis as in GET /api/v1/calls/{id}/: summary, "
                "structured_data, success."
            ),
        },
    )(),
    "Post-call analysis finished (or failed for good).",
)
CallRecordingReadyEvent = _envelope(
    "CallRecordingReadyEvent",
    EventType.CALL_RECORDING_READY,
    type(
        "CallRecordingReadyData",
        (serializers.Serializer,),
        {
            "call": CallOutputSerializer(),
            "recording": serializers.JSONField(
                help_text="The recording's details; url is the authorized API route that serves it."
            ),
        },
    )(),
    "The call's recording is finished and stored.",
)
TranscriptTurnEvent = _envelope(
    "TranscriptTurnEvent",
    EventType.TRANSCRIPT_TURN,
    type(
        "TranscriptTurnData",
        (serializers.Serializer,),
        {"call": _TurnCallSerializer(), "turn": TranscriptEntrySerializer()},
    )(),
    "One transcript line was stored, while the call runs.",
)

BillingUsageThresholdEvent = _envelope(
    "BillingUsageThresholdEvent",
    EventType.BILLING_USAGE_THRESHOLD,
    type(
        "BillingUsageThresholdData",
        (serializers.Serializer,),
        {
            "kind": serializers.ChoiceField(
                choices=["included", "cap"],
                help_text="included: the minutes the plan includes (beyond them, overage); "
                "cap: the plan's maximum minutes per period (at 100 %, calls are refused).",
            ),
            "percent": serializers.ChoiceField(choices=[80, 100]),
            "used_minutes": serializers.FloatField(
                help_text="Minutes of finalized calls this period when the notice was due."
            ),
            "limit_minutes": serializers.IntegerField(),
            "plan": serializers.CharField(help_text="The plan's name."),
            "period_start": serializers.DateTimeField(),
            "period_end": serializers.DateTimeField(),
        },
    )(),
    "The organization's minutes this period reached 80 % or 100 % of a plan limit: sent "
    "once per period, limit and percentage. Not about a call: endpoints only, never an "
    "agent's webhook_url.",
)

WEBHOOK_EVENT = PolymorphicProxySerializer(
    component_name="WebhookEvent",
    serializers={
        EventType.CALL_STARTED.value: CallStartedEvent,
        EventType.CALL_ENDED.value: CallEndedEvent,
        EventType.CALL_ANALYZED.value: CallAnalyzedEvent,
        EventType.CALL_RECORDING_READY.value: CallRecordingReadyEvent,
        EventType.TRANSCRIPT_TURN.value: TranscriptTurnEvent,
        EventType.BILLING_USAGE_THRESHOLD.value: BillingUsageThresholdEvent,
    },
    resource_type_field_name="type",
)


@extend_schema_field(WEBHOOK_EVENT)
class EventPayloadField(serializers.JSONField):
    pass


# -- deliveries ----------------------------------------------------------------------------


class EventSummarySerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    type = serializers.ChoiceField(choices=EventType.choices)

    class Meta:
        model = Event
        fields: tuple[str, ...] = ("id", "type", "created", "call")
        read_only_fields: tuple[str, ...] = fields


class EventSerializer(EventSummarySerializer):
    payload = EventPayloadField(help_text="The JSON body POSTed (the same in every attempt).")

    class Meta(EventSummarySerializer.Meta):
        fields = (*EventSummarySerializer.Meta.fields, "payload")
        read_only_fields = fields


class DeliveryOutputSerializer(serializers.ModelSerializer):
    event = EventSummarySerializer()
    url = serializers.CharField(source="destination_url", help_text="Where it is sent.")

    class Meta:
        model = Delivery
        fields = (
            "id",
            "event",
            "endpoint",
            "agent",
            "url",
            "state",
            "attempts",
            "max_attempts",
            "last_status",
            "last_error",
            "last_response_ms",
            "last_attempt_at",
            "next_attempt_at",
            "redelivered_at",
            "created",
        )
        read_only_fields = fields


class DeliveryDetailSerializer(DeliveryOutputSerializer):
    event = EventSerializer()
