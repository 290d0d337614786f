from django.contrib import admin

from agents.models import Agent, Credential, Tool
from tenants.admin import TenantModelAdmin


@admin.register(Agent)
class AgentAdmin(TenantModelAdmin):
    list_display = ("name", "organization", "created", "updated")
    search_fields = ("name", "organization__name")
    # The webhook secret is never displayed; set it through the API.
    exclude = ("webhook_secret",)
    raw_id_fields = ("organization",)
    filter_horizontal = ("tools",)


@admin.register(Tool)
class ToolAdmin(TenantModelAdmin):
    list_display = ("name", "kind", "organization", "created")
    list_filter = ("kind",)
    search_fields = ("name", "organization__name")
    raw_id_fields = ("organization",)
    # Header values are secrets (often the tool server's credentials): never displayed,
    # set through the API; the admin shows their names only.
    exclude = ("headers",)
    readonly_fields = ("header_names",)

    @admin.display(description="headers (values are write-only, set through the API)")
    def header_names(self, obj: Tool) -> str:
        return ", ".join(sorted(obj.headers)) or "-"


@admin.register(Credential)
class CredentialAdmin(TenantModelAdmin):
    list_display = ("name", "provider", "hint", "organization", "created")
    list_filter = ("provider",)
    search_fields = ("name", "organization__name")
    # Secrets are neither shown nor editable here: they are set through the API.
    fields = ("organization", "name", "provider", "base_url", "hint", "created", "updated")
    readonly_fields = ("organization", "provider", "hint", "created", "updated")

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False
