"""The dashboard's organization and role context: one gate for every page.

A dashboard page is a view wrapped in :func:`org_required` (functions) or built on
:class:`OrgRequiredMixin` (classes). The gate, on every request:

- sends an anonymous visitor to ``/login/?next=...``;
- finds the session's current organization among the user's memberships (checked on every
  request, so a removed member loses access at once; the session only remembers a choice);
- answers 403 when the member's role is below the page's ``min_role`` for reads (GET,
  HEAD, OPTIONS) or below its ``write_role`` for anything else (viewers never write);
- sets ``request.organization`` and ``request.membership`` and runs the view inside
  ``tenant_scope(organization)``, so a query that forgets ``for_org`` is still scoped.

Objects are still fetched with the same ``access_<entity>(organization=..., ...)``
selectors the API uses, so another organization's object is the same 404 as a missing one.

Each gated view carries ``dashboard_access`` (an :class:`Access`); the role-matrix test
walks the URL conf and checks every such route against every role.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast

from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django_htmx.middleware import HtmxDetails

from tenants.models import ROLE_RANK, Membership, Organization, Role
from tenants.scoping import tenant_scope
from tenants.selectors import membership_for_user, membership_list_for_user

SESSION_ORG_KEY = "organization_id"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

View = Callable[..., HttpResponse]
_AnyView = TypeVar("_AnyView", bound=Callable[..., HttpResponseBase])


class OrgRequest(HttpRequest):
    """The request a gated view receives: the gate has checked the user is logged in and a
    member, and set ``organization`` and ``membership``; django-htmx's middleware sets
    ``htmx`` on every request. Annotate gated views with it."""

    htmx: HtmxDetails
    user: User
    organization: Organization
    membership: Membership


@dataclass(frozen=True, slots=True)
class Access:
    """Who may use a page: ``min_role`` to read it, ``write_role`` to send it a form."""

    min_role: Role
    write_role: Role

    def allows(self, role: Role | str, method: str) -> bool:
        needed = self.min_role if method.upper() in SAFE_METHODS else self.write_role
        return Role(role).at_least(needed)


def make_access(min_role: Role | str = Role.VIEWER, write_role: Role | str | None = None) -> Access:
    minimum = Role(min_role)
    # Viewers are read-only everywhere: a page cannot accidentally let them write.
    default_write = minimum if minimum.at_least(Role.MEMBER) else Role.MEMBER
    write = Role(write_role) if write_role is not None else default_write
    if not write.at_least(minimum):
        raise ValueError(f"write_role {write} is below min_role {minimum}.")
    return Access(min_role=minimum, write_role=write)


def current_membership(request: HttpRequest) -> Membership | None:
    """The logged-in user's membership in the session's organization (falling back to the
    first organization they belong to), or None for a user with no organization."""
    user = request.user
    if not user.is_authenticated:
        return None
    membership = None
    chosen = request.session.get(SESSION_ORG_KEY)
    if chosen is not None:
        membership = membership_for_user(user=user, organization_id=chosen)
    if membership is None:
        membership = membership_list_for_user(user=user).first()
        if membership is not None:
            request.session[SESSION_ORG_KEY] = membership.organization_id
        elif chosen is not None:
            del request.session[SESSION_ORG_KEY]
    return membership


def organization_switch(request: HttpRequest, *, organization_id: object) -> Membership | None:
    """Make ``organization_id`` the session's organization, if the user belongs to it."""
    user = request.user
    if not user.is_authenticated:
        return None
    membership = membership_for_user(user=user, organization_id=organization_id)
    if membership is not None:
        request.session[SESSION_ORG_KEY] = membership.organization_id
    return membership


def _gate(request: HttpRequest, access: Access) -> HttpResponse | Membership:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    membership = current_membership(request)
    if membership is None:
        return render(request, "tenants/no_organization.html", status=403)
    # Set before the role check so a 403 page still shows the layout and switcher. Setting
    # them is what makes this request an OrgRequest.
    gated = cast(OrgRequest, request)
    gated.membership = membership
    gated.organization = membership.organization
    if not access.allows(membership.role, request.method or "GET"):
        raise PermissionDenied("Your role does not allow this.")
    return membership


def org_required(
    view: View | None = None,
    *,
    min_role: Role | str = Role.VIEWER,
    write_role: Role | str | None = None,
) -> Any:
    """Gate a function view: ``@org_required`` or ``@org_required(min_role=Role.ADMIN)``.

    ``write_role`` (for POST, PUT, PATCH, DELETE) defaults to ``min_role``, and never
    below ``member``.
    """
    access = make_access(min_role, write_role)

    def decorate(fn: View) -> View:
        @functools.wraps(fn)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            gated = _gate(request, access)
            if isinstance(gated, HttpResponse):
                return gated
            with tenant_scope(gated.organization):
                return fn(request, *args, **kwargs)

        wrapper.dashboard_access = access  # type: ignore[attr-defined]
        return wrapper

    return decorate(view) if view is not None else decorate


class OrgRequiredMixin:
    """The class-based form of :func:`org_required`: set ``min_role`` / ``write_role``."""

    min_role: ClassVar[Role | str] = Role.VIEWER
    write_role: ClassVar[Role | str | None] = None
    dashboard_access: ClassVar[Access]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.dashboard_access = make_access(cls.min_role, cls.write_role)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        gated = _gate(request, self.dashboard_access)
        if isinstance(gated, HttpResponse):
            return gated
        with tenant_scope(gated.organization):
            # A mixin: the View class after it in the MRO has dispatch; mypy cannot know.
            return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


def public_page(view: _AnyView) -> _AnyView:
    """Mark a page that is deliberately not behind ``org_required`` (login, password reset,
    invitation links). The role-matrix test fails for a page route that is neither."""
    view.dashboard_public = True  # type: ignore[attr-defined]
    return view


def form_add_service_errors(form: Any, error: ValidationError) -> None:
    """Put a service's ValidationError on the form: field errors beside their fields
    (when the form has that field), everything else at the top (the error summary)."""
    if hasattr(error, "error_dict"):
        for field, messages in error.message_dict.items():
            form.add_error(field if field in form.fields else None, messages)
    else:
        form.add_error(None, error.messages)


def view_access(callback: Any) -> Access | None:
    """The :class:`Access` a URL pattern's callback declares, or None (not a gated page)."""
    access = getattr(callback, "dashboard_access", None)
    if access is None:
        access = getattr(getattr(callback, "view_class", None), "dashboard_access", None)
    return access if isinstance(access, Access) else None


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    """Template context for the layout: the organization, the switcher, role flags.

    Gated pages have ``request.membership`` from the gate. Other pages shown to a
    logged-in user (password change, 404s) look it up too, so they keep the navigation;
    anonymous visitors cost no query.
    """
    membership: Membership | None = getattr(request, "membership", None)
    user = getattr(request, "user", None)
    if membership is None and user is not None and user.is_authenticated:
        membership = current_membership(request)
    if membership is None:
        return {}
    role = Role(membership.role)
    organization: Organization = membership.organization

    def switchable() -> list[Membership]:
        user = request.user
        if not user.is_authenticated:  # not reached: a membership implies a logged-in user
            return []
        return list(membership_list_for_user(user=user))

    return {
        "organization": organization,
        "membership": membership,
        "role": role,
        "role_rank": ROLE_RANK[role],
        # What the page may offer; the gate enforces it again on the request itself.
        "can_write": role.at_least(Role.MEMBER),
        "can_admin": role.at_least(Role.ADMIN),
        "is_owner": role == Role.OWNER,
        "user_memberships": switchable,
    }
