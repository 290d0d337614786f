from __future__ import annotations

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from agents.models import Agent, Credential
from agents.serializers import e164
from calls.models import Carrier, PhoneNumber
from glassbox.api.fields import TenantPrimaryKeyRelatedField


# Input and output share a component name: the schema calls them PhoneNumberRequest / PhoneNumber.
@extend_schema_serializer(component_name="PhoneNumber")
class PhoneNumberInputSerializer(serializers.Serializer):
    number = serializers.CharField(max_length=32, help_text="E.164, e.g. +14155550123.")
    name = serializers.CharField(max_length=100, allow_blank=True, default="")
    carrier = serializers.ChoiceField(Carrier.choices, default=Carrier.TWILIO)
    credential = TenantPrimaryKeyRelatedField(
        model=Credential, help_text="A twilio credential of your organization."
    )
    agent = TenantPrimaryKeyRelatedField(
        model=Agent, allow_null=True, default=None, help_text="The agent that answers calls."
    )

    def validate_number(self, value: str) -> str:
        return e164(value)


@extend_schema_serializer(component_name="PhoneNumber")
class PhoneNumberOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = PhoneNumber
        fields = ("id", "number", "name", "carrier", "credential", "agent", "created", "updated")
        read_only_fields = fields
