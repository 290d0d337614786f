"""Webhooks in a real Chromium: add an endpoint, copy its secret (shown once), see a
delivery to a real listener, redeliver it; viewers only read."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.factories import make_call, make_delivery, make_webhook_endpoint
from tests.webhooks.conftest import listener, local_delivery  # noqa: F401  (fixtures)
from tests.webhooks.listener import Listener, documented_verify
from webhooks import services
from webhooks.events import call_started_data
from webhooks.models import WebhookEndpoint


def test_add_an_endpoint_see_its_delivery_and_redeliver_it(
    page: Page,
    login_as: Any,
    listener: Listener,  # noqa: F811
    local_delivery: None,  # noqa: F811  (the server sends deliveries on its own pool)
) -> None:
    member = login_as("member")
    page.goto("/")
    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Webhooks").click()
    expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
    page.get_by_role("link", name="Add an endpoint").click()
    page.get_by_label("Endpoint URL").fill(listener.url)
    page.get_by_label("Description").fill("Our CRM")
    page.get_by_label("transcript.turn").uncheck()
    page.get_by_role("button", name="Add endpoint").click()

    secret = page.get_by_test_id("new-webhook-secret").inner_text().strip()
    assert secret.startswith("whsec_")
    endpoint = WebhookEndpoint.objects.for_org(member.organization).get()
    assert endpoint.secret == secret and "transcript.turn" not in endpoint.events
    page.reload()
    expect(page.get_by_test_id("new-webhook-secret")).to_have_count(0)
    expect(page.get_by_text("No deliveries yet.")).to_be_visible()

    call = make_call(member.organization)
    [delivery_id] = services.event_emit(
        call=call, event_type="call.started", source=f"call:{call.pk}", data=call_started_data(call)
    )
    services.delivery_attempt(organization=member.organization, delivery_id=delivery_id)
    assert documented_verify()(listener.received[0].body, listener.received[0].signature, secret)

    page.reload()
    row = page.locator(f"tr[data-delivery='{delivery_id}']")
    expect(row.get_by_text("Succeeded")).to_be_visible()
    expect(row.get_by_role("cell", name=re.compile(r"^200 in \d+ ms$"))).to_be_visible()
    row.get_by_role("button", name=re.compile("Redeliver")).click()
    expect(page.get_by_role("status").filter(has_text="will be sent again now")).to_be_visible()
    # Sent again, for real, by the server's own delivery pool: the same event, twice.
    got = listener.wait_for(lambda got: len(got) == 2)
    assert got[0].event["id"] == got[1].event["id"]
    page.reload()
    row = page.locator(f"tr[data-delivery='{delivery_id}']")
    expect(row.get_by_role("cell", name="2 of 2")).to_be_visible()
    expect(row.get_by_text("Succeeded")).to_be_visible()

    row.get_by_role("link", name="call.started").click()
    expect(page.get_by_role("heading", name=re.compile("call.started"))).to_be_visible()
    expect(page.locator("pre.json")).to_contain_text('"type": "call.started"')


def test_a_viewer_sees_endpoints_and_deliveries_but_no_buttons(page: Page, login_as: Any) -> None:
    viewer = login_as("viewer")
    endpoint = make_webhook_endpoint(viewer.organization, url="https://hooks.example.com/in")
    make_delivery(viewer.organization, endpoint=endpoint)
    page.goto("/webhooks/")
    expect(page.get_by_role("link", name="Add an endpoint")).to_have_count(0)
    page.get_by_role("link", name="https://hooks.example.com/in").click()
    expect(page.get_by_text("Failed")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Redeliver"))).to_have_count(0)
    expect(page.get_by_role("link", name="Rotate secret")).to_have_count(0)
    expect(page.get_by_label("Endpoint URL")).to_have_count(0)
