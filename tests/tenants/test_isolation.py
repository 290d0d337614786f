"""Tenant B can never see or touch tenant A's objects, on any route, for any model.

Routes come from the URL conf and models from the app registry, so new ones are covered
without editing this file (and fail here until they have a factory and a sample payload).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import models
from django.urls import reverse
from django.utils import timezone
from rest_framework.relations import ManyRelatedField

from glassbox.api.fields import TenantPrimaryKeyRelatedField
from glassbox.api.views import TenantViewSet
from tenants.models import Organization
from tenants.scoping import TenantScopeError, tenant_models, tenant_scope
from tests.conftest import Tenant
from tests.factories import (
    FACTORIES,
    make_agent,
    make_credential,
    make_finished_call,
    make_phone_number,
    turn_timeline,
)
from tests.routes import Route, api_routes

ROUTES = api_routes()
DETAIL_CALLS = [(route, method) for route in ROUTES if route.detail for method in route.actions]
LIST_ROUTES = [route for route in ROUTES if route.actions.get("get") == "list"]
# Detail actions (POST /campaigns/{pk}/pause/) are covered by the 404 test instead.
AGGREGATE_ROUTES = [route for route in ROUTES if route.aggregate and not route.detail]
CREATE_ROUTES = [route for route in ROUTES if not route.detail and "post" in route.actions]
UPDATE_ROUTES = [route for route in ROUTES if route.detail and "patch" in route.actions]

# A valid create payload per route, built inside the given organization.
PAYLOADS: dict[str, Callable[[Organization], dict[str, Any]]] = {
    "agent-list": lambda org: {
        "name": "Payload agent",
        "stt": {"provider": "deepgram"},
        "llm": {"provider": "openai"},
        "tts": {"provider": "cartesia"},
        "stt_credential": make_credential(org, "deepgram").pk,
        "llm_credential": make_credential(org, "openai").pk,
        "tts_credential": make_credential(org, "cartesia").pk,
        "tools": [FACTORIES[_model("tool")](org).pk],
    },
    "tool-list": lambda org: {"name": "payload_tool", "kind": "end_call"},
    "credential-list": lambda org: {"name": "k", "provider": "openai", "api_key": "sk-payload-1"},
    "phone-number-list": lambda org: {
        "number": "+14155559876",
        "credential": make_credential(org, "twilio").pk,
        "agent": make_agent(org).pk,
    },
    "api-key-list": lambda org: {"name": "payload key"},
    # Dials through TWILIO_API_BASE_URL, which _no_twilio points at a closed port: the
    # call is recorded as failed (dial-failed), still a 201.
    "call-list": lambda org: {
        "agent": make_agent(org).pk,
        "from_number": make_phone_number(org).pk,
        "to": "+14155550199",
    },
    "campaign-list": lambda org: {
        "name": "Payload campaign",
        "agent": make_agent(org).pk,
        "from_numbers": [make_phone_number(org).pk],
        "window_start": "00:00",
        "window_end": "00:01",
        "window_days": [7],
        "contacts": [],
    },
    "stop-list-list": lambda org: {"number": "+14155550198"},
    "webhook-endpoint-list": lambda org: {
        "url": "https://hooks.example.com/glassbox",
        "events": ["call.ended"],
    },
}


@pytest.fixture(autouse=True)
def _no_twilio(settings: Any) -> None:
    # Nothing listens on the discard port: a dial fails at once, without the internet.
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"


def _model(name: str) -> type[models.Model]:
    return next(m for m in FACTORIES if m._meta.model_name == name)


def _detail_url(route: Route, pk: int) -> str:
    return reverse(route.name, kwargs={"pk": pk})


def _reference_fields(route: Route) -> dict[str, type[models.Model]]:
    serializer = route.viewset.input_serializer_class()
    refs = {}
    for name, field in serializer.fields.items():
        inner = field.child_relation if isinstance(field, ManyRelatedField) else field
        if isinstance(inner, TenantPrimaryKeyRelatedField):
            refs[name] = inner.model
    return refs


def test_routes_were_discovered() -> None:
    assert len(LIST_ROUTES) >= 5 and DETAIL_CALLS


@pytest.mark.parametrize("route", ROUTES, ids=repr)
def test_every_api_route_is_tenant_scoped(route: Route) -> None:
    assert issubclass(route.viewset, TenantViewSet), f"{route.path} bypasses TenantViewSet"
    assert route.viewset.model in FACTORIES, f"add a factory for {route.viewset.model}"


@pytest.mark.parametrize("model", tenant_models(), ids=lambda m: m._meta.label)
def test_every_tenant_model_has_a_factory(model: type[models.Model]) -> None:
    assert model in FACTORIES, f"tests/factories.py needs a factory for {model._meta.label}"


@pytest.mark.parametrize(("route", "method"), DETAIL_CALLS, ids=lambda v: repr(v))
def test_other_tenants_object_is_404_like_a_missing_one(
    route: Route, method: str, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    model = route.viewset.model
    obj = FACTORIES[model](tenant_a.organization)
    before = model.objects.for_org(tenant_a.organization).filter(pk=obj.pk).values().get()

    foreign = getattr(tenant_b.client, method)(_detail_url(route, obj.pk), {}, format="json")
    missing = getattr(tenant_b.client, method)(_detail_url(route, 10**9), {}, format="json")

    assert foreign.status_code == missing.status_code == 404
    assert (
        foreign.json()
        == missing.json()
        == {"error": {"code": "not_found", "message": "Not found."}}
    )
    after = model.objects.for_org(tenant_a.organization).filter(pk=obj.pk).values().get()
    assert after == before
    # The owner reaches the same URL, so the 404 was about the tenant, not the path.
    if "get" in route.actions:
        assert tenant_a.client.get(_detail_url(route, obj.pk)).status_code == 200
    else:  # an action (POST .../pause/): whatever it answers the owner, it is not a 404
        owner = getattr(tenant_a.client, method)(_detail_url(route, obj.pk), {}, format="json")
        assert owner.status_code != 404, owner.json()


@pytest.mark.parametrize("route", LIST_ROUTES, ids=repr)
def test_lists_only_show_own_objects(route: Route, tenant_a: Tenant, tenant_b: Tenant) -> None:
    model = route.viewset.model
    mine = FACTORIES[model](tenant_b.organization)
    theirs = FACTORIES[model](tenant_a.organization)

    body = tenant_b.client.get(reverse(route.name)).json()

    ids = {row["id"] for row in body["results"]}
    assert mine.pk in ids
    assert theirs.pk not in ids
    assert body["count"] == model.objects.for_org(tenant_b.organization).count()


# route name -> (body, tenant B's object, tenant A's object) -> B sees only its own.
AGGREGATE_CHECKS: dict[str, Callable[[dict[str, Any], Any, Any], bool]] = {
    "billing-usage": lambda body, mine, theirs: (
        sum(r["calls"] for r in body["results"]) == 1
        and sum(r["inbound_seconds"] for r in body["results"]) == mine.seconds
    ),
    "billing-subscription": lambda body, mine, theirs: (
        body["id"] == mine.pk and body["plan"]["name"] == mine.plan.name
    ),
    # the credential's own organization, whatever the other one holds
    "organization": lambda body, mine, theirs: (
        body["name"] == mine.organization.name != theirs.organization.name
    ),
    # One per organization; tests/calls/test_outbound_api.py changes one tenant's.
    "dialing-policy": lambda body, mine, theirs: (
        body["allowed_countries"] == mine.allowed_countries
        and body["allow_premium"] == mine.allow_premium
    ),
}
BILLING_ROUTES = [route for route in AGGREGATE_ROUTES if route.name in AGGREGATE_CHECKS]


@pytest.mark.parametrize("route", BILLING_ROUTES, ids=repr)
def test_billing_totals_only_count_own_objects(
    route: Route, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    model = route.viewset.model
    mine = FACTORIES[model](tenant_b.organization)
    theirs = FACTORIES[model](tenant_a.organization)
    response = tenant_b.client.get(reverse(route.name))
    assert response.status_code == 200, response.json()
    assert AGGREGATE_CHECKS[route.name](response.json(), mine, theirs), response.json()


# Computed views over calls and turns (analytics), filterable by agent.
# (Detail actions, such as starting a web call or controlling a call, are per object: the
# 404 checks above cover them.)
ANALYTICS_ROUTES = [
    route for route in AGGREGATE_ROUTES if route not in BILLING_ROUTES and not route.detail
]


@pytest.mark.parametrize("route", ANALYTICS_ROUTES, ids=repr)
def test_aggregates_only_count_own_rows(route: Route, tenant_a: Tenant, tenant_b: Tenant) -> None:
    def get(tenant: Tenant) -> Any:
        response = tenant.client.get(reverse(route.name))
        assert response.status_code == 200, response.content
        # The window ends "now": drop the timestamps before comparing two answers.
        return {k: v for k, v in response.json().items() if k not in ("start", "end", "by_day")}

    empty_a, before_b = get(tenant_a), get(tenant_b)
    make_finished_call(
        tenant_a.organization,
        started_at=timezone.now() - timedelta(hours=1),
        turns=[turn_timeline(1, speech_end_ms=1000, interrupted_after_ms=300)],
    )

    assert get(tenant_b) == before_b
    assert get(tenant_a) != empty_a, "the route must show the organization's own rows"
    # An agent id from another tenant is refused, like a missing one.
    foreign_agent = make_agent(tenant_a.organization).pk
    for agent in (foreign_agent, 10**9):
        response = tenant_b.client.get(reverse(route.name), {"agent": agent})
        assert response.status_code == 400
        assert "agent" in response.json()["error"]["fields"]


@pytest.mark.parametrize("route", CREATE_ROUTES, ids=repr)
def test_create_rejects_references_to_other_tenants(
    route: Route, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    assert route.name in PAYLOADS, f"add a sample create payload for {route.name}"
    refs = _reference_fields(route)
    for field, model in refs.items():
        payload = PAYLOADS[route.name](tenant_b.organization)
        foreign = FACTORIES[model](tenant_a.organization).pk
        payload[field] = [foreign] if isinstance(payload.get(field), list) else foreign
        response = tenant_b.client.post(reverse(route.name), payload, format="json")
        assert response.status_code == 400, (field, response.json())
        assert field in response.json()["error"]["fields"]
    # The same payload with the tenant's own objects is accepted.
    ok = tenant_b.client.post(reverse(route.name), PAYLOADS[route.name](tenant_b.organization))
    assert ok.status_code == 201, ok.json()
    created = route.viewset.model.objects.for_org(tenant_b.organization).get(pk=ok.json()["id"])
    assert created.organization_id == tenant_b.organization.pk


@pytest.mark.parametrize("route", UPDATE_ROUTES, ids=repr)
def test_update_rejects_references_to_other_tenants(
    route: Route, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    model = route.viewset.model
    obj = FACTORIES[model](tenant_b.organization)
    for field, ref_model in _reference_fields(route).items():
        foreign = FACTORIES[ref_model](tenant_a.organization).pk
        value = [foreign] if field == "tools" else foreign
        response = tenant_b.client.patch(_detail_url(route, obj.pk), {field: value}, format="json")
        assert response.status_code == 400, (field, response.json())
        assert field in response.json()["error"]["fields"]


@pytest.mark.parametrize("model", tenant_models(), ids=lambda m: m._meta.label)
def test_unscoped_queries_raise(model: type[models.Model], tenant_a: Tenant) -> None:
    FACTORIES[model](tenant_a.organization)
    manager = model._default_manager
    for query in (
        lambda: list(manager.all()),
        lambda: manager.count(),
        lambda: manager.filter(pk=1).exists(),
        lambda: manager.get(pk=1),
        lambda: manager.first(),
    ):
        with pytest.raises(TenantScopeError):
            query()


@pytest.mark.parametrize("model", tenant_models(), ids=lambda m: m._meta.label)
def test_scoped_queries_see_only_their_tenant(
    model: type[models.Model], tenant_a: Tenant, tenant_b: Tenant
) -> None:
    a = FACTORIES[model](tenant_a.organization)
    b = FACTORIES[model](tenant_b.organization)
    manager: Any = model._default_manager

    assert a.pk in set(manager.for_org(tenant_a.organization).values_list("pk", flat=True))
    assert b.pk not in set(manager.for_org(tenant_a.organization).values_list("pk", flat=True))
    with tenant_scope(tenant_b.organization):
        assert set(manager.values_list("pk", flat=True)) >= {b.pk}
        assert a.pk not in set(manager.values_list("pk", flat=True))
    assert {a.pk, b.pk} <= set(manager.dangerously_unscoped().values_list("pk", flat=True))
    assert list(manager.none()) == []


def test_related_managers_stay_within_the_instances_tenant(
    tenant_a: Tenant, tenant_b: Tenant
) -> None:
    number = make_phone_number(tenant_a.organization)
    make_phone_number(tenant_b.organization)
    assert list(tenant_a.organization.phonenumbers.all()) == [number]
    assert list(number.agent.phone_numbers.all()) == [number]


def test_for_org_refuses_a_missing_organization(db: Any) -> None:
    with pytest.raises(TenantScopeError):
        _model("agent").objects.for_org(None)  # type: ignore[attr-defined]


def test_prefetching_across_organizations_keeps_each_ones_rows(
    tenant_a: Tenant, tenant_b: Tenant
) -> None:
    agent_a, agent_b = make_agent(tenant_a.organization), make_agent(tenant_b.organization)
    orgs = Organization.objects.filter(
        pk__in=[tenant_a.organization.pk, tenant_b.organization.pk]
    ).prefetch_related("agents")
    assert {org.pk: [a.pk for a in org.agents.all()] for org in orgs} == {
        tenant_a.organization.pk: [agent_a.pk],
        tenant_b.organization.pk: [agent_b.pk],
    }
