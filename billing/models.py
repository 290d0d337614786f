"""Plans, subscriptions, per-call usage, concurrency leases and Stripe's events.

A plan is the operator's (not tenant-owned); each organization has at most one
subscription naming its plan, status and period. Usage is kept per call (``CallUsage``)
and aggregated per organization, agent and day when read, so one row says both what a
call used and whether it reached Stripe.
"""

from __future__ import annotations

from django.db import models

from tenants.scoping import TenantModel


class Plan(models.Model):
    name = models.CharField(max_length=64, unique=True)
    # Minutes a period includes; beyond them each minute costs the overage price
    # (Stripe's price does the charging; this number is shown and used for notices).
    included_minutes = models.PositiveIntegerField(default=0)
    overage_cents_per_minute = models.PositiveIntegerField(default=0)
    # Hard limits; empty means unlimited.
    max_concurrent_calls = models.PositiveIntegerField(null=True, blank=True)
    max_minutes_per_period = models.PositiveIntegerField(null=True, blank=True)
    max_agents = models.PositiveIntegerField(null=True, blank=True)
    max_numbers = models.PositiveIntegerField(null=True, blank=True)
    features = models.JSONField(default=list, blank=True)
    # Stripe: the recurring (metered) price Checkout subscribes to; empty = not sold there.
    stripe_price_id = models.CharField(max_length=255, blank=True)
    # The plan an organization without a subscription is on (at most one).
    is_default = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(
                fields=("is_default",),
                condition=models.Q(is_default=True),
                name="plan_one_default",
            )
        ]

    def __str__(self) -> str:
        return self.name


class SubscriptionStatus(models.TextChoices):
    # Stripe's subscription statuses we act on, plus "suspended" (grace period over).
    ACTIVE = "active"
    TRIALING = "trialing"
    PAST_DUE = "past_due"
    SUSPENDED = "suspended"
    CANCELED = "canceled"


class Subscription(TenantModel):
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(
        max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    # Payment failed: calls keep flowing until then, and are refused after.
    grace_until = models.DateTimeField(null=True, blank=True)
    # Usage notices already sent, e.g. "2026-12-01:included:80" (period start, limit, %).
    notices_sent = models.JSONField(default=list, blank=True)
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    stripe_subscription_id = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("organization",), name="subscription_one_per_org")
        ]

    def __str__(self) -> str:
        return f"{self.organization_id}: {self.plan_id} ({self.status})"


class CallUsage(TenantModel):
    """What one finalized call used, and whether Stripe has heard of it."""

    # Usage outlives its call: deleting a call (a tenant's data-deletion request) keeps
    # what it used, so minutes already spent still count against the plan.
    call = models.OneToOneField(
        "calls.Call", null=True, blank=True, on_delete=models.SET_NULL, related_name="usage"
    )
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="usage"
    )
    day = models.DateField()
    direction = models.CharField(max_length=8)
    seconds = models.PositiveIntegerField(default=0)
    stt_seconds = models.FloatField(default=0.0)
    llm_prompt_tokens = models.PositiveIntegerField(default=0)
    llm_completion_tokens = models.PositiveIntegerField(default=0)
    tts_characters = models.PositiveIntegerField(default=0)
    # post-call analysis (calls/analysis.py), added when it is done: after the call's usage
    analysis_prompt_tokens = models.PositiveIntegerField(default=0)
    analysis_completion_tokens = models.PositiveIntegerField(default=0)
    # Stripe Billing Meters: the meter event's identifier makes a retried report a no-op.
    stripe_reported_at = models.DateTimeField(null=True, blank=True)
    stripe_attempts = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-day", "-id")
        indexes = [
            models.Index(fields=("organization", "day")),
            models.Index(
                fields=("stripe_reported_at",),
                name="callusage_unreported",
                condition=models.Q(stripe_reported_at__isnull=True),
            ),
        ]

    @property
    def minutes(self) -> float:
        return self.seconds / 60

    @property
    def meter_identifier(self) -> str:
        # A call deleted before its usage reached Stripe is named by the usage row.
        return f"call-{self.call_id}" if self.call_id is not None else f"usage-{self.pk}"


class CallLease(TenantModel):
    """A concurrency slot held by a live call, when Redis is not configured.

    Counted under a row lock on the organization's subscription; a lease that is not
    refreshed expires, so a process that dies mid-call frees its slots.
    """

    call_key = models.CharField(max_length=96, unique=True)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=("organization", "expires_at"))]


class StripeEvent(models.Model):
    """A processed Stripe webhook event: the id makes a replay do nothing."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=128)
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"
