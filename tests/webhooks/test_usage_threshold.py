"""``billing.usage_threshold``: billing's usage notices as signed webhook events, to the
organization's subscribed endpoints only, once per period, limit and percentage. A real
listener on 127.0.0.1; deliveries on the web process's pool (the embedded default)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client
from drf_spectacular.generators import SchemaGenerator

from billing.models import Subscription
from billing.services import usage_notices_send
from tenants.models import Role
from tests.factories import (
    make_call,
    make_call_usage,
    make_membership,
    make_organization,
    make_plan,
    make_subscription,
    make_webhook_endpoint,
)
from tests.webhooks.listener import Listener, documented_verify
from webhooks.models import Delivery, DeliveryState, Event, WebhookEndpoint

pytestmark = pytest.mark.django_db(transaction=True)

TYPE = "billing.usage_threshold"


def _settled(organization: Any, count: int, timeout_s: float = 30.0) -> bool:
    """Whether the organization has ``count`` deliveries, all succeeded, once the pool
    has recorded its attempts (a bounded wait: the listener hears a POST before the
    attempt's outcome is stored)."""
    deadline = time.monotonic() + timeout_s
    while True:
        deliveries = list(Delivery.objects.for_org(organization).all())
        if len(deliveries) == count and all(d.state == DeliveryState.SUCCEEDED for d in deliveries):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_usage_crossing_80_then_100_percent_delivers_two_signed_events_once_each(
    listener: Listener, local_delivery: None
) -> None:
    org, other_org = make_organization(), make_organization()
    subscribed = make_webhook_endpoint(org, url=listener.url, events=[TYPE, "call.ended"])
    make_webhook_endpoint(org, url=listener.url + "/calls-only", events=["call.ended"])
    make_webhook_endpoint(other_org, url=listener.url + "/other-org", events=[TYPE])
    plan = make_plan(name="Starter", included_minutes=10)
    make_subscription(org, plan=plan)
    make_subscription(other_org, plan=make_plan(included_minutes=10))
    period = Subscription.objects.for_org(org).get()

    make_call_usage(org, seconds=7 * 60)
    assert usage_notices_send(organization=org) == []
    make_call_usage(org, seconds=60)
    assert len(usage_notices_send(organization=org)) == 1
    listener.wait_for(lambda got: len(got) == 1)
    for _ in range(3):  # however often notices are checked
        assert usage_notices_send(organization=org) == []
    make_call_usage(org, seconds=2 * 60)
    assert len(usage_notices_send(organization=org)) == 1
    assert usage_notices_send(organization=org) == []
    got = listener.wait_for(lambda got: len(got) == 2)

    assert [r.path for r in got] == ["/hooks", "/hooks"]
    verify = documented_verify()
    assert all(verify(r.body, r.signature, subscribed.secret) for r in got)
    assert [r.event["type"] for r in got] == [TYPE, TYPE]
    assert [r.headers["Glassbox-Event-Type"] for r in got] == [TYPE, TYPE]
    first, second = (r.event["data"] for r in got)
    assert first == {
        "kind": "included",
        "percent": 80,
        "used_minutes": 8.0,
        "limit_minutes": 10,
        "plan": "Starter",
        "period_start": period.current_period_start.isoformat(),
        "period_end": period.current_period_end.isoformat(),
    }
    assert (second["kind"], second["percent"], second["used_minutes"]) == ("included", 100, 10.0)
    assert got[0].event["id"] != got[1].event["id"]
    events = Event.objects.for_org(org).filter(type=TYPE)
    assert [e.call_id for e in events] == [None, None]
    assert _settled(org, 2)
    # A second process that decided the same notice (it read the subscription before the
    # first one recorded it) emits the same event id: nothing is stored or sent again.
    Subscription.objects.for_org(org).update(notices_sent=[])
    assert len(usage_notices_send(organization=org)) == 2
    assert Event.objects.for_org(org).filter(type=TYPE).count() == 2
    assert _settled(org, 2) and len(listener.received) == 2
    # The other organization's endpoint and the unsubscribed one got nothing.
    assert not Delivery.objects.for_org(other_org).exists()


def test_the_api_and_the_dashboard_form_offer_the_type(tenant_a: Any) -> None:
    client = Client()
    client.force_login(make_membership(tenant_a.organization, Role.ADMIN).user)
    form = client.get("/webhooks/new/")
    assert form.status_code == 200
    assert f'value="{TYPE}"' in form.content.decode()
    created = client.post(
        "/webhooks/new/", {"url": "https://hooks.example.com/d", "events": [TYPE]}
    )
    assert created.status_code == 302
    response = tenant_a.client.post(
        "/api/v1/webhook-endpoints/",
        {"url": "https://hooks.example.com/billing", "events": [TYPE]},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["events"] == [TYPE]
    assert sorted(e.events for e in WebhookEndpoint.objects.for_org(tenant_a.organization)) == [
        [TYPE],
        [TYPE],
    ]


def test_the_openapi_schema_documents_the_payload(db: Any) -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    mapping = components["WebhookEvent"]["discriminator"]["mapping"]
    assert mapping[TYPE].endswith("/BillingUsageThresholdEvent")
    data = components["BillingUsageThresholdData"]["properties"]
    assert set(data) == {
        "kind",
        "percent",
        "used_minutes",
        "limit_minutes",
        "plan",
        "period_start",
        "period_end",
    }


def test_a_finalized_call_that_crosses_80_percent_sends_the_event_after_it_commits(
    listener: Listener, local_delivery: None
) -> None:
    """The whole path: the call ends, billing records its usage and its notice, and the
    event goes to the subscribed endpoint, never to the agent's own webhook_url (which
    gets the call's events)."""
    from agents.models import Agent
    from calls import services as call_services
    from voice.events import CallEnded, EndReason, Usage

    org = make_organization()
    endpoint = make_webhook_endpoint(org, url=listener.url, events=[TYPE])
    make_subscription(org, plan=make_plan(included_minutes=1))
    make_call_usage(org, seconds=47)  # 80 % of a minute is 48 s: the next call crosses it
    call = make_call(org)
    Agent.objects.for_org(org).filter(pk=call.agent_id).update(webhook_url=listener.url + "/agent")
    claimed = call_services.call_stream_claim(
        token=call_services.call_stream_token(call=call), max_age_s=60
    )
    call_services.call_stream_started(call=claimed, stream_sid="MZ" + "1" * 32)
    call_services.call_end(
        call=claimed, ended=CallEnded(reason=EndReason.CALLER_HANGUP, usage=Usage())
    )

    listener.wait_for(lambda got: len([r for r in got if r.event["type"] == TYPE]) == 1)
    listener.wait_for(lambda got: {r.event["type"] for r in got} >= {"call.started", TYPE})
    [notice] = listener.of_type(TYPE)
    assert notice.path == "/hooks"
    assert documented_verify()(notice.body, notice.signature, endpoint.secret)
    assert (notice.event["data"]["kind"], notice.event["data"]["percent"]) == ("included", 80)
    assert all(r.path == "/hooks/agent" for r in listener.received if r.event["type"] != TYPE)


def test_webhooks_failing_never_fails_billings_notices(mailoutbox: Any, caplog: Any) -> None:
    org = make_organization()
    owner = make_membership(org, Role.OWNER)
    endpoint = make_webhook_endpoint(org, events=[TYPE])
    # A row the webhooks code cannot read (events must be a list): emitting raises.
    WebhookEndpoint.objects.for_org(org).filter(pk=endpoint.pk).update(events=5)
    make_subscription(org, plan=make_plan(included_minutes=10))
    make_call_usage(org, seconds=10 * 60)

    sent = usage_notices_send(organization=org)

    assert [key.split(":", 1)[1] for key in sent] == ["included:80", "included:100"]
    assert Subscription.objects.for_org(org).get().notices_sent == sent
    assert mailoutbox[-1].to == [owner.user.email]
    assert "could not emit the webhook event" in caplog.text
    assert not Event.objects.for_org(org).exists()
