"""The dashboard's page routes, discovered from the URL conf (not hand-listed).

A page route is any URL pattern outside the API, the admin, telephony webhooks and static
files. Each is either gated (``org_required`` / ``OrgRequiredMixin``: it carries an
:class:`~tenants.web.Access`) or marked ``public_page``. The role matrix in
tests/tenants/test_roles.py checks every gated route against every role.

A route with URL arguments (``/agents/<int:pk>/``) needs a way to build an object for them
in a given organization: add it to ``PAGE_KWARGS`` (keyed by the namespaced URL name). The
matrix fails with a message naming the route until you do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tenants.models import Organization, Role
from tenants.web import Access, view_access
from tests.factories import (
    make_agent,
    make_api_key,
    make_call,
    make_campaign,
    make_credential,
    make_delivery,
    make_invitation,
    make_membership,
    make_phone_number,
    make_tool,
    make_webhook_endpoint,
)

NOT_PAGES = ("api/", "admin/", "telephony/", "static/", "ws/")

# route name -> kwargs for reverse(), creating whatever object the route needs in ``org``.
PAGE_KWARGS: dict[str, Callable[[Organization], dict[str, Any]]] = {
    "calls:call-detail": lambda org: {"call_id": make_call(org).pk},
    "calls:call-control": lambda org: {"call_id": make_call(org).pk},
    "calls:agent-talk": lambda org: {"agent_id": make_agent(org).pk},
    "calls:agent-widget": lambda org: {"agent_id": make_agent(org).pk},
    "calls:call-delete": lambda org: {"call_id": make_call(org).pk},
    "campaigns:campaign-detail": lambda org: {"campaign_id": make_campaign(org).pk},
    "calls:call-recording-delete": lambda org: {"call_id": make_call(org).pk},
    "tenants:member-role": lambda org: {"pk": make_membership(org, Role.MEMBER).pk},
    "tenants:member-remove": lambda org: {"pk": make_membership(org, Role.MEMBER).pk},
    "tenants:invitation-revoke": lambda org: {"pk": make_invitation(org).pk},
    "tenants:api-key-revoke": lambda org: {"pk": make_api_key(org).api_key.pk},
    "agents:agent-detail": lambda org: {"agent_id": make_agent(org).pk},
    "agents:agent-duplicate": lambda org: {"agent_id": make_agent(org).pk},
    "agents:agent-delete": lambda org: {"agent_id": make_agent(org).pk},
    "agents:tool-detail": lambda org: {"tool_id": make_tool(org).pk},
    "agents:tool-delete": lambda org: {"tool_id": make_tool(org).pk},
    "agents:credential-detail": lambda org: {"credential_id": make_credential(org).pk},
    "agents:credential-delete": lambda org: {"credential_id": make_credential(org).pk},
    "agents:phone-number-detail": lambda org: {"phone_number_id": make_phone_number(org).pk},
    "agents:phone-number-delete": lambda org: {"phone_number_id": make_phone_number(org).pk},
    "webhooks:webhook-detail": lambda org: {"endpoint_id": make_webhook_endpoint(org).pk},
    "webhooks:webhook-rotate": lambda org: {"endpoint_id": make_webhook_endpoint(org).pk},
    "webhooks:webhook-delete": lambda org: {"endpoint_id": make_webhook_endpoint(org).pk},
    "webhooks:delivery-detail": lambda org: {"delivery_id": make_delivery(org).pk},
    "webhooks:delivery-redeliver": lambda org: {"delivery_id": make_delivery(org).pk},
}


@dataclass(frozen=True)
class PageRoute:
    name: str  # namespaced, e.g. "tenants:member-list"
    path: str
    callback: Any
    access: Access | None  # None: a public page
    kwarg_names: tuple[str, ...]

    def __repr__(self) -> str:
        return self.name or self.path

    def url(self, organization: Organization | None = None) -> str:
        if not self.kwarg_names:
            return reverse(self.name)
        factory = PAGE_KWARGS.get(self.name)
        assert factory is not None, (
            f"{self.name} ({self.path}) takes {self.kwarg_names}: add a kwargs factory for it "
            f"to PAGE_KWARGS in tests/dashboard.py"
        )
        assert organization is not None
        return reverse(self.name, kwargs=factory(organization))


def _walk(
    patterns: list[Any], prefix: str = "", namespace: str = ""
) -> list[tuple[str, str, URLPattern]]:
    found = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            ns = namespace
            if pattern.namespace:
                ns = f"{namespace}{pattern.namespace}:"
            found += _walk(pattern.url_patterns, route, ns)
        else:
            found.append((route, namespace, pattern))
    return found


def page_routes() -> list[PageRoute]:
    routes = []
    for path, namespace, pattern in _walk(get_resolver().url_patterns):
        if path.lstrip("^").startswith(NOT_PAGES):
            continue
        routes.append(
            PageRoute(
                name=f"{namespace}{pattern.name}" if pattern.name else "",
                path="/" + path.lstrip("^"),
                callback=pattern.callback,
                access=view_access(pattern.callback),
                kwarg_names=tuple(pattern.pattern.regex.groupindex),
            )
        )
    return routes


def gated_routes() -> list[PageRoute]:
    return [route for route in page_routes() if route.access is not None]
