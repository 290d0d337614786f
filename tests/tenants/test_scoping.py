from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import connections

from agents.models import Agent, Tool
from glassbox.api.views import TenantCRUDViewSet
from tenants.scoping import (
    TenantScopeError,
    current_organization,
    dangerously_unscoped_context,
    tenant_models,
    tenant_scope,
)
from tests.conftest import Tenant
from tests.factories import FACTORIES, make_agent, make_credential, make_tool


def test_api_base_class_refuses_get_queryset_overrides() -> None:
    with pytest.raises(TypeError, match="safely_get_queryset"):

        class Leaky(TenantCRUDViewSet):
            model = Agent

            def get_queryset(self) -> Any:
                return Agent.objects.dangerously_unscoped()


def test_api_base_class_refuses_get_object_overrides() -> None:
    with pytest.raises(TypeError, match="access_object"):

        class Leaky(TenantCRUDViewSet):
            model = Agent

            def get_object(self) -> Any:
                return None


def test_scope_contexts_reset_on_exit(tenant_a: Tenant) -> None:
    with tenant_scope(tenant_a.organization):
        assert current_organization() == tenant_a.organization
        with dangerously_unscoped_context():
            assert current_organization() is None
        assert current_organization() == tenant_a.organization
    assert current_organization() is None
    with pytest.raises(TenantScopeError):
        Agent.objects.count()


@pytest.mark.django_db(transaction=True)
async def test_scope_is_per_task_and_follows_sync_to_async(
    tenant_a: Tenant, tenant_b: Tenant
) -> None:
    await sync_to_async(make_agent)(tenant_a.organization)
    await sync_to_async(make_agent)(tenant_b.organization)

    async def count_in(org: Any) -> int:
        with tenant_scope(org):
            await asyncio.sleep(0)  # let the other task run inside its own scope
            return await sync_to_async(Agent.objects.count)()

    counts = await asyncio.gather(count_in(tenant_a.organization), count_in(tenant_b.organization))
    assert counts == [1, 1]
    with pytest.raises(TenantScopeError):
        await sync_to_async(Agent.objects.count)()
    # The worker thread opened its own connection; close it so the test DB can be dropped.
    await sync_to_async(connections.close_all)()


def test_model_uniqueness_checks_work_without_a_scope(tenant_a: Tenant) -> None:
    # full_clean() checks uniqueness through the default manager; it must not raise.
    make_agent(tenant_a.organization).full_clean()
    make_tool(tenant_a.organization).full_clean()
    duplicate = Tool(organization=tenant_a.organization, name="dupe", kind="end_call")
    make_tool(tenant_a.organization, name="dupe")
    with pytest.raises(ValidationError):
        duplicate.full_clean()


def test_deleting_an_organization_removes_everything_it_owns(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    for factory in FACTORIES.values():
        factory(org)
    make_agent(org, llm={"provider": "openai"}, llm_credential=make_credential(org, "openai"))
    org.delete()
    for model in tenant_models():
        assert not model.objects.dangerously_unscoped().filter(organization_id=org.pk).exists()
