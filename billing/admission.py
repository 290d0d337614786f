"""The plan, enforced when a call arrives (``CALL_ADMISSION_CHECKS``) and while it runs.

Order matters: the checks that only refuse (billing suspended, minutes used up) run
before the one that takes a concurrency slot, so a refused call never holds one.
"""

from __future__ import annotations

import logging

import redis
from django.utils import timezone

from billing import leases
from billing.models import Subscription, SubscriptionStatus
from billing.selectors import usage_seconds
from billing.services import subscription_ensure
from calls.admission import Refusal
from tenants.models import Organization

logger = logging.getLogger(__name__)

BUSY_LINE = "Sorry, all of our lines are busy right now. Please call again later."
QUOTA_LINE = "Sorry, this service has used all of its calling minutes for now. Goodbye."
BILLING_LINE = "Sorry, this service is unavailable because of a billing problem. Goodbye."


def call_key(*, carrier: str, call_sid: str) -> str:
    return f"{carrier}:{call_sid}"


def _billing_refusal(subscription: Subscription) -> Refusal | None:
    status = subscription.status
    overdue = (
        status == SubscriptionStatus.PAST_DUE
        and subscription.grace_until is not None
        and subscription.grace_until <= timezone.now()
    )
    if status == SubscriptionStatus.SUSPENDED or overdue:
        return Refusal(
            line=BILLING_LINE,
            detail="Billing suspended: payment failed and the grace period is over.",
        )
    if status == SubscriptionStatus.CANCELED:
        return Refusal(line=BILLING_LINE, detail="Billing: the subscription is canceled.")
    return None


def _minutes_refusal(organization: Organization, subscription: Subscription) -> Refusal | None:
    cap = subscription.plan.max_minutes_per_period
    if cap is None:
        return None
    used = usage_seconds(
        organization=organization,
        start=subscription.current_period_start.date(),
        end=subscription.current_period_end.date(),
    )
    if used < cap * 60:
        return None
    return Refusal(
        line=QUOTA_LINE,
        detail=(
            f"Monthly minutes cap reached: {used / 60:.1f} of {cap} minutes used on plan "
            f"{subscription.plan.name}."
        ),
    )


def plan_admission(organization: Organization, *, call_sid: str, carrier: str) -> Refusal | None:
    subscription = subscription_ensure(organization=organization)
    if subscription is None:  # no plans configured: nothing to enforce
        return None
    refusal = _billing_refusal(subscription) or _minutes_refusal(organization, subscription)
    if refusal is not None:
        return refusal
    limit = subscription.plan.max_concurrent_calls
    try:
        admitted = leases.lease_acquire(
            organization=organization,
            call_key=call_key(carrier=carrier, call_sid=call_sid),
            limit=limit,
        )
    except (redis.RedisError, OSError) as exc:
        # Fail open: a Redis outage must not turn every caller away. The limit is not
        # enforced until Redis answers again.
        logger.error("admission: concurrency store unavailable, admitting: %s", exc)
        return None
    if admitted:
        return None
    return Refusal(
        line=BUSY_LINE,
        detail=(
            f"Concurrent call limit reached: {limit} of {limit} calls in progress on plan "
            f"{subscription.plan.name}."
        ),
    )
