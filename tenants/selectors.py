from __future__ import annotations

import hmac

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.http import Http404

from tenants.models import ApiKey, Membership, Organization
from tenants.services import KEY_SCHEME, hash_api_key


def _is_hex12(value: str) -> bool:
    return len(value) == 12 and all(c in "0123456789abcdef" for c in value)


def api_key_list(*, organization: Organization) -> QuerySet[ApiKey]:
    return ApiKey.objects.for_org(organization)


def access_api_key(*, organization: Organization, api_key_id: int) -> ApiKey:
    """The organization's key, or Http404 — identical for "missing" and "not yours"."""
    try:
        return ApiKey.objects.for_org(organization).get(pk=api_key_id)
    except (ApiKey.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404("No such API key.") from exc


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key for ``raw_key``, or None.

    This lookup is what *establishes* the tenant, so it necessarily runs unscoped.
    """
    scheme, _, rest = raw_key.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or not _is_hex12(prefix) or not secret:
        return None
    api_key = (
        ApiKey.objects.dangerously_unscoped()
        .select_related("organization")
        .filter(prefix=prefix, revoked_at__isnull=True, organization__is_active=True)
        .first()
    )
    if api_key is None or not hmac.compare_digest(api_key.hashed_key, hash_api_key(raw_key)):
        return None
    return api_key


def membership_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Membership]:
    """The user's memberships in active organizations, for the org switcher.

    Like the API-key lookup, this is what *establishes* the tenant for a dashboard
    session, so it runs unscoped, filtered by the user instead.
    """
    return (
        Membership.objects.dangerously_unscoped()
        .select_related("organization")
        .filter(user=user, organization__is_active=True)
        .order_by("organization__name", "organization_id")
    )


def membership_for_user(*, user: AbstractBaseUser, organization_id: object) -> Membership | None:
    """The user's membership in that organization, or None (also for a malformed id)."""
    try:
        org_id = int(str(organization_id))
    except (TypeError, ValueError):
        return None
    return membership_list_for_user(user=user).filter(organization_id=org_id).first()
