"""Tenant scoping that fails closed.

Every tenant-owned model uses :class:`TenantManager` as its default manager. Asking it for
rows without naming an organization raises :class:`TenantScopeError` instead of silently
returning every tenant's rows. Ways to name the organization:

- ``Agent.objects.for_org(org)`` — the normal path, used by selectors and services;
- ``with tenant_scope(org): Agent.objects.all()`` — a ContextVar (follows asyncio tasks and
  ``sync_to_async``, unlike thread-locals), always reset on exit;
- a related manager (``agent.tools.all()``, ``organization.agents.all()``): bound to an
  instance that was itself reached through a scoped path. Services only ever link rows of
  the same organization, so the relation cannot cross tenants.

Platform maintenance (Django admin, data migrations, the API-key lookup that *determines*
the organization) uses ``Agent.objects.dangerously_unscoped()`` or
``dangerously_unscoped_context()``; grep for "dangerously" to audit them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import models

if TYPE_CHECKING:
    from tenants.models import Organization


class TenantScopeError(RuntimeError):
    """A tenant-owned model was queried without an organization."""


class _Unscoped(enum.Enum):
    UNSCOPED = "unscoped"


_UNSCOPED = _Unscoped.UNSCOPED
_current: ContextVar[Organization | _Unscoped | None] = ContextVar(
    "glassbox_tenant_scope", default=None
)


@contextmanager
def tenant_scope(organization: Organization) -> Iterator[None]:
    if organization is None or organization.pk is None:
        raise TenantScopeError("tenant_scope() needs a saved Organization.")
    token = _current.set(organization)
    try:
        yield
    finally:
        _current.reset(token)


@contextmanager
def dangerously_unscoped_context() -> Iterator[None]:
    """Let every tenant manager return all tenants' rows inside this block (admin only)."""
    token = _current.set(_UNSCOPED)
    try:
        yield
    finally:
        _current.reset(token)


def current_organization() -> Organization | None:
    scope = _current.get()
    return None if scope is _UNSCOPED else scope


class TenantManager(models.Manager):
    def get_queryset(self) -> models.QuerySet[Any]:
        qs = super().get_queryset()
        scope = _current.get()
        if scope is _UNSCOPED:
            return qs
        # Django builds related managers (org.agents, agent.tools) by subclassing the
        # default manager and setting ``instance``: the relation to an instance that was
        # itself fetched through a scoped path is the scope. Not adding an organization
        # filter here keeps prefetch_related correct across several instances.
        if getattr(self, "instance", None) is not None:
            return qs
        if scope is None:
            name = self.model.__name__
            raise TenantScopeError(
                f"{name}.objects was queried without an organization. Use "
                f"{name}.objects.for_org(organization), run inside tenant_scope(organization), "
                f"or (platform maintenance only) {name}.objects.dangerously_unscoped()."
            )
        return qs.filter(organization=scope)

    def for_org(self, organization: Organization) -> models.QuerySet[Any]:
        if organization is None or getattr(organization, "pk", None) is None:
            raise TenantScopeError(
                f"{self.model.__name__}.objects.for_org() needs an organization."
            )
        return super().get_queryset().filter(organization=organization)

    def none(self) -> models.QuerySet[Any]:
        # An empty queryset cannot leak; schema generation and empty defaults use it.
        return super().get_queryset().none()

    def dangerously_unscoped(self) -> models.QuerySet[Any]:
        """Every tenant's rows. For the admin, maintenance commands and auth lookups."""
        return super().get_queryset()


class TenantModel(models.Model):
    """Base for every tenant-owned row."""

    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="%(class)ss"
    )

    objects = TenantManager()

    class Meta:
        abstract = True

    def clean(self) -> None:
        # Services never link rows of different organizations; forms that are not the API
        # (the admin's raw id fields) are held to the same rule here.
        errors = {}
        for field in self._meta.concrete_fields:
            if not field.is_relation or field.name == "organization":
                continue
            target = getattr(self, field.name, None)
            target_org = getattr(target, "organization_id", None)
            if target_org is not None and target_org != self.organization_id:
                errors[field.name] = "Belongs to another organization."
        if errors:
            raise ValidationError(errors)

    # Django's uniqueness checks query ``_default_manager``. Uniqueness here is a
    # platform-wide property (a phone number is unique across tenants), so these checks
    # must see every row; they only ever answer "taken or not".
    def validate_unique(self, exclude: Any = None) -> None:
        with dangerously_unscoped_context():
            super().validate_unique(exclude=exclude)

    def validate_constraints(self, exclude: Any = None) -> None:
        with dangerously_unscoped_context():
            super().validate_constraints(exclude=exclude)


def tenant_models() -> list[type[models.Model]]:
    """Every installed model that has an ``organization`` field."""
    from django.apps import apps

    return [
        m for m in apps.get_models() if any(f.name == "organization" for f in m._meta.get_fields())
    ]
