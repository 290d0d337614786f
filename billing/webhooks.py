"""Stripe's webhook: ``POST /api/stripe/webhook/``.

Verified with the SDK's signature check (``Stripe-Signature``, HMAC-SHA256 over
``t.body``, within ``STRIPE_WEBHOOK_TOLERANCE_S``); a forged or stale signature is a 400.
Each event id is processed once, in the same transaction as its effect, so a replay does
nothing and a failure leaves it for Stripe's retry.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import stripe
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing import services
from billing.models import Subscription
from glassbox.api.errors import error_body

logger = logging.getLogger(__name__)

SUBSCRIPTION_EVENTS = {
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
}


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status)


def _subscription_for_customer(customer: Any) -> Subscription | None:
    # The customer id *determines* the tenant (we created it for one organization).
    if not isinstance(customer, str) or not customer:
        return None
    return (
        Subscription.objects.dangerously_unscoped()
        .select_for_update()
        .filter(stripe_customer_id=customer)
        .first()
    )


def _handle(event_type: str, obj: dict[str, Any]) -> None:
    subscription = _subscription_for_customer(obj.get("customer"))
    if subscription is None:
        logger.warning("stripe webhook: %s for an unknown customer", event_type)
        return
    if event_type in SUBSCRIPTION_EVENTS:
        services.subscription_sync_from_stripe(
            subscription=subscription,
            data=obj,
            deleted=event_type == "customer.subscription.deleted",
        )
    elif event_type == "invoice.paid":
        services.subscription_invoice_paid(subscription=subscription)
    elif event_type == "invoice.payment_failed":
        services.subscription_payment_failed(subscription=subscription)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    if not settings.STRIPE_WEBHOOK_SECRET:
        return _error(404, "not_found", "Stripe webhooks are not configured.")
    payload = request.body.decode("utf-8", errors="replace")
    try:
        stripe.WebhookSignature.verify_header(
            payload,
            request.headers.get("Stripe-Signature", ""),
            settings.STRIPE_WEBHOOK_SECRET,
            tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_S,
        )
    except stripe.SignatureVerificationError:
        return _error(400, "invalid_signature", "Invalid Stripe-Signature.")
    try:
        event = json.loads(payload)
    except ValueError:
        return _error(400, "invalid", "The body is not a Stripe event.")
    event_id = event.get("id") if isinstance(event, dict) else None
    event_type = event.get("type") if isinstance(event, dict) else None
    data = event.get("data") if isinstance(event, dict) else None
    obj = data.get("object") if isinstance(data, dict) else None
    if (
        not isinstance(event_id, str)
        or not isinstance(event_type, str)
        or not isinstance(obj, dict)
    ):
        return _error(400, "invalid", "The body is not a Stripe event.")
    with transaction.atomic():
        if not services.stripe_event_claim(event_id=event_id, event_type=event_type):
            return HttpResponse(status=200)  # a replay: already done
        _handle(event_type, obj)
    return HttpResponse(status=200)
