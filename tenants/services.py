from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, User
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.text import slugify

from tenants.models import (
    ApiKey,
    ApiKeyScope,
    AuditAction,
    AuditLogEntry,
    Invitation,
    Membership,
    Organization,
    Role,
)

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
    *, name: str, owner_email: str, slug: str | None = None, owner_password: str | None = None
) -> tuple[Organization, User, IssuedApiKey]:
    """A new organization, its owner (an existing user with that email, or a new one) and
    a first API key. A new owner without ``owner_password`` has no usable password until
    they follow a set-password link (``user_set_password_link``)."""
    organization = organization_create(name=name, slug=slug)
    user_model = get_user_model()
    owner = user_model.objects.filter(email__iexact=owner_email).first()
    if owner is None:
        owner = user_model.objects.create_user(
            username=owner_email, email=owner_email, password=owner_password
        )
    membership_create(organization=organization, user=owner, role=Role.OWNER)
    issued = api_key_create(organization=organization, name="Owner key", created_by=owner)
    return organization, owner, issued


def user_set_password_link(*, user: AbstractBaseUser, base_url: str) -> str:
    """A one-time link to the set-password page (Django's password-reset token: it stops
    working once the password changes, or after PASSWORD_RESET_TIMEOUT)."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    path = reverse("tenants:password-reset-confirm", kwargs={"uidb64": uid, "token": token})
    return base_url.rstrip("/") + path


def api_key_create(
    *,
    organization: Organization,
    name: str = "",
    created_by: AbstractBaseUser | None = None,
    scope: ApiKeyScope | str = ApiKeyScope.FULL,
) -> IssuedApiKey:
    prefix = secrets.token_hex(6)
    raw_key = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.for_org(organization).create(
        organization=organization,
        name=name,
        prefix=prefix,
        hashed_key=hash_api_key(raw_key),
        last4=raw_key[-4:],
        scope=ApiKeyScope(scope),
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


# --- Members and invitations -------------------------------------------------------------
# Who may do what is the dashboard's role table (docs/dashboard.md). The gate in
# tenants/web.py lets admins and owners reach these services; the owner-only rules and the
# last-owner rule live here, so they hold for every caller.


@dataclass(frozen=True, slots=True)
class IssuedInvitation:
    invitation: Invitation
    raw_token: str  # only in this return value and the email; stored as a hash


def hash_invitation_token(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


def _check_may_assign(*, actor: Membership, role: Role | str) -> None:
    if Role(role) == Role.OWNER and actor.role != Role.OWNER:
        raise ValidationError({"role": "Only an owner can make someone an owner."})
    if not Role(actor.role).at_least(Role.ADMIN):
        raise ValidationError("Only admins and owners can manage members.")


def _owners_locked(organization: Organization) -> int:
    # Lock the owner rows so two concurrent demotions can't both see "another owner left".
    owners = Membership.objects.for_org(organization).select_for_update().filter(role=Role.OWNER)
    return len(list(owners))


@transaction.atomic
def invitation_create(
    *, organization: Organization, email: str, role: Role | str, actor: Membership
) -> IssuedInvitation:
    """Invite ``email`` with ``role``; a pending invitation to the same address is
    replaced (its link stops working)."""
    _check_may_assign(actor=actor, role=role)
    email = get_user_model().objects.normalize_email(email.strip())
    already = Membership.objects.for_org(organization).filter(user__email__iexact=email).exists()
    if already:
        raise ValidationError({"email": f"{email} is already a member of {organization.name}."})
    now = timezone.now()
    Invitation.objects.for_org(organization).filter(
        email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=now)
    raw_token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.for_org(organization).create(
        organization=organization,
        email=email,
        role=Role(role),
        token_hash=hash_invitation_token(raw_token),
        invited_by=actor.user,
        expires_at=now + timedelta(seconds=settings.DASHBOARD_INVITATION_MAX_AGE_S),
    )
    return IssuedInvitation(invitation=invitation, raw_token=raw_token)


def invitation_send(*, issued: IssuedInvitation, accept_url: str) -> None:
    invitation = issued.invitation
    inviter = invitation.invited_by.email if invitation.invited_by else "An administrator"
    send_mail(
        subject=f"You're invited to {invitation.organization.name} on Glassbox",
        message=(
            f"{inviter} invited you to join {invitation.organization.name} on Glassbox "
            f"as {invitation.role}.\n\nAccept the invitation here (the link works once, "
            f"until {invitation.expires_at:%Y-%m-%d %H:%M} UTC):\n\n{accept_url}\n\n"
            "If you weren't expecting this, ignore this email."
        ),
        from_email=None,
        recipient_list=[invitation.email],
    )


def invitation_revoke(*, invitation: Invitation) -> Invitation:
    if invitation.revoked_at is None and invitation.accepted_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
    return invitation


@transaction.atomic
def invitation_accept(
    *, invitation: Invitation, user: AbstractBaseUser | None = None, password: str | None = None
) -> Membership:
    """Join the organization: as ``user`` (an existing account with the invited email) or,
    with ``password``, as a new account for the invited email."""
    locked = Invitation.objects.for_org(invitation.organization).select_for_update()
    invitation = locked.get(pk=invitation.pk)
    if not invitation.is_pending:
        raise ValidationError("This invitation has expired, was revoked or was already used.")
    user_model = get_user_model()
    if user is None:
        # Usernames are emails too: either match means the account exists.
        taken = user_model.objects.filter(
            Q(email__iexact=invitation.email) | Q(username__iexact=invitation.email)
        )
        if taken.exists():
            raise ValidationError("An account with this email exists: log in to accept.")
        user = user_model.objects.create_user(
            username=invitation.email, email=invitation.email, password=password
        )
    elif (getattr(user, "email", "") or "").lower() != invitation.email.lower():
        raise ValidationError(f"This invitation is for {invitation.email}.")
    existing = Membership.objects.for_org(invitation.organization).filter(user=user).first()
    if existing is not None:
        membership = existing  # never downgrade someone through an old invitation
    else:
        membership = membership_create(
            organization=invitation.organization, user=user, role=Role(invitation.role)
        )
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    return membership


@transaction.atomic
def membership_change_role(
    *, membership: Membership, role: Role | str, actor: Membership
) -> Membership:
    role = Role(role)
    if membership.role == role:
        return membership
    _check_may_assign(actor=actor, role=role)
    if membership.role == Role.OWNER:
        if actor.role != Role.OWNER:
            raise ValidationError({"role": "Only an owner can change an owner's role."})
        if _owners_locked(membership.organization) <= 1:
            raise ValidationError(
                {"role": "This is the last owner: make someone else an owner first."}
            )
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: Membership) -> None:
    if not Role(actor.role).at_least(Role.ADMIN):
        raise ValidationError("Only admins and owners can remove members.")
    if membership.role == Role.OWNER:
        if actor.role != Role.OWNER:
            raise ValidationError("Only an owner can remove an owner.")
        if _owners_locked(membership.organization) <= 1:
            raise ValidationError(
                "This is the last owner of the organization and can't be removed."
            )
    membership.delete()


# -- data settings and the audit log --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a dashboard user, an API key, or the platform itself (both None)."""

    user: AbstractBaseUser | None = None
    api_key: ApiKey | None = None

    @classmethod
    def of_request(cls, auth: object) -> Actor:
        """The API key a request authenticated with (``request.auth``)."""
        return cls(api_key=auth if isinstance(auth, ApiKey) else None)

    @property
    def label(self) -> str:
        if self.api_key is not None:
            return f"API key {self.api_key.name or ''} ({self.api_key.masked})".replace("  ", " ")
        if self.user is not None:
            return str(getattr(self.user, "email", "") or self.user.get_username())
        return "Glassbox (automatic)"


