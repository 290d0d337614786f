"""A URL conf for testing the dashboard gate on its own: the real pages plus three
gated views with different role requirements."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views import View

from tenants.models import Membership, Role
from tenants.web import OrgRequiredMixin, org_required


@org_required
def anyone(request: HttpRequest) -> HttpResponse:
    # Runs inside tenant_scope: an unscoped-looking query is the organization's rows only.
    members = sorted(m.user.email for m in Membership.objects.all())
    return HttpResponse(f"{request.organization.slug} {request.membership.role} {members}")  # type: ignore[attr-defined]


@org_required(min_role=Role.ADMIN)
def admins(request: HttpRequest) -> HttpResponse:
    return HttpResponse("admin page")


class OwnersWrite(OrgRequiredMixin, View):
    min_role = Role.MEMBER
    write_role = Role.OWNER

    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("read")

    def post(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("written")


urlpatterns = [
    path("", include("tenants.web_urls")),
    path("gate/anyone/", anyone),
    path("gate/admins/", admins),
    path("gate/owners-write/", OwnersWrite.as_view()),
]
