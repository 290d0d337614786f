from django.contrib import admin
from django.http import HttpRequest

from tenants.admin import TenantModelAdmin
from webhooks.models import Delivery, Event, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(TenantModelAdmin):
    list_display = ("url", "state", "organization", "created")
    list_filter = ("state",)
    search_fields = ("url", "organization__name")
    # Signing secrets are neither shown nor editable here (rotate them through the API).
    fields = (
        "organization",
        "url",
        "description",
        "events",
        "state",
        "disabled_reason",
        "failing_since",
        "consecutive_failures",
        "previous_secret_expires_at",
        "created",
        "updated",
    )
    readonly_fields = ("organization", "previous_secret_expires_at", "created", "updated")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Event)
class EventAdmin(TenantModelAdmin):
    list_display = ("public_id", "type", "organization", "created")
    list_filter = ("type",)
    search_fields = ("public_id", "organization__name")
    readonly_fields = ("organization", "public_id", "type", "call", "payload", "created")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(TenantModelAdmin):
    list_display = ("event", "endpoint", "agent", "state", "attempts", "last_status", "created")
    list_filter = ("state",)
    search_fields = ("event__public_id", "organization__name")
    readonly_fields = ("organization", "event", "endpoint", "agent", "created")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
