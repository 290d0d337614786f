"""Stripe through the official SDK against the fake Stripe: customers, Checkout, the
portal, meter events exactly once per call, and the signed webhook."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from billing import stripe_api
from billing.models import CallUsage, StripeEvent, Subscription, SubscriptionStatus
from billing.tasks import usage_reconcile_task, usage_report_task
from calls.models import Call
from calls.services import call_end
from tests.billing.conftest import WEBHOOK_SECRET, dial, new_sid, refusal_line
from tests.conftest import Tenant
from tests.factories import (
    make_call,
    make_call_usage,
    make_phone_number,
    make_plan,
    make_subscription,
)
from tests.fakes.stripe import FakeStripe, decode_form, sign
from voice.events import CallEnded, EndReason

WEBHOOK = "/api/stripe/webhook/"


def _customer(tenant: Tenant, **plan: Any) -> Subscription:
    subscription = make_subscription(tenant.organization, plan=make_plan(**plan))
    stripe_api.stripe_customer_ensure(organization=tenant.organization, subscription=subscription)
    return subscription


def _post_event(body: str, header: str | None) -> Any:
    extra = {"HTTP_STRIPE_SIGNATURE": header} if header is not None else {}
    return Client().post(WEBHOOK, body, content_type="application/json", **extra)


def _signed(fake: FakeStripe, type_: str, obj: dict[str, Any], **kw: Any) -> Any:
    body = fake.event(type_, obj, **kw)
    return _post_event(body, sign(body, WEBHOOK_SECRET))


def test_form_decoding_matches_the_sdk_encoding() -> None:
    assert decode_form("a[b]=1&line_items[0][price]=p&line_items[1][price]=q&x=") == {
        "a": {"b": "1"},
        "line_items": [{"price": "p"}, {"price": "q"}],
        "x": "",
    }


def test_customer_is_created_once(tenant_a: Tenant, fake_stripe: FakeStripe) -> None:
    subscription = _customer(tenant_a)
    again = stripe_api.stripe_customer_ensure(
        organization=tenant_a.organization, subscription=subscription
    )
    assert again == subscription.stripe_customer_id and len(fake_stripe.customers) == 1
    created = fake_stripe.customers[again]
    assert created["metadata"]["organization_id"] == str(tenant_a.organization.pk)
    assert fake_stripe.requests[0].idempotency_key == (
        f"glassbox-customer-org-{tenant_a.organization.pk}"
    )


def test_checkout_and_portal(tenant_a: Tenant, fake_stripe: FakeStripe) -> None:
    subscription = _customer(tenant_a, stripe_price_id="price_team")
    url = stripe_api.stripe_checkout_url(
        organization=tenant_a.organization,
        subscription=subscription,
        plan=subscription.plan,
        success_url="https://glassbox.example/billing/?done=1",
        cancel_url="https://glassbox.example/billing/",
    )
    session = fake_stripe.checkout_sessions[-1]
    assert url == session["url"]
    assert session["mode"] == "subscription"
    assert session["customer"] == subscription.stripe_customer_id
    assert session["line_items_requested"] == [{"price": "price_team"}]
    portal = stripe_api.stripe_portal_url(
        organization=tenant_a.organization,
        subscription=subscription,
        return_url="https://glassbox.example/billing/",
    )
    assert portal == fake_stripe.portal_sessions[-1]["url"]


def test_a_plan_not_sold_through_stripe_has_no_checkout(
    tenant_a: Tenant, fake_stripe: FakeStripe
) -> None:
    subscription = _customer(tenant_a)
    with pytest.raises(stripe_api.BillingNotConfigured):
        stripe_api.stripe_checkout_url(
            organization=tenant_a.organization,
            subscription=subscription,
            plan=subscription.plan,
            success_url="https://x.example/",
            cancel_url="https://x.example/",
        )


def test_self_hosted_mode_makes_no_stripe_calls(tenant_a: Tenant, settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""
    usage = make_call_usage(tenant_a.organization, seconds=30)
    assert usage_report_task(organization_id=tenant_a.organization.pk, usage_id=usage.pk) is False
    assert usage_reconcile_task(older_than_s=0) == 0
    with pytest.raises(stripe_api.BillingNotConfigured):
        stripe_api.stripe_customer_ensure(
            organization=tenant_a.organization,
            subscription=make_subscription(tenant_a.organization),
        )


def test_minutes_reach_the_meter_exactly_once_per_call(
    tenant_a: Tenant,
    fake_stripe: FakeStripe,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
    eager_tasks: None,  # finalization and reporting run here
) -> None:
    subscription = _customer(tenant_a)
    call = make_call(tenant_a.organization)
    Call.objects.for_org(tenant_a.organization).filter(pk=call.pk).update(
        answered_at=timezone.now() - timedelta(seconds=125)
    )
    # The engine's end -> finalization -> usage -> the report task (eager Celery).
    with django_capture_on_commit_callbacks(execute=True):
        call_end(call=call, ended=CallEnded(reason=EndReason.CALLER_HANGUP))
    usage = CallUsage.objects.for_org(tenant_a.organization).get(call=call)
    assert usage.stripe_reported_at is not None
    assert [(e["identifier"], e["payload"]) for e in fake_stripe.meter_events] == [
        (
            f"call-{call.pk}",
            {"stripe_customer_id": subscription.stripe_customer_id, "value": "3"},
        )
    ]
    # Again (a duplicate task message, the reconciliation): nothing more reaches Stripe.
    usage_report_task(organization_id=tenant_a.organization.pk, usage_id=usage.pk)
    CallUsage.objects.for_org(tenant_a.organization).update(stripe_reported_at=None)
    usage_report_task(organization_id=tenant_a.organization.pk, usage_id=usage.pk)
    assert usage_reconcile_task(older_than_s=0) == 0
    assert len(fake_stripe.meter_events) == 1


def test_sdk_retry_after_a_stripe_error_counts_once(
    tenant_a: Tenant, fake_stripe: FakeStripe, settings: Any
) -> None:
    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    _customer(tenant_a)
    usage = make_call_usage(tenant_a.organization, seconds=59)
    fake_stripe.fail_next = [500]
    assert usage_report_task(organization_id=tenant_a.organization.pk, usage_id=usage.pk)
    meter_posts = [r for r in fake_stripe.requests if r.path == "/v1/billing/meter_events"]
    assert len(meter_posts) == 2  # the failure, then the SDK's retry with the same key
    assert len({r.idempotency_key for r in meter_posts}) == 1
    assert [e["payload"]["value"] for e in fake_stripe.meter_events] == ["1"]


def test_stripe_outage_loses_no_usage(tenant_a: Tenant, fake_stripe: FakeStripe) -> None:
    _customer(tenant_a)
    usage = make_call_usage(tenant_a.organization, seconds=61)
    fake_stripe.fail_next = [503, 503]
    with pytest.raises(Exception, match="Something went wrong"):
        usage_report_task.run(organization_id=tenant_a.organization.pk, usage_id=usage.pk)
    usage.refresh_from_db()
    assert usage.stripe_reported_at is None and usage.stripe_attempts == 1
    assert usage_reconcile_task(older_than_s=0) == 0  # still down: stops, tries next time
    assert usage_reconcile_task(older_than_s=0) == 1  # back up
    assert [e["payload"]["value"] for e in fake_stripe.meter_events] == ["2"]


def test_usage_without_a_customer_waits_for_reconciliation(
    tenant_a: Tenant, fake_stripe: FakeStripe
) -> None:
    subscription = make_subscription(tenant_a.organization)
    usage = make_call_usage(tenant_a.organization, seconds=10)
    assert not usage_report_task(organization_id=tenant_a.organization.pk, usage_id=usage.pk)
    stripe_api.stripe_customer_ensure(organization=tenant_a.organization, subscription=subscription)
    assert usage_reconcile_task(older_than_s=0) == 1
    assert len(fake_stripe.meter_events) == 1


# -- webhook ---------------------------------------------------------------------------


def _subscription_object(subscription: Subscription, status: str, price: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "id": "sub_123",
        "object": "subscription",
        "customer": subscription.stripe_customer_id,
        "status": status,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_1",
                    "object": "subscription_item",
                    "price": {"id": price, "object": "price"},
                    "current_period_start": now,
                    "current_period_end": now + 30 * 86400,
                }
            ],
        },
    }


def test_subscription_events_set_plan_status_and_period(
    tenant_a: Tenant, fake_stripe: FakeStripe
) -> None:
    subscription = _customer(tenant_a)
    pro = make_plan(name="Pro", stripe_price_id="price_pro", max_concurrent_calls=10)
    obj = _subscription_object(subscription, "active", "price_pro")
    assert _signed(fake_stripe, "customer.subscription.created", obj).status_code == 200
    subscription.refresh_from_db()
    assert (subscription.plan, subscription.status) == (pro, SubscriptionStatus.ACTIVE)
    assert subscription.stripe_subscription_id == "sub_123"
    assert subscription.current_period_end > timezone.now() + timedelta(days=29)
    response = _signed(fake_stripe, "customer.subscription.deleted", obj)
    assert response.status_code == 200
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.CANCELED


def test_failed_payment_suspends_calls_until_paid(
    tenant_a: Tenant, fake_stripe: FakeStripe
) -> None:
    subscription = _customer(tenant_a)
    number = make_phone_number(tenant_a.organization)
    invoice = {"id": "in_1", "object": "invoice", "customer": subscription.stripe_customer_id}
    assert _signed(fake_stripe, "invoice.payment_failed", invoice).status_code == 200
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.PAST_DUE
    assert refusal_line(dial(number)) is None  # grace period
    # The grace period passes; the periodic job suspends.
    Subscription.objects.for_org(tenant_a.organization).update(
        grace_until=timezone.now() - timedelta(minutes=1)
    )
    from billing.tasks import subscriptions_suspend_overdue_task

    assert subscriptions_suspend_overdue_task() == 1
    sid = new_sid()
    assert "billing problem" in (refusal_line(dial(number, sid)) or "")
    refused = Call.objects.for_org(tenant_a.organization).get(carrier_call_sid=sid)
    assert refused.end_reason == "refused" and "Billing suspended" in refused.end_detail
    # Stripe still says past_due: suspension stands until the invoice is paid.
    obj = _subscription_object(subscription, "past_due", "price_none")
    _signed(fake_stripe, "customer.subscription.updated", obj)
    assert refusal_line(dial(number)) is not None
    assert _signed(fake_stripe, "invoice.paid", invoice).status_code == 200
    subscription.refresh_from_db()
    assert (subscription.status, subscription.grace_until) == (SubscriptionStatus.ACTIVE, None)
    assert refusal_line(dial(number)) is None


def test_replayed_event_does_nothing_twice(tenant_a: Tenant, fake_stripe: FakeStripe) -> None:
    subscription = _customer(tenant_a)
    invoice = {"id": "in_1", "object": "invoice", "customer": subscription.stripe_customer_id}
    body = fake_stripe.event("invoice.payment_failed", invoice, event_id="evt_once")
    assert _post_event(body, sign(body, WEBHOOK_SECRET)).status_code == 200
    subscription.refresh_from_db()
    first_grace = subscription.grace_until
    # Paid, then the old failure is replayed: it must not put the org back in arrears.
    _signed(fake_stripe, "invoice.paid", invoice)
    assert _post_event(body, sign(body, WEBHOOK_SECRET)).status_code == 200
    subscription.refresh_from_db()
    assert first_grace is not None
    assert (subscription.status, subscription.grace_until) == (SubscriptionStatus.ACTIVE, None)
    assert StripeEvent.objects.filter(event_id="evt_once").count() == 1


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "t=1,v1=00",
        "FORGED",
        "STALE",
        "WRONG_SECRET",
    ],
)
def test_bad_signatures_are_400(tenant_a: Tenant, fake_stripe: FakeStripe, header: Any) -> None:
    subscription = _customer(tenant_a)
    invoice = {"id": "in_1", "object": "invoice", "customer": subscription.stripe_customer_id}
    body = fake_stripe.event("invoice.payment_failed", invoice)
    if header == "FORGED":
        header = sign(body.replace("in_1", "in_2"), WEBHOOK_SECRET)
    elif header == "STALE":
        header = sign(body, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600)
    elif header == "WRONG_SECRET":
        header = sign(body, "whsec_other")
    response = _post_event(body, header)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert not StripeEvent.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        json.dumps({"id": "evt_1"}),
        json.dumps({"id": "e", "type": "t", "data": []}),
    ],
)
def test_signed_garbage_is_400(fake_stripe: FakeStripe, db: Any, body: str) -> None:
    assert _post_event(body, sign(body, WEBHOOK_SECRET)).status_code == 400


def test_unknown_customer_is_acknowledged(fake_stripe: FakeStripe, db: Any) -> None:
    invoice = {"id": "in_1", "object": "invoice", "customer": "cus_nobody"}
    assert _signed(fake_stripe, "invoice.payment_failed", invoice).status_code == 200


def test_webhook_without_a_secret_is_404(db: Any, settings: Any) -> None:
    settings.STRIPE_WEBHOOK_SECRET = ""
    assert _post_event("{}", "t=1,v1=00").status_code == 404


def test_reconciliation_goes_past_an_event_stripe_refuses(
    tenant_a: Tenant, fake_stripe: FakeStripe
) -> None:
    _customer(tenant_a)
    make_call_usage(tenant_a.organization, seconds=30)
    make_call_usage(tenant_a.organization, seconds=30)
    fake_stripe.meter_event_name = "another_meter"  # every report is a 400 now
    assert usage_reconcile_task(older_than_s=0) == 0
    tried = [r for r in fake_stripe.requests if r.path == "/v1/billing/meter_events"]
    assert len(tried) == 2  # a refused event does not stop the run (an outage does)


# -- the fake itself, through the SDK ----------------------------------------------------


def _sdk(fake: FakeStripe, key: str | None = None) -> Any:
    import stripe

    return stripe.StripeClient(
        key or fake.api_key, base_addresses={"api": fake.url}, max_network_retries=0
    )


def test_fake_answers_the_sdks_errors(fake_stripe: FakeStripe) -> None:
    import stripe

    with pytest.raises(stripe.AuthenticationError):
        _sdk(fake_stripe, "sk_test_wrong").v1.customers.create(params={"name": "x"})
    with pytest.raises(stripe.InvalidRequestError) as missing:
        _sdk(fake_stripe).v1.billing_portal.sessions.create(params={"customer": "cus_nope"})
    assert (missing.value.code, missing.value.param) == ("resource_missing", "customer")
    fake_stripe.fail_next = [429]
    with pytest.raises(stripe.RateLimitError):
        _sdk(fake_stripe).v1.customers.create(params={"name": "x"})


def test_fake_replays_an_idempotency_key(fake_stripe: FakeStripe) -> None:
    import stripe

    client = _sdk(fake_stripe)
    first = client.v1.customers.create(params={"name": "A"}, options={"idempotency_key": "k1"})
    again = client.v1.customers.create(params={"name": "A"}, options={"idempotency_key": "k1"})
    assert first.id == again.id and len(fake_stripe.customers) == 1
    assert fake_stripe.requests[-1].replayed
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(params={"name": "B"}, options={"idempotency_key": "k1"})
