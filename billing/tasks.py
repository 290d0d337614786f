from __future__ import annotations

import logging
from datetime import timedelta

import stripe
from celery import shared_task
from django.db.models import F
from django.utils import timezone

from billing import services
from billing.models import CallUsage, Subscription
from billing.stripe_api import stripe_enabled, usage_report
from tenants.models import Organization

logger = logging.getLogger(__name__)

# Stripe being down, slow or rate-limiting is worth retrying; a bad request is not.
RETRYABLE = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError, OSError)


@shared_task(
    name="billing.tasks.usage_report",
    acks_late=True,
    autoretry_for=RETRYABLE,
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=8,
)
def usage_report_task(*, organization_id: int, usage_id: int) -> bool:
    """One call's minutes to Stripe's meter, right after the call."""
    if not stripe_enabled():
        return False
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        return False
    usage = (
        CallUsage.objects.for_org(organization).select_related("call").filter(pk=usage_id).first()
    )
    if usage is None:
        return False
    CallUsage.objects.for_org(organization).filter(pk=usage_id).update(
        stripe_attempts=F("stripe_attempts") + 1
    )
    subscription = Subscription.objects.for_org(organization).first()
    return usage_report(usage=usage, subscription=subscription)


@shared_task(name="billing.tasks.usage_reconcile")
def usage_reconcile_task(*, older_than_s: float = 900.0, batch: int = 500) -> int:
    """Report what was not reported (Stripe down past the retries, a lost task message).

    A platform-wide job: finds unreported usage of every organization, hence unscoped.
    """
    if not stripe_enabled():
        return 0
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    pending = (
        CallUsage.objects.dangerously_unscoped()
        .filter(stripe_reported_at__isnull=True, created__lt=cutoff)
        .select_related("call", "organization")
        .order_by("id")[:batch]
    )
    reported = 0
    for usage in pending:
        subscription = Subscription.objects.for_org(usage.organization).first()
        try:
            if usage_report(usage=usage, subscription=subscription):
                reported += 1
        except stripe.InvalidRequestError as exc:
            # This one event is refused (e.g. older than Stripe accepts): say so, go on.
            logger.error("usage reconcile: Stripe refused call %s: %s", usage.call_id, exc)
        except stripe.StripeError as exc:
            logger.warning("usage reconcile: call %s not reported: %s", usage.call_id, exc)
            break  # Stripe is down or limiting: the next run goes on
    return reported


@shared_task(name="billing.tasks.subscriptions_suspend_overdue")
def subscriptions_suspend_overdue_task() -> int:
    return services.subscription_suspend_overdue()
