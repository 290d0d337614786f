"""A campaign run by real Celery workers through the Redis broker, across a worker
restart: the tick, the finalizations that drive it and duplicate deliveries of the tick
all go through the broker, and nobody is called twice."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings

from campaigns.models import Campaign
from campaigns.tasks import campaign_tick_task
from glassbox.celery import app as celery_app
from tests.calls.outbound import creates, fake_twilio, status_callback
from tests.conftest import Tenant
from tests.factories import make_agent, make_phone_number
from tests.fakes.twilio_rest import FakeTwilioRest

pytestmark = [
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs the Redis broker (REDIS_URL)"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def twilio(settings: Any) -> Iterator[FakeTwilioRest]:
    settings.PUBLIC_BASE_URL = "https://voice.glassbox.example"
    with fake_twilio(settings) as fake:
        yield fake


def _until(predicate: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _worker() -> Any:
    return start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10)


def test_a_worker_restart_mid_campaign_calls_nobody_twice(
    tenant_a: Tenant, twilio: FakeTwilioRest
) -> None:
    org = tenant_a.organization
    agent = make_agent(org)
    number = make_phone_number(org, agent=agent)
    contacts = [{"number": f"+1415555{4000 + i:04d}"} for i in range(4)]
    body = {
        "name": "Restart",
        "agent": agent.pk,
        "from_numbers": [number.pk],
        "window_start": "00:00",
        "window_end": "23:59:59",
        "max_concurrency": 2,
        "contacts": contacts,
    }
    with _worker():
        response = tenant_a.client.post("/api/v1/campaigns/", body, format="json")
        assert response.status_code == 201, response.json()
        _until(lambda: len(creates(twilio)) == 2, "the first two dials")
    # The worker is gone. The two calls end; their finalizations wait in the broker, and
    # so do two duplicate deliveries of the campaign's tick.
    campaign_id = response.json()["id"]
    for sid in list(twilio.calls):
        assert status_callback(twilio, sid, "completed", CallDuration="4").status_code == 204
    for _ in range(2):
        campaign_tick_task.delay(organization_id=org.pk, campaign_id=campaign_id)
    assert len(creates(twilio)) == 2
    with _worker():
        _until(lambda: len(creates(twilio)) == 4, "the other two dials")
        for sid in list(twilio.calls)[2:]:
            status_callback(twilio, sid, "completed", CallDuration="4")

        def done() -> bool:
            return Campaign.objects.for_org(org).get(pk=campaign_id).status == "completed"

        _until(done, "the campaign to complete")
    dialed = sorted(r.value("To") or "" for r in creates(twilio))
    assert dialed == sorted(c["number"] for c in contacts)
