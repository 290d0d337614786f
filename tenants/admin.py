"""Django admin for platform staff.

Staff work across tenants, so admin views run with tenant scoping explicitly lifted: the
queryset comes from ``dangerously_unscoped()`` and each view runs inside
``dangerously_unscoped_context()`` (Django's own form fields and uniqueness checks query
the default manager, which would otherwise refuse).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from glassbox.outbound import validate_outbound_url
from tenants.models import ApiKey, AuditLogEntry, Invitation, Membership, Organization
from tenants.scoping import dangerously_unscoped_context


class TenantAdminForm(forms.ModelForm):
    """Many-to-many choices (e.g. an agent's tools) must belong to the row's organization."""

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data  # what ModelForm.clean() returns
        organization = cleaned.get("organization") or getattr(self.instance, "organization", None)
        if organization is None:
            return cleaned
        for name, field in self.fields.items():
            if not isinstance(field, forms.ModelMultipleChoiceField):
                continue
            for obj in cleaned.get(name) or []:
                if getattr(obj, "organization_id", organization.pk) != organization.pk:
                    self.add_error(name, f"{obj} belongs to another organization.")
                    break
        return cleaned


class TenantModelAdmin(admin.ModelAdmin):
    form = TenantAdminForm
    list_select_related = ("organization",)
    # Tenant URLs (tool url, credential base_url, agent webhook_url) follow the outbound
    # guard here as in the API.
    formfield_overrides = {
        models.URLField: {"assume_scheme": "https", "validators": [validate_outbound_url]}
    }

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = self.model.objects.dangerously_unscoped()
        ordering = self.get_ordering(request)
        return qs.order_by(*ordering) if ordering else qs

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        with dangerously_unscoped_context():
            return _rendered(super().changelist_view(request, extra_context))

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with dangerously_unscoped_context():
            return _rendered(super().changeform_view(request, *args, **kwargs))

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with dangerously_unscoped_context():
            return _rendered(super().delete_view(request, *args, **kwargs))

    def history_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with dangerously_unscoped_context():
            return _rendered(super().history_view(request, *args, **kwargs))


def _rendered(response: HttpResponse) -> HttpResponse:
    # TemplateResponses render after the view returns, i.e. outside the context above;
    # their templates can still query (related fields, inlines), so render now.
    render = getattr(response, "render", None)
    if render is not None and not getattr(response, "is_rendered", True):
        render()
    return response


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "is_active", "created")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Membership)
class MembershipAdmin(TenantModelAdmin):
    list_display = ("user", "organization", "role", "created")
    list_filter = ("role",)
    search_fields = ("user__email", "organization__name")
    raw_id_fields = ("user", "organization")


@admin.register(ApiKey)
class ApiKeyAdmin(TenantModelAdmin):
    # Keys are issued through the API or `manage.py apikeys`; the admin can only revoke.
    list_display = ("masked", "name", "organization", "created", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "name", "organization__name")
    fields = ("organization", "name", "masked", "created", "last_used_at", "revoked_at")
    readonly_fields = ("organization", "masked", "created", "last_used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Invitation)
class InvitationAdmin(TenantModelAdmin):
    # Invitations are sent from the dashboard's Members page; the token is only a hash.
    list_display = ("email", "organization", "role", "created", "expires_at", "accepted_at")
    list_filter = ("role",)
    search_fields = ("email", "organization__name")
    fields = ("organization", "email", "role", "created", "expires_at", "accepted_at", "revoked_at")
    readonly_fields = ("organization", "email", "role", "created", "expires_at", "accepted_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(TenantModelAdmin):
    # Added by the platform (calls/retention.py, data settings), never edited here.
    list_display = ("created", "organization", "actor", "action", "target_type", "target_id")
    list_filter = ("action",)
    search_fields = ("organization__name", "actor", "target_id")
    readonly_fields = (
        "organization",
        "created",
        "actor",
        "actor_user",
        "actor_api_key",
        "action",
        "target_type",
        "target_id",
        "detail",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
