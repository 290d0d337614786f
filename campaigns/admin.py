from django.contrib import admin

from campaigns.models import Campaign, CampaignContact, StopListEntry
from tenants.admin import TenantModelAdmin


@admin.register(Campaign)
class CampaignAdmin(TenantModelAdmin):
    list_display = ("name", "organization", "status", "max_concurrency", "created")
    list_filter = ("status",)
    search_fields = ("name", "organization__name")
    raw_id_fields = ("organization", "agent")


@admin.register(CampaignContact)
class CampaignContactAdmin(TenantModelAdmin):
    list_display = ("number", "campaign", "status", "attempts", "outcome")
    list_filter = ("status",)
    raw_id_fields = ("organization", "campaign", "call")


@admin.register(StopListEntry)
class StopListEntryAdmin(TenantModelAdmin):
    list_display = ("number", "organization", "reason", "created")
    search_fields = ("number",)
    raw_id_fields = ("organization",)
