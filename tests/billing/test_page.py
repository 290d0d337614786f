"""The billing page: owners only; plan, limits, usage charts, Checkout and the portal."""

from __future__ import annotations

import re
from typing import Any

from django.test import Client

from billing import stripe_api
from tenants import services
from tenants.models import Organization, Role
from tests.factories import (
    make_agent,
    make_call_usage,
    make_organization,
    make_plan,
    make_subscription,
    make_user,
)
from tests.fakes.stripe import FakeStripe


def _client(organization: Organization, role: Role = Role.OWNER) -> Client:
    user = make_user()
    services.membership_create(organization=organization, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client


def test_owner_sees_plan_limits_and_usage_charts(db: Any) -> None:
    org = make_organization()
    make_subscription(org, plan=make_plan(name="Team", max_concurrent_calls=2, included_minutes=10))
    agent = make_agent(org, name="Front desk")
    make_call_usage(org, seconds=300, agent=agent)
    make_call_usage(org, seconds=240, agent=agent)
    html = _client(org).get("/billing/").content.decode()
    assert "Plan: Team" in html
    assert "9.0 minutes in 2 calls" in html
    # Each bar carries its numbers in a <title>; 9 of 10 included minutes is 90 %.
    assert "Front desk: 9.0 minutes, 2 calls</title>" in html
    assert re.search(r"<title>9 of 10 \(90%\)</title>", html)
    assert "meter-high" in html
    assert "Minutes this period (included): 90% of the plan's 10 used." in html
    assert "Upgrade with Stripe Checkout" not in html  # self-hosted: no Stripe actions


def test_no_plans_means_unlimited(db: Any) -> None:
    html = _client(make_organization()).get("/billing/").content.decode()
    assert "nothing is limited" in html


def test_below_owner_cannot_see_or_post(db: Any) -> None:
    org = make_organization()
    for role in (Role.ADMIN, Role.MEMBER, Role.VIEWER):
        client = _client(org, role)
        assert client.get("/billing/").status_code == 403
        assert client.post("/billing/", {"action": "portal"}).status_code == 403


def test_billing_nav_link_only_for_owners(db: Any) -> None:
    org = make_organization()
    assert 'href="/billing/"' in _client(org).get("/members/").content.decode()
    assert 'href="/billing/"' not in _client(org, Role.ADMIN).get("/members/").content.decode()


def test_self_hosted_post_is_a_clear_400(db: Any) -> None:
    org = make_organization()
    make_subscription(org)
    response = _client(org).post("/billing/", {"action": "portal"})
    assert response.status_code == 400
    assert "managed by the operator" in response.content.decode()


def test_upgrade_goes_to_checkout(db: Any, fake_stripe: FakeStripe) -> None:
    org = make_organization()
    make_subscription(org, plan=make_plan(name="Starter"))
    pro = make_plan(name="Pro", stripe_price_id="price_pro")
    client = _client(org)
    page = client.get("/billing/").content.decode()
    assert "Upgrade with Stripe Checkout" in page and ">Pro</option>" in page
    response = client.post("/billing/", {"action": "checkout", "plan": pro.pk})
    assert response.status_code == 302
    assert response["Location"] == fake_stripe.checkout_sessions[-1]["url"]
    session = fake_stripe.checkout_sessions[-1]
    assert session["line_items_requested"] == [{"price": "price_pro"}]
    assert session["success_url"].endswith("/billing/?checkout=done")


def test_checkout_needs_a_plan_on_sale(db: Any, fake_stripe: FakeStripe) -> None:
    org = make_organization()
    starter = make_plan(name="Starter")
    make_subscription(org, plan=starter)
    client = _client(org)
    for data in ({"action": "checkout"}, {"action": "checkout", "plan": starter.pk}, {}):
        response = client.post("/billing/", data)
        assert response.status_code == 400, data
        assert 'class="error-summary"' in response.content.decode()
    assert fake_stripe.checkout_sessions == []


def test_portal_link(db: Any, fake_stripe: FakeStripe) -> None:
    org = make_organization()
    subscription = make_subscription(org)
    response = _client(org).post("/billing/", {"action": "portal"})
    assert response.status_code == 302
    assert response["Location"] == fake_stripe.portal_sessions[-1]["url"]
    subscription.refresh_from_db()
    assert subscription.stripe_customer_id in fake_stripe.customers


def test_stripe_failure_is_reported_not_a_500(db: Any, fake_stripe: FakeStripe) -> None:
    org = make_organization()
    subscription = make_subscription(org)
    stripe_api.stripe_customer_ensure(organization=org, subscription=subscription)
    fake_stripe.fail_next = [500]
    response = _client(org).post("/billing/", {"action": "portal"})
    assert response.status_code == 502
    assert "Stripe could not be reached" in response.content.decode()