PLATFORM = Actor()


def audit_record(
    *,
    organization: Organization,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str | int = "",
    detail: Mapping[str, object] | None = None,
) -> AuditLogEntry:
    return AuditLogEntry.objects.for_org(organization).create(
        organization=organization,
        actor_user=actor.user if isinstance(actor.user, User) else None,
        actor_api_key=actor.api_key,
        actor=actor.label[:200],
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        detail=dict(detail or {}),
    )


DATA_SETTINGS = ("recording_retention_days", "transcript_retention_days", "redact_transcripts")


def organization_data_settings_update(
    *, organization: Organization, actor: Actor, data: dict[str, object]
) -> Organization:
    """Retention and redaction; each change is in the audit log (old and new values)."""
    changes = {
        name: {"from": getattr(organization, name), "to": value}
        for name, value in data.items()
        if name in DATA_SETTINGS and getattr(organization, name) != value
    }
    if not changes:
        return organization
    with transaction.atomic():
        for name, change in changes.items():
            setattr(organization, name, change["to"])
        organization.save(update_fields=list(changes))
        audit_record(
            organization=organization,
            actor=actor,
            action=AuditAction.SETTINGS_UPDATED,
            target_type="organization",
            target_id=organization.pk,
            detail=changes,
        )
    return organization
