from __future__ import annotations

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from tenants.models import ApiKey, ApiKeyScope, AuditLogEntry


# Input and output share a component name: the schema calls them ApiKeyRequest / ApiKey.
@extend_schema_serializer(component_name="ApiKey")
class ApiKeyInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, allow_blank=True, default="")
    scope = serializers.ChoiceField(
        choices=ApiKeyScope.choices,
        default=ApiKeyScope.FULL,
        help_text="`read_only` keys may only use GET, HEAD and OPTIONS.",
    )


@extend_schema_serializer(component_name="ApiKey")
class ApiKeyOutputSerializer(serializers.ModelSerializer):
    masked = serializers.CharField(read_only=True, help_text="Safe to display.")
    revoked = serializers.BooleanField(source="is_revoked", read_only=True)

    class Meta:
        model = ApiKey
        fields: tuple[str, ...] = (
            "id",
            "name",
            "prefix",
            "masked",
            "scope",
            "created",
            "last_used_at",
            "revoked",
            "revoked_at",
        )
        read_only_fields: tuple[str, ...] = fields


@extend_schema_serializer(component_name="ApiKeyCreated")
class ApiKeyCreatedSerializer(ApiKeyOutputSerializer):
    key = serializers.SerializerMethodField(
        help_text="The API key. Shown once: it is not stored and cannot be shown again."
    )

    class Meta(ApiKeyOutputSerializer.Meta):
        fields = (*ApiKeyOutputSerializer.Meta.fields, "key")
        read_only_fields = fields

    def get_key(self, obj: ApiKey) -> str:
        return str(self.context["raw_key"])


class DataSettingsSerializer(serializers.Serializer):
    """The organization's data retention and redaction (``/api/v1/organization/``)."""

    name = serializers.CharField(read_only=True)
    recording_retention_days = serializers.IntegerField(
        min_value=1,
        max_value=36_500,
        allow_null=True,
        required=False,
        help_text="Recordings of calls that started longer ago are deleted; null keeps them.",
    )
    transcript_retention_days = serializers.IntegerField(
        min_value=1,
        max_value=36_500,
        allow_null=True,
        required=False,
        help_text="Transcripts and tool calls of calls that started longer ago are deleted; "
        "null keeps them.",
    )
    redact_transcripts = serializers.BooleanField(
        required=False,
        help_text="Replace emails, card numbers (Luhn-checked) and phone numbers in "
        "transcripts with [email], [card], [phone] before they are stored.",
    )


class AuditLogEntrySerializer(serializers.ModelSerializer):
    actor_user = serializers.IntegerField(source="actor_user_id", allow_null=True)
    actor_api_key = serializers.IntegerField(source="actor_api_key_id", allow_null=True)
    detail = serializers.JSONField()

    class Meta:
        model = AuditLogEntry
        fields = (
            "id",
            "created",
            "actor",
            "actor_user",
            "actor_api_key",
            "action",
            "target_type",
            "target_id",
            "detail",
        )
        read_only_fields = fields
