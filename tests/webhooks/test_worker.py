"""Through the Redis broker to a real Celery worker (runs only when ``REDIS_URL`` is
set): a call's event is built and delivered by the worker, and a task sent again for a
delivery that succeeded is a no-op there."""

from __future__ import annotations

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings

from calls import services as call_services
from glassbox.celery import app as celery_app
from tests.factories import make_call, make_organization, make_webhook_endpoint
from tests.webhooks.listener import Listener, documented_verify
from webhooks.models import Delivery
from webhooks.tasks import deliver_task, deliveries_due_task

pytestmark = [
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs the Redis broker (REDIS_URL)"),
    pytest.mark.django_db(transaction=True),
]


def test_a_worker_delivers_once_however_often_the_task_is_sent(listener: Listener) -> None:
    org = make_organization()
    endpoint = make_webhook_endpoint(org, url=listener.url, events=["call.started"])
    call = make_call(org)
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        call_services.call_stream_started(call=call, stream_sid="MZ" + "3" * 32)
        [request] = listener.wait_for(lambda got: len(got) == 1)
        delivery = Delivery.objects.for_org(org).get()
        for _ in range(200):
            delivery.refresh_from_db()
            if delivery.state == "succeeded":
                break
            listener.wait_for(lambda got: True, timeout_s=0.05)
        assert delivery.state == "succeeded"
        # A duplicate message (a redelivery after a worker restart, say) and the sweep.
        again = deliver_task.delay(organization_id=org.pk, delivery_id=delivery.pk)
        assert again.get(timeout=30) == "skipped"
        assert deliveries_due_task.delay().get(timeout=30) == {"dispatched": 0}
    assert len(listener.received) == 1
    assert documented_verify()(request.body, request.signature, endpoint.secret)
