"""Every dashboard page x every role -> the expected status, generated from the URL conf.

A page's view declares who may read it and who may write to it (``org_required`` /
``OrgRequiredMixin``); this matrix checks the running site against those declarations,
for every role, anonymous visitors and another organization's objects. New pages are
covered as soon as they are routed (those with URL arguments need a ``PAGE_KWARGS`` entry
in tests/dashboard.py). The API's routes get the same treatment for read-only keys.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from tenants import services
from tenants.models import Role
from tenants.permissions import FullAccessKeyPermission
from tests.dashboard import PageRoute, gated_routes, page_routes
from tests.factories import FACTORIES, make_organization, make_user
from tests.routes import Route, api_routes

ROUTES = gated_routes()
ROLES = list(Role)

# The documented role table (docs/dashboard.md), pinned: lowering a page's declared roles
# must be a deliberate change here too. route name -> (read role, write role).
DOCUMENTED_ACCESS: dict[str, tuple[Role, Role]] = {
    "tenants:member-list": (Role.VIEWER, Role.ADMIN),
    "tenants:member-role": (Role.ADMIN, Role.ADMIN),
    "tenants:member-remove": (Role.ADMIN, Role.ADMIN),
    "tenants:invitation-revoke": (Role.ADMIN, Role.ADMIN),
    "tenants:api-key-list": (Role.ADMIN, Role.ADMIN),
    "tenants:api-key-revoke": (Role.ADMIN, Role.ADMIN),
    "billing:billing": (Role.OWNER, Role.OWNER),
    "campaigns:campaign-list": (Role.VIEWER, Role.MEMBER),
    "campaigns:campaign-detail": (Role.VIEWER, Role.MEMBER),
    "calls:call-recording-delete": (Role.ADMIN, Role.ADMIN),
}


def test_pages_declare_the_documented_roles() -> None:
    declared = {route.name: route.access for route in ROUTES}
    for name, (read, write) in DOCUMENTED_ACCESS.items():
        access = declared.get(name)
        assert access is not None, f"{name} is not a gated page"
        assert (access.min_role, access.write_role) == (read, write), name


def test_every_page_route_is_gated_or_public() -> None:
    ungated = [
        route.path
        for route in page_routes()
        if route.access is None and not getattr(route.callback, "dashboard_public", False)
    ]
    assert not ungated, (
        f"{ungated}: wrap these views in tenants.web.org_required (or OrgRequiredMixin), "
        f"or mark a deliberately public page with tenants.web.public_page"
    )


def _client_for(role: Role, organization: Any) -> Client:
    user = make_user()
    services.membership_create(organization=organization, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("route", ROUTES, ids=repr)
def test_anonymous_is_sent_to_login(route: PageRoute, db: Any) -> None:
    url = route.url(make_organization())
    response = Client().get(url)
    assert response.status_code == 302, route
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("role", ROLES, ids=str)
@pytest.mark.parametrize("route", ROUTES, ids=repr)
def test_read_by_role(route: PageRoute, role: Role, db: Any) -> None:
    organization = make_organization()
    url = route.url(organization)
    response = _client_for(role, organization).get(url)
    assert route.access is not None
    expected = 200 if route.access.allows(role, "GET") else 403
    assert response.status_code == expected, f"{role} GET {url}"


@pytest.mark.parametrize("role", ROLES, ids=str)
@pytest.mark.parametrize("route", ROUTES, ids=repr)
def test_write_by_role(route: PageRoute, role: Role, db: Any) -> None:
    organization = make_organization()
    url = route.url(organization)
    response = _client_for(role, organization).post(url, {})
    assert route.access is not None
    if route.access.allows(role, "POST"):
        # Allowed through the gate: a form error, a redirect, or 405 for a read-only page.
        assert response.status_code < 500 and response.status_code != 403, f"{role} POST {url}"
    else:
        assert response.status_code == 403, f"{role} POST {url}"


@pytest.mark.parametrize("route", [r for r in ROUTES if r.kwarg_names], ids=repr)
def test_another_organizations_object_is_404(route: PageRoute, db: Any) -> None:
    mine, theirs = make_organization(), make_organization()
    url = route.url(theirs)
    client = _client_for(Role.OWNER, mine)
    assert client.get(url).status_code == 404
    assert client.post(url, {}).status_code == 404


def test_a_member_of_no_organization_gets_403(db: Any) -> None:
    client = Client()
    client.force_login(make_user())
    for route in ROUTES:
        if not route.kwarg_names:
            assert client.get(route.url()).status_code == 403, route


# --- API: the key's scope, on every API route -----------------------------------------------

API_CALLS = [(route, method) for route in api_routes() for method in route.actions]


@pytest.mark.parametrize(("route", "method"), API_CALLS, ids=lambda v: str(v))
def test_read_only_keys_can_only_read(route: Route, method: str, db: Any) -> None:
    organization = make_organization()
    issued = services.api_key_create(organization=organization, scope="read_only")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    if route.detail:
        model = route.viewset.model
        url = reverse(route.name, kwargs={"pk": FACTORIES[model](organization).pk})
    else:
        url = reverse(route.name)
    response = getattr(client, method)(url, {})
    # the audit log is for owners and admins: a read-only key may not even read it
    full_only = FullAccessKeyPermission in route.viewset.permission_classes
    if method in ("get", "head", "options") and not full_only:
        assert response.status_code == 200, (method, url)
    else:
        assert response.status_code == 403, (method, url)
        assert response.json()["error"]["code"] == "permission_denied"
