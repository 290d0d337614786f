from django.contrib import admin
from django.http import HttpRequest

from calls.models import (
    Call,
    CallControlAction,
    DialingPolicy,
    PhoneNumber,
    ToolInvocation,
    TranscriptEntry,
    TurnMetric,
    WidgetKey,
)
from tenants.admin import TenantModelAdmin


@admin.register(PhoneNumber)
class PhoneNumberAdmin(TenantModelAdmin):
    list_display = ("number", "name", "carrier", "agent", "organization", "created")
    list_filter = ("carrier",)
    search_fields = ("number", "name", "organization__name")
    raw_id_fields = ("organization", "agent", "credential")


class _CallRecordAdmin(TenantModelAdmin):
    """Call records are written by calls, never by hand."""

    raw_id_fields = ("organization", "call")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Call)
class CallAdmin(TenantModelAdmin):
    list_display = (
        "id",
        "organization",
        "direction",
        "from_number",
        "to_number",
        "status",
        "end_reason",
        "started_at",
        "duration_ms",
    )
    list_filter = ("status", "direction", "carrier", "end_reason")
    search_fields = ("carrier_call_sid", "from_number", "to_number", "organization__name")
    raw_id_fields = ("organization", "agent", "phone_number")
    exclude = ("stream_nonce",)
    date_hierarchy = "started_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(TranscriptEntry)
class TranscriptEntryAdmin(_CallRecordAdmin):
    list_display = ("call", "turn_index", "role", "text", "interrupted", "organization")
    list_filter = ("role", "interrupted")


@admin.register(TurnMetric)
class TurnMetricAdmin(_CallRecordAdmin):
    list_display = (
        "call",
        "turn_index",
        "kind",
        "voice_to_voice_ms",
        "platform_overhead_ms",
        "interrupted",
        "organization",
    )
    list_filter = ("kind", "interrupted")


@admin.register(ToolInvocation)
class ToolInvocationAdmin(_CallRecordAdmin):
    list_display = ("call", "turn_index", "name", "ok", "duration_ms", "organization")
    list_filter = ("ok",)


@admin.register(DialingPolicy)
class DialingPolicyAdmin(TenantModelAdmin):
    list_display = ("organization", "allow_premium", "updated")
    raw_id_fields = ("organization",)


@admin.register(CallControlAction)
class CallControlActionAdmin(_CallRecordAdmin):
    """What supervisors did to running calls (say, inject, mute, transfer, end)."""

    list_display = ("call", "action", "actor", "at", "delivered", "organization")
    list_filter = ("action", "delivered")


@admin.register(WidgetKey)
class WidgetKeyAdmin(TenantModelAdmin):
    # A widget key is public by design (it sits in the tenant's page); its origins are
    # what guard it, and the tenant manages both on the agent's widget page.
    list_display = ("key", "agent", "enabled", "created", "organization")
    list_filter = ("enabled",)
    raw_id_fields = ("organization", "agent")
