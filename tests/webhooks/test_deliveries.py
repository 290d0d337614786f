"""Delivering events: a real HTTP listener on 127.0.0.1, signatures checked with the
snippet printed in docs/webhooks.md, retries, backoff, failing and disabled endpoints,
idempotency. The services are called directly here (what a worker runs); the signal and
task paths are in test_events.py and test_worker.py."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from tenants.models import Role
from tests.conftest import Tenant
from tests.factories import make_agent, make_call, make_membership, make_webhook_endpoint
from tests.webhooks.listener import Listener, documented_snippet, documented_verify
from webhooks import services
from webhooks.events import call_started_data
from webhooks.models import Delivery, DeliveryState, EndpointState, WebhookEndpoint
from webhooks.signing import signature_header


def _emit(call: Any, event_type: str = "call.started", source: str = "") -> list[int]:
    return services.event_emit(
        call=call,
        event_type=event_type,
        source=source or f"call:{call.pk}",
        data=call_started_data(call),
    )


def _attempt(tenant: Tenant, delivery_id: int) -> str:
    return services.delivery_attempt(organization=tenant.organization, delivery_id=delivery_id)


def _delivery(tenant: Tenant, delivery_id: int) -> Delivery:
    return Delivery.objects.for_org(tenant.organization).get(pk=delivery_id)


def _time_passes(tenant: Tenant, delivery_id: int) -> None:
    """The retry's time has come (instead of sleeping until next_attempt_at)."""
    Delivery.objects.for_org(tenant.organization).filter(pk=delivery_id).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def test_a_delivery_arrives_signed_and_verifies_with_the_documented_snippet(
    tenant_a: Tenant, listener: Listener
) -> None:
    endpoint = make_webhook_endpoint(tenant_a.organization, url=listener.url)
    secret = endpoint.secret
    call = make_call(tenant_a.organization)
    [delivery_id] = _emit(call)

    assert _attempt(tenant_a, delivery_id) == "succeeded"

    [request] = listener.received
    verify = documented_verify()
    assert verify(request.body, request.signature, secret)
    event = request.event
    assert event["type"] == "call.started" and event["object"] == "event"
    assert event["id"].startswith("evt_") and request.headers["Glassbox-Event-Id"] == event["id"]
    assert event["api_version"] and isinstance(event["created"], int)
    assert event["data"]["call"]["id"] == call.pk
    assert request.headers["Content-Type"] == "application/json"
    # What a forger or a replayer could send fails the same check.
    assert not verify(request.body, request.signature, secret + "x")
    assert not verify(
        request.body.replace(b"call.started", b"call.ended"), request.signature, secret
    )
    stale = signature_header([secret], int(time.time()) - 3600, request.body)
    assert not verify(request.body, stale, secret)
    assert not verify(request.body, "v1=" + request.signature.split("v1=")[1], secret)
    delivery = _delivery(tenant_a, delivery_id)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("succeeded", 1, 200)
    assert delivery.last_response_ms is not None and delivery.next_attempt_at is None


def test_events_go_to_the_endpoints_that_want_them_and_to_the_agents_webhook(
    tenant_a: Tenant, listener: Listener
) -> None:
    org = tenant_a.organization
    wants_started = make_webhook_endpoint(org, url=listener.url, events=["call.started"])
    make_webhook_endpoint(org, url=listener.url, events=["call.ended"])
    disabled = make_webhook_endpoint(org, url=listener.url, events=["call.started"])
    services.endpoint_update(endpoint=disabled, data={"enabled": False})
    agent = make_agent(org, webhook_url=listener.url + "/agent", webhook_secret="agent-secret-1")
    call = make_call(org, agent=agent)

    ids = _emit(call)

    deliveries = Delivery.objects.for_org(org).filter(pk__in=ids)
    assert {(d.endpoint_id, d.agent_id) for d in deliveries} == {
        (wants_started.pk, None),
        (None, agent.pk),
    }
    for delivery_id in ids:
        assert _attempt(tenant_a, delivery_id) == "succeeded"
    by_path = {r.path: r for r in listener.received}
    verify = documented_verify()
    assert verify(by_path["/hooks/agent"].body, by_path["/hooks/agent"].signature, "agent-secret-1")
    assert verify(by_path["/hooks"].body, by_path["/hooks"].signature, wants_started.secret)
    # The same event to both, under one id.
    assert by_path["/hooks"].event == by_path["/hooks/agent"].event


