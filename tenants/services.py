from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from tenants.models import ApiKey, Membership, Organization, Role

KEY_SCHEME = "gb"


def hash_api_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedApiKey:
    api_key: ApiKey
    raw_key: str  # exists only in this return value; never stored, never logged


def _unique_slug(name: str) -> str:
    base = slugify(name)[:60] or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def organization_create(*, name: str, slug: str | None = None) -> Organization:
    return Organization.objects.create(name=name, slug=slug or _unique_slug(name))


def membership_create(
    *, organization: Organization, user: AbstractBaseUser, role: Role = Role.MEMBER
) -> Membership:
    membership, created = Membership.objects.for_org(organization).get_or_create(
        user=user, defaults={"role": role, "organization": organization}
    )
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def organization_create_with_owner(
    *, name: str, owner_email: str, slug: str | None = None
) -> tuple[Organization, AbstractBaseUser, IssuedApiKey]:
    organization = organization_create(name=name, slug=slug)
    user_model = get_user_model()
    owner = user_model.objects.filter(email__iexact=owner_email).first()
    if owner is None:
        # No password: the owner sets one through the usual reset flow (or an admin does).
        owner = user_model.objects.create_user(username=owner_email, email=owner_email)
    membership_create(organization=organization, user=owner, role=Role.OWNER)
    issued = api_key_create(organization=organization, name="Owner key", created_by=owner)
    return organization, owner, issued


def api_key_create(
    *, organization: Organization, name: str = "", created_by: AbstractBaseUser | None = None
) -> IssuedApiKey:
    prefix = secrets.token_hex(6)
    raw_key = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.for_org(organization).create(
        organization=organization,
        name=name,
        prefix=prefix,
        hashed_key=hash_api_key(raw_key),
        last4=raw_key[-4:],
        created_by=created_by,
    )
    return IssuedApiKey(api_key=api_key, raw_key=raw_key)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record use, at most once a minute: one write per request would be a hot row."""
    now = timezone.now()
    if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() >= 60:
        ApiKey.objects.for_org(api_key.organization).filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
