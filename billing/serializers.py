from __future__ import annotations

from typing import Any

from rest_framework import serializers

from billing.models import Plan
from billing.selectors import GROUPINGS


class PlanSerializer(serializers.ModelSerializer):
    class Meta:
        model = Plan
        fields = (
            "name",
            "included_minutes",
            "overage_cents_per_minute",
            "max_concurrent_calls",
            "max_minutes_per_period",
            "max_agents",
            "max_numbers",
            "features",
        )


class SubscriptionSerializer(serializers.Serializer):
    """The plan and its period; ``id`` and ``plan`` are null in self-hosted mode with no
    plans configured (status ``unlimited``: nothing is limited)."""

    id = serializers.IntegerField(allow_null=True)
    plan = PlanSerializer(allow_null=True)
    status = serializers.CharField(
        help_text="active, trialing, past_due, suspended, canceled, or unlimited."
    )
    current_period_start = serializers.DateTimeField()
    current_period_end = serializers.DateTimeField()
    grace_until = serializers.DateTimeField(allow_null=True)
    minutes_used = serializers.FloatField()
    concurrent_calls = serializers.IntegerField()
    stripe_managed = serializers.BooleanField()


class UsageQuerySerializer(serializers.Serializer):
    """``start``/``end`` (dates, end exclusive) default to the current billing period."""

    start = serializers.DateField(required=False)
    end = serializers.DateField(required=False)
    grouping = serializers.ChoiceField(choices=GROUPINGS, default="day")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("start"), attrs.get("end")
        if start and end:
            if end <= start:
                raise serializers.ValidationError({"end": "Must be after start."})
            if (end - start).days > 366:
                raise serializers.ValidationError({"end": "At most 366 days at a time."})
        return attrs


class UsageRowSerializer(serializers.Serializer):
    day = serializers.DateField(allow_null=True)
    agent = serializers.IntegerField(source="agent_id", allow_null=True)
    agent_name = serializers.CharField()
    direction = serializers.CharField()
    calls = serializers.IntegerField()
    minutes = serializers.FloatField()
    inbound_seconds = serializers.IntegerField()
    outbound_seconds = serializers.IntegerField()
    stt_seconds = serializers.FloatField()
    llm_prompt_tokens = serializers.IntegerField()
    llm_completion_tokens = serializers.IntegerField()
    tts_characters = serializers.IntegerField()
    analysis_prompt_tokens = serializers.IntegerField(help_text="Post-call analysis.")
    analysis_completion_tokens = serializers.IntegerField(help_text="Post-call analysis.")


class UsageSerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()
    grouping = serializers.CharField()
    results = UsageRowSerializer(many=True)
