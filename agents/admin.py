import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from agents.models import Agent, Credential, Tool
from agents.serializers import NESTED
from tenants.admin import TenantAdminForm, TenantModelAdmin


class AgentAdminForm(TenantAdminForm):
    """The admin edits the nested settings as raw JSON; hold them to the API's rules.
    (No Meta: the admin builds the model form's fields itself, tenant-scoped.)"""

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean()
        for name, serializer_class in NESTED.items():
            if name not in cleaned:
                continue  # the field itself was invalid (not JSON): already reported
            serializer = serializer_class(data=cleaned[name])
            if serializer.is_valid():
                cleaned[name] = dict(serializer.validated_data)
            else:
                self.add_error(name, json.dumps(serializer.errors))
        return cleaned


@admin.register(Agent)
class AgentAdmin(TenantModelAdmin):
    form = AgentAdminForm
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