def test_the_agents_webhook_does_not_get_transcript_turns(tenant_a: Tenant) -> None:
    agent = make_agent(tenant_a.organization, webhook_url="https://hooks.example.com/a")
    call = make_call(tenant_a.organization, agent=agent)
    assert _emit(call, "transcript.turn", source="turn:1") == []


def test_an_event_is_stored_once_however_often_it_is_signalled(
    tenant_a: Tenant, listener: Listener
) -> None:
    make_webhook_endpoint(tenant_a.organization, url=listener.url)
    call = make_call(tenant_a.organization)
    first = _emit(call)
    assert first and _emit(call) == []
    assert Delivery.objects.for_org(tenant_a.organization).count() == 1


def test_a_succeeded_delivery_is_never_sent_again(tenant_a: Tenant, listener: Listener) -> None:
    make_webhook_endpoint(tenant_a.organization, url=listener.url)
    [delivery_id] = _emit(make_call(tenant_a.organization))
    assert _attempt(tenant_a, delivery_id) == "succeeded"
    # A duplicate task, a message redelivered after a worker restart, a sweep.
    assert _attempt(tenant_a, delivery_id) == "skipped"
    assert services.deliveries_due(now=timezone.now() + timedelta(days=2)) == []
    assert len(listener.received) == 1


def test_an_attempt_in_flight_is_not_sent_twice_but_one_whose_worker_died_is(
    tenant_a: Tenant, listener: Listener
) -> None:
    make_webhook_endpoint(tenant_a.organization, url=listener.url)
    [delivery_id] = _emit(make_call(tenant_a.organization))
    held = Delivery.objects.for_org(tenant_a.organization).filter(pk=delivery_id)
    held.update(locked_until=timezone.now() + timedelta(minutes=1))
    assert _attempt(tenant_a, delivery_id) == "skipped"
    assert services.deliveries_due() == []
    # The worker holding it died: its claim runs out, the sweep finds it, it is sent.
    held.update(locked_until=timezone.now() - timedelta(seconds=1))
    assert services.deliveries_due() == [(tenant_a.organization.pk, delivery_id)]
    assert _attempt(tenant_a, delivery_id) == "succeeded"
    assert len(listener.received) == 1


def test_failed_attempts_back_off_exponentially_with_jitter_over_about_a_day(
    tenant_a: Tenant, listener: Listener, settings: Any
) -> None:
    make_webhook_endpoint(tenant_a.organization, url=listener.url)
    [delivery_id] = _emit(make_call(tenant_a.organization))
    listener.statuses = [500, 503]

    before = timezone.now()
    assert _attempt(tenant_a, delivery_id) == "retrying"
    delivery = _delivery(tenant_a, delivery_id)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 1, 500)
    assert delivery.last_error == "HTTP 500"
    assert delivery.next_attempt_at is not None
    wait = (delivery.next_attempt_at - before).total_seconds()
    assert 0.8 * settings.WEBHOOK_RETRY_BASE_S <= wait <= 1.2 * settings.WEBHOOK_RETRY_BASE_S + 5
    # Not due yet: neither an early task nor the sweep sends it.
    assert _attempt(tenant_a, delivery_id) == "skipped"
    assert services.deliveries_due() == []

    _time_passes(tenant_a, delivery_id)
    assert services.deliveries_due() == [(tenant_a.organization.pk, delivery_id)]
    assert _attempt(tenant_a, delivery_id) == "retrying"
    _time_passes(tenant_a, delivery_id)
    assert _attempt(tenant_a, delivery_id) == "succeeded"
    assert len(listener.received) == 3
    assert len({r.event["id"] for r in listener.received}) == 1

    # The whole schedule: x3 each time up to the cap, +-20% jitter, about a day in all.
    base, cap = settings.WEBHOOK_RETRY_BASE_S, settings.WEBHOOK_RETRY_MAX_S
    delays = []
    for n in range(1, settings.WEBHOOK_MAX_ATTEMPTS):
        nominal = min(base * 3 ** (n - 1), cap)
        delay = services.retry_delay_s(n)
        assert 0.8 * nominal <= delay <= 1.2 * nominal, (n, delay)
        delays.append(nominal)
    assert 20 <= sum(delays) / 3600 <= 28


