"""Dashboard pages for webhooks: the secret shown once, the API's errors on the page,
viewers reading only, redelivery, and failing/disabled endpoints made visible."""

from __future__ import annotations

from typing import Any

from django.test import Client

from tenants.models import Organization, Role
from tenants.services import membership_create
from tests.factories import (
    make_delivery,
    make_organization,
    make_user,
    make_webhook_endpoint,
)
from webhooks.models import Delivery, DeliveryState, EndpointState, WebhookEndpoint


def _client(organization: Organization, role: Role = Role.MEMBER) -> Client:
    user = make_user()
    membership_create(organization=organization, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client


def test_a_member_adds_an_endpoint_and_sees_its_secret_once(db: Any) -> None:
    org = make_organization()
    client = _client(org)
    response = client.post(
        "/webhooks/new/",
        {
            "url": "https://hooks.example.com/in",
            "description": "CRM",
            "events": ["", "call.ended", "call.analyzed"],
        },
    )
    assert response.status_code == 302
    endpoint = WebhookEndpoint.objects.for_org(org).get()
    assert response["Location"] == f"/webhooks/{endpoint.pk}/"
    assert endpoint.events == ["call.ended", "call.analyzed"] and endpoint.description == "CRM"
    first = client.get(response["Location"]).content.decode()
    assert endpoint.secret in first and 'data-testid="new-webhook-secret"' in first
    again = client.get(response["Location"]).content.decode()
    assert endpoint.secret not in again


def test_the_page_shows_the_apis_errors(db: Any, settings: Any) -> None:
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    org = make_organization()
    response = _client(org).post(
        "/webhooks/new/", {"url": "http://127.0.0.1:9/hook", "events": [""]}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "There is a problem" in page
    assert 'href="#id_url"' in page and 'href="#id_events"' in page
    assert not WebhookEndpoint.objects.for_org(org).exists()


def test_rotation_shows_the_new_secret_once_and_keeps_the_old_one_signing(db: Any) -> None:
    org = make_organization()
    endpoint = make_webhook_endpoint(org)
    old = endpoint.secret
    client = _client(org)
    assert (
        "Rotate the signing secret"
        in client.get(f"/webhooks/{endpoint.pk}/rotate/").content.decode()
    )
    response = client.post(f"/webhooks/{endpoint.pk}/rotate/")
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.previous_secret == old
    page = client.get(response["Location"]).content.decode()
    assert endpoint.secret in page and "also signs until" in page


def test_a_member_edits_and_disables_an_endpoint(db: Any) -> None:
    org = make_organization()
    endpoint = make_webhook_endpoint(org)
    response = _client(org).post(
        f"/webhooks/{endpoint.pk}/",
        {
            "url": endpoint.url,
            "description": "",
            "events": ["", "transcript.turn"],
            "enabled": "false",
        },
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.events == ["transcript.turn"] and endpoint.state == EndpointState.DISABLED


def test_a_viewer_reads_without_forms(db: Any) -> None:
    org = make_organization()
    endpoint = make_webhook_endpoint(org)
    delivery = make_delivery(org, endpoint=endpoint)
    client = _client(org, Role.VIEWER)
    page = client.get(f"/webhooks/{endpoint.pk}/").content.decode()
    assert endpoint.url in page and f"/webhooks/deliveries/{delivery.pk}/" in page
    for action in ("Save changes", "Rotate secret", "Redeliver", "Delete"):
        assert action not in page
    assert endpoint.secret not in page
    assert client.post(f"/webhooks/deliveries/{delivery.pk}/redeliver/").status_code == 403


def test_redeliver_from_the_endpoints_page(db: Any) -> None:
    org = make_organization()
    endpoint = make_webhook_endpoint(org)
    delivery = make_delivery(org, endpoint=endpoint)
    client = _client(org)
    page = client.get(f"/webhooks/{endpoint.pk}/").content.decode()
    assert f"/webhooks/deliveries/{delivery.pk}/redeliver/" in page
    response = client.post(
        f"/webhooks/deliveries/{delivery.pk}/redeliver/", {"next": f"/webhooks/{endpoint.pk}/"}
    )
    assert response["Location"] == f"/webhooks/{endpoint.pk}/"
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.PENDING and delivery.redelivered_at is not None
    # Now scheduled: the button is gone, and a second POST says why instead of sending.
    again = client.post(f"/webhooks/deliveries/{delivery.pk}/redeliver/", follow=True)
    assert "already scheduled" in again.content.decode()
    assert Delivery.objects.for_org(org).get(pk=delivery.pk).attempts == delivery.attempts


def test_the_list_shows_failing_and_disabled_endpoints(db: Any) -> None:
    org = make_organization()
    make_webhook_endpoint(org, url="https://fine.example.com/")
    broken = make_webhook_endpoint(org, url="https://broken.example.com/")
    WebhookEndpoint.objects.for_org(org).filter(pk=broken.pk).update(
        state=EndpointState.DISABLED, disabled_reason="Disabled after 5 deliveries in a row failed."
    )
    page = _client(org, Role.VIEWER).get("/webhooks/").content.decode()
    assert "is disabled and receives no events" in page
    assert "Disabled after 5 deliveries in a row failed." in page


def test_the_delivery_page_shows_the_body_sent(db: Any) -> None:
    org = make_organization()
    delivery = make_delivery(org)
    page = _client(org, Role.VIEWER).get(f"/webhooks/deliveries/{delivery.pk}/").content.decode()
    assert delivery.event.public_id in page and "&quot;api_version&quot;" in page
    listing = _client(org, Role.VIEWER).get("/webhooks/deliveries/", {"state": "failed"})
    assert f"/webhooks/deliveries/{delivery.pk}/" in listing.content.decode()
