from __future__ import annotations

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from tenants.models import ApiKey, ApiKeyScope


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
