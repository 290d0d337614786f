"""Stripe, through the official SDK: customers, Checkout, the billing portal, meters.

Self-hosted mode is the absence of ``STRIPE_SECRET_KEY``: then nothing here is called and
plans, usage and limits work from the database alone. ``STRIPE_API_BASE`` points the SDK
elsewhere (tests: a fake Stripe on 127.0.0.1).
"""

from __future__ import annotations

import logging
import math

import stripe
from django.conf import settings
from django.utils import timezone

from billing.models import CallUsage, Plan, Subscription
from tenants.models import Organization

logger = logging.getLogger(__name__)


class BillingNotConfigured(Exception):
    """Stripe is not configured (self-hosted mode), or the plan is not sold through it."""


def stripe_enabled() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def _client() -> stripe.StripeClient:
    if not stripe_enabled():
        raise BillingNotConfigured("Stripe is not configured.")
    base = settings.STRIPE_API_BASE
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": base, "meter_events": base},
        max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
    )


def stripe_customer_ensure(*, organization: Organization, subscription: Subscription) -> str:
    """The organization's Stripe customer id, created once (idempotent per organization)."""
    if subscription.stripe_customer_id:
        return subscription.stripe_customer_id
    customer = _client().v1.customers.create(
        params={
            "name": organization.name,
            "metadata": {"organization_id": str(organization.pk), "slug": organization.slug},
        },
        options={"idempotency_key": f"glassbox-customer-org-{organization.pk}"},
    )
    subscription.stripe_customer_id = customer.id
    subscription.save(update_fields=["stripe_customer_id", "updated"])
    return customer.id


def stripe_checkout_url(
    *,
    organization: Organization,
    subscription: Subscription,
    plan: Plan,
    success_url: str,
    cancel_url: str,
) -> str:
    """A Checkout session subscribing (or moving) the organization to ``plan``."""
    if not plan.stripe_price_id:
        raise BillingNotConfigured(f"Plan {plan.name} is not sold through Stripe.")
    customer = stripe_customer_ensure(organization=organization, subscription=subscription)
    session = _client().v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer,
            "client_reference_id": str(organization.pk),
            # A metered price takes no quantity.
            "line_items": [{"price": plan.stripe_price_id}],
            "subscription_data": {"metadata": {"organization_id": str(organization.pk)}},
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
    )
    return str(session.url)


def stripe_portal_url(
    *, organization: Organization, subscription: Subscription, return_url: str
) -> str:
    customer = stripe_customer_ensure(organization=organization, subscription=subscription)
    session = _client().v1.billing_portal.sessions.create(
        params={"customer": customer, "return_url": return_url}
    )
    return str(session.url)


def usage_billable_minutes(usage: CallUsage) -> int:
    """Minutes as billed: each call rounded up to the whole minute."""
    return math.ceil(usage.seconds / 60)


def usage_report(*, usage: CallUsage, subscription: Subscription | None) -> bool:
    """Send one call's minutes to Stripe's meter, once. True when Stripe has it (or it
    has nothing to hear: no Stripe customer, or a call with no billable minutes).

    The meter event's ``identifier`` is the call's, and so is the request's idempotency
    key: a retry after a lost answer is recognised by Stripe, never counted twice.
    Raises the SDK's errors for the task to retry.
    """
    if usage.stripe_reported_at is not None:
        return True
    minutes = usage_billable_minutes(usage)
    customer = subscription.stripe_customer_id if subscription is not None else ""
    if stripe_enabled() and customer and minutes > 0:
        try:
            _client().v1.billing.meter_events.create(
                params={
                    "event_name": settings.STRIPE_METER_EVENT_NAME,
                    "identifier": usage.meter_identifier,
                    "timestamp": int(usage.call.ended_at.timestamp())
                    if usage.call is not None and usage.call.ended_at
                    else int(usage.created.timestamp()),
                    "payload": {"stripe_customer_id": customer, "value": str(minutes)},
                },
                options={"idempotency_key": f"glassbox-meter-{usage.meter_identifier}"},
            )
        except stripe.InvalidRequestError as exc:
            # An identifier Stripe already has: reported before (our record was lost).
            if getattr(exc, "code", None) != "resource_already_exists":
                raise
    elif stripe_enabled() and minutes > 0:
        return False  # no customer yet: the reconciliation task tries again later
    usage.stripe_reported_at = timezone.now()
    usage.save(update_fields=["stripe_reported_at"])
    return True
