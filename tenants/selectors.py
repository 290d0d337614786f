from __future__ import annotations

import hmac

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from tenants.models import ApiKey, AuditLogEntry, Invitation, Membership, Organization
from tenants.services import KEY_SCHEME, hash_api_key, hash_invitation_token


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


def audit_log_list(*, organization: Organization) -> QuerySet[AuditLogEntry]:
    return AuditLogEntry.objects.for_org(organization).select_related("actor_user")


def access_audit_log_entry(*, organization: Organization, entry_id: int) -> AuditLogEntry:
    try:
        return AuditLogEntry.objects.for_org(organization).get(pk=entry_id)
    except (AuditLogEntry.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404("No such audit log entry.") from exc


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


def member_list(*, organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.for_org(organization)
        .select_related("user")
        .order_by("user__email", "id")
    )


def access_membership(*, organization: Organization, membership_id: object) -> Membership:
    try:
        return (
            Membership.objects.for_org(organization)
            .select_related("user", "organization")
            .get(pk=int(str(membership_id)))
        )
    except (Membership.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404("No such member.") from exc


def invitation_list_pending(*, organization: Organization) -> QuerySet[Invitation]:
    return (
        Invitation.objects.for_org(organization)
        .filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())
        .select_related("invited_by")
    )


def access_invitation(*, organization: Organization, invitation_id: object) -> Invitation:
    try:
        return Invitation.objects.for_org(organization).get(pk=int(str(invitation_id)))
    except (Invitation.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404("No such invitation.") from exc


def invitation_get_by_token(*, raw_token: str) -> Invitation | None:
    """The invitation a link's token names (pending or not), or None.

    The token is what *establishes* the organization for a visitor who may have no
    account yet, so this lookup runs unscoped, by the token's hash only.
    """
    if not raw_token or len(raw_token) > 100:
        return None
    return (
        Invitation.objects.dangerously_unscoped()
        .select_related("organization")
        .filter(token_hash=hash_invitation_token(raw_token), organization__is_active=True)
        .first()
    )
