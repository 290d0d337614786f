"""The plan at admission, in one process: concurrency (database rows and Redis), the
minutes cap, billing suspension, and no limits at all without plans."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from billing import leases
from billing.models import CallLease, Subscription, SubscriptionStatus
from billing.services import plan_create, subscription_invoice_paid, subscription_payment_failed
from calls import services as call_services
from calls.models import Call
from calls.signals import call_alive
from calls.webcalls import WebCallRefused, web_call_create
from tests.billing.conftest import dial, new_sid, refusal_line, status
from tests.conftest import Tenant
from tests.factories import (
    make_agent,
    make_call_usage,
    make_phone_number,
    make_plan,
    make_subscription,
)
from voice.events import CallEnded, EndReason


def _two_lines(tenant: Tenant) -> Any:
    make_subscription(tenant.organization, plan=make_plan(max_concurrent_calls=2))
    return make_phone_number(tenant.organization)


def test_third_concurrent_call_is_refused_with_a_line_and_recorded(
    tenant_a: Tenant, lease_backend: str
) -> None:
    number = _two_lines(tenant_a)
    first, second, third = new_sid(), new_sid(), new_sid()
    assert refusal_line(dial(number, first)) is None
    assert refusal_line(dial(number, second)) is None
    line = refusal_line(dial(number, third))
    assert line and "lines are busy" in line
    refused = Call.objects.for_org(tenant_a.organization).get(carrier_call_sid=third)
    assert refused.end_reason == "refused"
    assert refused.end_detail.startswith("Concurrent call limit reached: 2 of 2")
    assert refused.stream_connected_at is None
    # The refused call is listed by the API with its reason.
    body = tenant_a.client.get("/api/v1/calls/").json()
    assert [r["end_reason"] for r in body["results"] if r["id"] == refused.pk] == ["refused"]


def test_retried_webhook_keeps_its_slot(tenant_a: Tenant, lease_backend: str) -> None:
    number = _two_lines(tenant_a)
    first = new_sid()
    assert refusal_line(dial(number, first)) is None
    assert refusal_line(dial(number, first)) is None  # Twilio's retry: same call
    assert refusal_line(dial(number)) is None
    assert leases.lease_count(organization=tenant_a.organization) == 2


def test_a_call_that_ends_frees_its_slot(tenant_a: Tenant, lease_backend: str) -> None:
    number = _two_lines(tenant_a)
    first, second = new_sid(), new_sid()
    dial(number, first)
    dial(number, second)
    assert refusal_line(dial(number)) is not None
    # One ends before streaming (status callback), the other through the engine's end.
    assert status(number, first, "no-answer").status_code == 204
    assert refusal_line(dial(number)) is None
    call = Call.objects.for_org(tenant_a.organization).get(carrier_call_sid=second)
    call_services.call_end(call=call, ended=CallEnded(reason=EndReason.CALLER_HANGUP))
    assert refusal_line(dial(number)) is None


def test_database_lease_that_is_not_refreshed_expires(tenant_a: Tenant, settings: Any) -> None:
    settings.REDIS_URL = ""
    number = _two_lines(tenant_a)
    dial(number)
    dial(number)
    assert refusal_line(dial(number)) is not None
    # A process died: its leases are not refreshed and run out.
    CallLease.objects.for_org(tenant_a.organization).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert refusal_line(dial(number)) is None


def test_heartbeat_refreshes_a_database_lease(tenant_a: Tenant, settings: Any) -> None:
    from calls.signals import call_alive

    settings.REDIS_URL = ""
    number = _two_lines(tenant_a)
    sid = new_sid()
    dial(number, sid)
    lease = CallLease.objects.for_org(tenant_a.organization).get()
    CallLease.objects.for_org(tenant_a.organization).update(expires_at=timezone.now())
    call = Call.objects.for_org(tenant_a.organization).get(carrier_call_sid=sid)
    call_alive.send(sender=Call, call=call)
    lease.refresh_from_db()
    assert lease.expires_at > timezone.now() + timedelta(seconds=30)


def test_monthly_minutes_cap(tenant_a: Tenant) -> None:
    make_subscription(tenant_a.organization, plan=make_plan(max_minutes_per_period=3))
    number = make_phone_number(tenant_a.organization)
    make_call_usage(tenant_a.organization, seconds=120)
    assert refusal_line(dial(number)) is None
    make_call_usage(tenant_a.organization, seconds=60)
    sid = new_sid()
    line = refusal_line(dial(number, sid))
    assert line and "minutes" in line
    call = Call.objects.for_org(tenant_a.organization).get(carrier_call_sid=sid)
    assert call.end_detail.startswith("Monthly minutes cap reached: 3.0 of 3 minutes")


def test_failed_payment_suspends_after_grace_until_paid(tenant_a: Tenant) -> None:
    subscription = make_subscription(tenant_a.organization, plan=make_plan())
    number = make_phone_number(tenant_a.organization)
    subscription_payment_failed(subscription=subscription)
    assert refusal_line(dial(number)) is None  # within the grace period
    Subscription.objects.for_org(tenant_a.organization).update(
        grace_until=timezone.now() - timedelta(seconds=1)
    )
    sid = new_sid()
    assert "billing problem" in (refusal_line(dial(number, sid)) or "")
    detail = Call.objects.for_org(tenant_a.organization).get(carrier_call_sid=sid).end_detail
    assert detail.startswith("Billing suspended")
    subscription.refresh_from_db()
    subscription_invoice_paid(subscription=subscription)
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert refusal_line(dial(number)) is None


def test_without_plans_nothing_is_limited(tenant_a: Tenant, lease_backend: str) -> None:
    number = make_phone_number(tenant_a.organization)
    for _ in range(4):
        assert refusal_line(dial(number)) is None
    assert not Subscription.objects.for_org(tenant_a.organization).exists()


def test_default_plan_applies_to_an_organization_without_subscription(tenant_a: Tenant) -> None:
    plan_create(name="Free", max_concurrent_calls=1, is_default=True)
    number = make_phone_number(tenant_a.organization)
    assert refusal_line(dial(number)) is None
    assert refusal_line(dial(number)) is not None
    assert Subscription.objects.for_org(tenant_a.organization).get().plan.name == "Free"


def test_other_organizations_calls_do_not_count(
    tenant_a: Tenant, tenant_b: Tenant, lease_backend: str
) -> None:
    number_a = _two_lines(tenant_a)
    number_b = make_phone_number(tenant_b.organization)
    make_subscription(tenant_b.organization, plan=make_plan(max_concurrent_calls=1))
    dial(number_a)
    dial(number_a)
    assert refusal_line(dial(number_b)) is None


def test_a_web_call_holds_one_slot_and_frees_it_when_it_ends(
    tenant_a: Tenant, lease_backend: str
) -> None:
    make_subscription(tenant_a.organization, plan=make_plan(max_concurrent_calls=1))
    agent = make_agent(tenant_a.organization)
    call = web_call_create(agent=agent, source="test").call
    assert leases.lease_count(organization=tenant_a.organization) == 1
    with pytest.raises(WebCallRefused, match="Concurrent call limit reached: 1 of 1"):
        web_call_create(agent=agent, source="test")
    # the call's heartbeat refreshes the slot it holds, and takes no second one
    call_alive.send(sender=Call, call=call)
    assert leases.lease_count(organization=tenant_a.organization) == 1
    call_services.call_end(call=call, ended=CallEnded(reason=EndReason.CALLER_HANGUP))
    assert leases.lease_count(organization=tenant_a.organization) == 0
    web_call_create(agent=agent, source="test")  # the line is free again


def test_a_webhook_naming_another_tenants_call_sid_gives_its_slot_back(
    tenant_a: Tenant, tenant_b: Tenant, lease_backend: str
) -> None:
    number = _two_lines(tenant_a)
    theirs = make_phone_number(tenant_b.organization)
    sid = new_sid()
    assert refusal_line(dial(theirs, sid)) is None  # tenant B's call
    forged = dial(number, sid)  # tenant A signs a webhook with B's SID
    assert forged.status_code == 409
    assert leases.lease_count(organization=tenant_a.organization) == 0
    # A's own call on another of its numbers keeps its slot when the SID is reused
    other = make_phone_number(tenant_a.organization)
    mine = new_sid()
    assert refusal_line(dial(number, mine)) is None
    assert dial(other, mine).status_code == 409
    assert leases.lease_count(organization=tenant_a.organization) == 1