def test_timeouts_redirects_and_refused_connections_are_failures(
    tenant_a: Tenant, listener: Listener, settings: Any
) -> None:
    settings.WEBHOOK_TIMEOUT_S = 0.5
    make_webhook_endpoint(tenant_a.organization, url=listener.url)
    [slow] = _emit(make_call(tenant_a.organization))
    listener.delay_s = 2.0
    assert _attempt(tenant_a, slow) == "retrying"
    assert _delivery(tenant_a, slow).last_error == "No response within 0.5 seconds."
    assert _delivery(tenant_a, slow).last_status is None

    listener.delay_s = 0.0
    listener.statuses = [302]
    [moved] = _emit(make_call(tenant_a.organization))
    assert _attempt(tenant_a, moved) == "retrying"
    assert (_delivery(tenant_a, moved).last_status, _delivery(tenant_a, moved).last_error) == (
        302,
        "HTTP 302",
    )


def test_deliveries_go_through_the_outbound_guard(
    tenant_a: Tenant, listener: Listener, settings: Any
) -> None:
    make_webhook_endpoint(tenant_a.organization, url=listener.url)
    [delivery_id] = _emit(make_call(tenant_a.organization))
    settings.OUTBOUND_ALLOWED_NETWORKS = []  # loopback is private: refused at connect time
    assert _attempt(tenant_a, delivery_id) == "retrying"
    assert "refused" in _delivery(tenant_a, delivery_id).last_error
    assert listener.received == []


