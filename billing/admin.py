from django.contrib import admin
from django.http import HttpRequest

from billing.models import CallLease, CallUsage, Plan, StripeEvent, Subscription
from tenants.admin import TenantModelAdmin


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "included_minutes",
        "overage_cents_per_minute",
        "max_concurrent_calls",
        "max_minutes_per_period",
        "max_agents",
        "max_numbers",
        "is_default",
    )
    search_fields = ("name",)


@admin.register(Subscription)
class SubscriptionAdmin(TenantModelAdmin):
    list_display = ("organization", "plan", "status", "current_period_end", "grace_until")
    list_filter = ("status", "plan")
    search_fields = ("organization__slug", "stripe_customer_id")
    raw_id_fields = ("organization",)
    readonly_fields = ("stripe_customer_id", "stripe_subscription_id", "created", "updated")


@admin.register(CallUsage)
class CallUsageAdmin(TenantModelAdmin):
    """Usage is written by finalized calls, never by hand."""

    list_display = ("call", "organization", "day", "direction", "seconds", "stripe_reported_at")
    list_filter = ("direction",)
    raw_id_fields = ("organization", "call", "agent")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(CallLease)
class CallLeaseAdmin(TenantModelAdmin):
    """Concurrency slots of the database backend (no Redis). Deleting one frees it."""

    list_display = ("call_key", "organization", "expires_at")
    raw_id_fields = ("organization",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_display = ("event_id", "type", "received_at")
    readonly_fields = ("event_id", "type", "received_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
