from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from agents.models import Agent
from calls.models import PhoneNumber
from campaigns.models import Campaign, CampaignContact, StopListEntry
from campaigns.services import MAX_CONTACTS, RETRYABLE, timezone_valid
from glassbox.api.fields import E164_PATTERN, SafeJSONObjectField, TenantPrimaryKeyRelatedField


def _timezone(value: str) -> None:
    if value and not timezone_valid(value):
        raise serializers.ValidationError("Not an IANA time zone (e.g. Europe/London).")


@extend_schema_field(
    {
        "type": "string",
        "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
        "example": "09:00",
    }
)
class LocalTimeField(serializers.TimeField):
    """A wall-clock time without a zone ("09:00"): the contact's zone applies."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%H:%M:%S", input_formats=["%H:%M", "%H:%M:%S"], **kwargs)


class ContactInputSerializer(serializers.Serializer):
    number = serializers.CharField(max_length=32, help_text="E.164, e.g. +14155550123.")
    variables = SafeJSONObjectField(default=dict, help_text="Values for {{name}} placeholders.")
    timezone = serializers.CharField(
        max_length=64,
        allow_blank=True,
        default="",
        validators=[_timezone],
        help_text="The contact's IANA time zone; '' for the campaign's.",
    )


@extend_schema_serializer(component_name="Campaign")
class CampaignInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    agent = TenantPrimaryKeyRelatedField(model=Agent)
    from_numbers = TenantPrimaryKeyRelatedField(
        model=PhoneNumber, many=True, help_text="Your numbers to call from (used in turn)."
    )
    max_concurrency = serializers.IntegerField(min_value=1, max_value=100, default=1)
    window_start = LocalTimeField(help_text="Local time, e.g. 09:00.")
    window_end = LocalTimeField(help_text="Local time, e.g. 18:00 (before start: overnight).")
    window_days = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=7),
        max_length=7,
        default=list,
        help_text="ISO weekdays (1 = Monday) to call on; empty: every day.",
    )
    timezone = serializers.CharField(
        max_length=64, default="UTC", validators=[_timezone], help_text="For contacts without one."
    )
    max_attempts = serializers.IntegerField(min_value=1, max_value=10, default=1)
    retry_on = serializers.ListField(
        child=serializers.ChoiceField(RETRYABLE),
        default=list,
        help_text="Outcomes that are tried again (up to max_attempts).",
    )
    retry_delay_s = serializers.IntegerField(min_value=0, max_value=7 * 24 * 3600, default=3600)
    stop_list = serializers.ListField(
        child=serializers.RegexField(E164_PATTERN, max_length=16),
        max_length=MAX_CONTACTS,
        default=list,
        help_text="Numbers this campaign never calls (your stop list applies too).",
    )
    contacts = ContactInputSerializer(many=True, required=False, default=list)
    contacts_csv = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        trim_whitespace=False,
        help_text="Contacts as CSV text instead: a 'number' column, an optional 'timezone' "
        "column; every other column is a variable.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("contacts") and attrs.get("contacts_csv"):
            raise serializers.ValidationError({"contacts": "Give contacts or contacts_csv."})
        if attrs.get("window_start") == attrs.get("window_end"):
            raise serializers.ValidationError({"window_end": "The window must not be empty."})
        return attrs


class ProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    finished = serializers.IntegerField(help_text="Contacts completed, failed or skipped.")
    percent = serializers.IntegerField()
    calls = serializers.IntegerField(help_text="Calls placed, retries included.")
    by_status = serializers.DictField(child=serializers.IntegerField())
    by_outcome = serializers.DictField(child=serializers.IntegerField())


@extend_schema_serializer(component_name="Campaign")
class CampaignOutputSerializer(serializers.ModelSerializer):
    window_start = LocalTimeField(read_only=True)
    window_end = LocalTimeField(read_only=True)
    from_numbers = serializers.PrimaryKeyRelatedField.many_init(read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = (
            "id",
            "name",
            "agent",
            "from_numbers",
            "status",
            "max_concurrency",
            "window_start",
            "window_end",
            "window_days",
            "timezone",
            "max_attempts",
            "retry_on",
            "retry_delay_s",
            "stop_list",
            "last_refusal",
            "progress",
            "created",
            "updated",
            "completed_at",
        )
        read_only_fields = fields

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, obj: Campaign) -> dict[str, Any]:
        from campaigns.selectors import campaign_progress

        p = campaign_progress(campaign=obj)
        return {
            "total": p.total,
            "finished": p.finished,
            "percent": p.percent,
            "calls": p.calls,
            "by_status": p.by_status,
            "by_outcome": p.by_outcome,
        }


class ContactOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = CampaignContact
        fields = (
            "id",
            "number",
            "variables",
            "timezone",
            "status",
            "attempts",
            "next_attempt_at",
            "outcome",
            "call",
            "call_ids",
        )
        read_only_fields = fields


class ContactsAddSerializer(serializers.Serializer):
    contacts = ContactInputSerializer(many=True)


class ContactsAddedSerializer(serializers.Serializer):
    added = serializers.IntegerField()


@extend_schema_serializer(component_name="StopListEntry")
class StopListInputSerializer(serializers.Serializer):
    number = serializers.RegexField(
        E164_PATTERN,
        max_length=16,
        error_messages={"invalid": "Use E.164 format, e.g. +14155550123."},
    )
    reason = serializers.CharField(max_length=200, allow_blank=True, default="")


@extend_schema_serializer(component_name="StopListEntry")
class StopListOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = StopListEntry
        fields = ("id", "number", "reason", "created")
        read_only_fields = fields