def test_an_endpoint_that_keeps_failing_is_disabled_and_its_owners_are_told(
    tenant_a: Tenant,
    listener: Listener,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 2
    org = tenant_a.organization
    owner = make_membership(org, Role.OWNER)
    make_membership(org, Role.ADMIN)
    endpoint = make_webhook_endpoint(org, url=listener.url)
    listener.statuses = [500] * 10

    def exhaust() -> int:
        [delivery_id] = _emit(make_call(org))
        assert _attempt(tenant_a, delivery_id) == "retrying"
        _time_passes(tenant_a, delivery_id)
        assert _attempt(tenant_a, delivery_id) == "failed"
        return delivery_id

    exhaust()
    endpoint.refresh_from_db()
    assert (endpoint.state, endpoint.consecutive_failures) == (EndpointState.FAILING, 1)
    assert endpoint.failing_since is not None
    assert mail.outbox == []

    with django_capture_on_commit_callbacks(execute=True):
        exhaust()
    endpoint.refresh_from_db()
    assert endpoint.state == EndpointState.DISABLED
    assert "2 deliveries in a row" in endpoint.disabled_reason
    [message] = mail.outbox
    assert message.to == [owner.user.email]
    assert endpoint.url in message.subject and f"/webhooks/{endpoint.pk}/" in message.body

    # Disabled: new events are not queued for it, and nothing more is sent.
    assert _emit(make_call(org)) == []
    sent = len(listener.received)

    # Enabled again through the API: it gets events again, and a success clears it.
    response = tenant_a.client.patch(
        f"/api/v1/webhook-endpoints/{endpoint.pk}/", {"enabled": True}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["state"] == "enabled" and response.json()["enabled"] is True
    [delivery_id] = _emit(make_call(org))
    listener.statuses = []
    assert _attempt(tenant_a, delivery_id) == "succeeded"
    assert len(listener.received) == sent + 1


def test_a_success_sets_a_failing_endpoint_back_to_enabled(
    tenant_a: Tenant, listener: Listener, settings: Any
) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    endpoint = make_webhook_endpoint(tenant_a.organization, url=listener.url)
    listener.statuses = [500]
    [failed] = _emit(make_call(tenant_a.organization))
    assert _attempt(tenant_a, failed) == "failed"
    endpoint.refresh_from_db()
    assert endpoint.state == EndpointState.FAILING
    [ok] = _emit(make_call(tenant_a.organization))
    assert _attempt(tenant_a, ok) == "succeeded"
    endpoint.refresh_from_db()
    assert (endpoint.state, endpoint.consecutive_failures, endpoint.failing_since) == (
        EndpointState.ENABLED,
        0,
        None,
    )


def test_a_pending_delivery_to_a_disabled_endpoint_stops(
    tenant_a: Tenant, listener: Listener
) -> None:
    endpoint = make_webhook_endpoint(tenant_a.organization, url=listener.url)
    [delivery_id] = _emit(make_call(tenant_a.organization))
    services.endpoint_update(endpoint=endpoint, data={"enabled": False})
    assert _attempt(tenant_a, delivery_id) == "failed"
    assert _delivery(tenant_a, delivery_id).last_error == "The endpoint is disabled."
    assert listener.received == []


def test_rotation_signs_with_both_secrets_until_the_overlap_ends(
    tenant_a: Tenant, listener: Listener
) -> None:
    endpoint = make_webhook_endpoint(tenant_a.organization, url=listener.url)
    old = endpoint.secret
    new = services.endpoint_rotate_secret(endpoint=endpoint, overlap_s=3600).secret
    assert new != old and new.startswith("whsec_")
    verify = documented_verify()

    [first] = _emit(make_call(tenant_a.organization))
    _attempt(tenant_a, first)
    request = listener.received[-1]
    assert request.signature.count("v1=") == 2
    assert verify(request.body, request.signature, old)
    assert verify(request.body, request.signature, new)

    WebhookEndpoint.objects.for_org(tenant_a.organization).filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    [second] = _emit(make_call(tenant_a.organization))
    _attempt(tenant_a, second)
    request = listener.received[-1]
    assert request.signature.count("v1=") == 1
    assert verify(request.body, request.signature, new)
    assert not verify(request.body, request.signature, old)


def test_redelivery_sends_a_finished_delivery_once_more(
    tenant_a: Tenant,
    listener: Listener,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    endpoint = make_webhook_endpoint(tenant_a.organization, url=listener.url)
    listener.statuses = [500]
    [delivery_id] = _emit(make_call(tenant_a.organization))
    assert _attempt(tenant_a, delivery_id) == "failed"

    url = f"/api/v1/webhook-deliveries/{delivery_id}/redeliver/"
    # The API schedules it (after commit); the attempt is made here, as a worker would.
    with django_capture_on_commit_callbacks(execute=False) as scheduled:
        response = tenant_a.client.post(url)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["state"] == "pending" and body["redelivered_at"] is not None
    assert body["event"]["payload"]["id"] == listener.received[0].event["id"]
    assert len(scheduled) == 1
    # Still scheduled: asking again is a conflict, not a second send.
    again = tenant_a.client.post(url)
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"

    assert _attempt(tenant_a, delivery_id) == "succeeded"
    delivery = _delivery(tenant_a, delivery_id)
    assert (delivery.attempts, delivery.last_status) == (2, 200)
    assert [r.event["id"] for r in listener.received] == [listener.received[0].event["id"]] * 2
    # A failed redelivery does not count against the endpoint.
    endpoint.refresh_from_db()
    assert endpoint.state == EndpointState.ENABLED

    services.endpoint_update(endpoint=endpoint, data={"enabled": False})
    refused = tenant_a.client.post(url)
    assert refused.status_code == 409
    assert "disabled" in refused.json()["error"]["message"]


@pytest.mark.parametrize("state", [DeliveryState.SUCCEEDED, DeliveryState.FAILED])
def test_delivery_states_are_listed_and_filtered(
    tenant_a: Tenant, listener: Listener, state: str
) -> None:
    make_webhook_endpoint(tenant_a.organization, url=listener.url)
    listener.statuses = [200 if state == DeliveryState.SUCCEEDED else 500]
    [delivery_id] = _emit(make_call(tenant_a.organization))
    Delivery.objects.for_org(tenant_a.organization).filter(pk=delivery_id).update(max_attempts=1)
    _attempt(tenant_a, delivery_id)
    body = tenant_a.client.get("/api/v1/webhook-deliveries/", {"state": state}).json()
    assert [row["id"] for row in body["results"]] == [delivery_id]
    row = body["results"][0]
    assert row["event"]["type"] == "call.started" and row["url"] == listener.url
    assert row["attempts"] == 1 and row["last_status"] in (200, 500)
    other = "failed" if state == DeliveryState.SUCCEEDED else "succeeded"
    assert tenant_a.client.get("/api/v1/webhook-deliveries/", {"state": other}).json()["count"] == 0


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (node)")
def test_the_documented_node_snippet_verifies_a_real_delivery(
    tenant_a: Tenant, listener: Listener, tmp_path: Path
) -> None:
    endpoint = make_webhook_endpoint(tenant_a.organization, url=listener.url)
    [delivery_id] = _emit(make_call(tenant_a.organization))
    assert _attempt(tenant_a, delivery_id) == "succeeded"
    [request] = listener.received
    body = tmp_path / "body.json"
    body.write_bytes(request.body)
    script = tmp_path / "verify.js"
    script.write_text(
        documented_snippet("javascript")
        + "\nconst [body, header, secret] = process.argv.slice(2);\n"
        + "console.log(verify(require('fs').readFileSync(body), header, secret));\n"
    )

    def node(secret: str, payload: Path = body) -> str:
        run = subprocess.run(
            ["node", str(script), str(payload), request.signature, secret],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return run.stdout.strip()

    assert node(endpoint.secret) == "true"
    assert node(endpoint.secret + "x") == "false"
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(request.body.replace(b"call.started", b"call.ended"))
    assert node(endpoint.secret, tampered) == "false"


def test_deleting_a_call_deletes_its_events_and_deliveries(tenant_a: Tenant) -> None:
    """A data-deletion request: the events' bodies carry the call's transcript."""
    from webhooks.models import Event

    make_webhook_endpoint(tenant_a.organization)
    call = make_call(tenant_a.organization)
    assert _emit(call)
    call.delete()
    assert not Event.objects.for_org(tenant_a.organization).exists()
    assert not Delivery.objects.for_org(tenant_a.organization).exists()


def test_events_that_copy_a_purged_transcript_are_purged_too(tenant_a: Tenant) -> None:
    """The organization's transcript retention reaches the copies in call.ended and
    transcript.turn events, once nothing is still to be sent."""
    from webhooks.models import Event

    make_webhook_endpoint(tenant_a.organization, events=["call.started", "call.ended"])
    call = make_call(tenant_a.organization)
    [started] = _emit(call, "call.started")
    [ended] = _emit(call, "call.ended", source=f"call:{call.pk}")
    type(call).objects.for_org(tenant_a.organization).filter(pk=call.pk).update(
        transcript_purged_at=timezone.now()
    )
    assert services.events_purge_retained() == 0  # call.ended is still to be sent
    Delivery.objects.for_org(tenant_a.organization).filter(pk=ended).update(
        state=DeliveryState.SUCCEEDED, next_attempt_at=None
    )
    assert services.events_purge_retained() == 1
    assert list(Event.objects.for_org(tenant_a.organization).values_list("type", flat=True)) == [
        "call.started"
    ]
    assert Delivery.objects.for_org(tenant_a.organization).get().pk == started
