from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from tenants.scoping import TenantModel


class Organization(models.Model):
    """A tenant. Not itself tenant-owned: it *is* the scope."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    is_active = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    # Data retention, in days after a call started; empty keeps data forever. A beat task
    # (calls.tasks.calls_retention_purge) deletes what is older.
    recording_retention_days = models.PositiveIntegerField(null=True, blank=True)
    transcript_retention_days = models.PositiveIntegerField(null=True, blank=True)
    # Redact emails, card numbers (Luhn) and phone numbers from transcripts before they
    # are stored, and from what post-call analysis sends to a model (calls/redaction.py).
    redact_transcripts = models.BooleanField(default=False)

    class Meta:
        ordering = ("name", "id")

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"

    @property
    def rank(self) -> int:
        """Higher can do more: viewer 0 < member 1 < admin 2 < owner 3."""
        return ROLE_RANK[self]

    def at_least(self, minimum: Role | str) -> bool:
        return self.rank >= ROLE_RANK[Role(minimum)]


ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Membership(TenantModel):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("organization_id", "id")
        constraints = [
            models.UniqueConstraint(
                fields=("organization", "user"), name="membership_unique_org_user"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization_id} as {self.role}"


class ApiKeyScope(models.TextChoices):
    FULL = "full", "Full access"
    READ_ONLY = "read_only", "Read only"


class ApiKey(TenantModel):
    """A bearer credential for one organization.

    The key itself is shown once. We keep ``prefix`` (public, indexed, for the lookup),
    ``hashed_key`` (sha256 of the whole key: the key has 256 bits of entropy, so a fast
    hash is enough, unlike a password) and ``last4`` for a masked display.
    """

    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    hashed_key = models.CharField(max_length=64, unique=True)
    last4 = models.CharField(max_length=4)
    # read_only: safe methods (GET, HEAD, OPTIONS) only; anything else is a 403.
    scope = models.CharField(max_length=16, choices=ApiKeyScope.choices, default=ApiKeyScope.FULL)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created", "-id")

    def __str__(self) -> str:
        return f"{self.name or 'API key'} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"gb_{self.prefix}_…{self.last4}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class Invitation(TenantModel):
    """An emailed invitation to join an organization with a role.

    Like API keys, the link's token is stored only as a sha256 hash: the email holds the
    only copy. Accepting creates (or updates) the membership and stamps ``accepted_at``.
    """

    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created", "-id")

    def __str__(self) -> str:
        return f"{self.email} to {self.organization_id} as {self.role}"

    @property
    def is_pending(self) -> bool:
        unused = self.accepted_at is None and self.revoked_at is None
        return unused and self.expires_at > timezone.now()


class AuditAction(models.TextChoices):
    CALL_DELETED = "call.deleted"
    RETENTION_PURGED = "retention.purged"
    SETTINGS_UPDATED = "organization.updated"


class AuditLogEntry(TenantModel):
    """Who did what to which of the organization's data, and when. Rows are only added.

    The actor is a dashboard user or an API key (by its masked form, which stays readable
    after the key is revoked); neither for the platform's own jobs (retention).
    """

    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.CharField(max_length=200, help_text="How the actor read at the time.")
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    target_type = models.CharField(max_length=32)
    target_id = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("-created", "-id")
        indexes = [models.Index(fields=("organization", "-created"))]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.target_type} {self.target_id}"
