from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import pytest
import redis
from django.conf import settings as django_settings
from django.test import Client
from twilio.request_validator import RequestValidator

from calls.models import PhoneNumber
from tests.fakes.stripe import FakeStripe

VOICE = "/telephony/twilio/voice/"
STATUS = "/telephony/twilio/status/"
CALLER = "+15005550006"


@pytest.fixture(autouse=True)
def _own_redis_keys(settings: Any) -> Iterator[None]:
    """Each test its own Redis key prefix (organization ids repeat across tests)."""
    settings.BILLING_REDIS_PREFIX = f"glassbox-test-{secrets.token_hex(4)}:"
    yield
    url = os.environ.get("REDIS_URL")
    if url:
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=settings.BILLING_REDIS_PREFIX + "*"):
            client.delete(key)


@pytest.fixture(params=["db", "redis"])
def lease_backend(request: Any, settings: Any) -> str:
    """Run a test on each concurrency store: database rows, and Redis where available."""
    if request.param == "db":
        settings.REDIS_URL = ""
        return "db"
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs Redis (REDIS_URL)")
    settings.REDIS_URL = url
    return "redis"


def new_sid() -> str:
    return "CA" + secrets.token_hex(16)


def post_signed(path: str, number: PhoneNumber, params: dict[str, str]) -> Any:
    url = django_settings.PUBLIC_BASE_URL + path
    signature = RequestValidator(number.credential.auth_token).compute_signature(url, params)
    return Client().post(
        path,
        urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )


def dial(number: PhoneNumber, sid: str | None = None) -> Any:
    params = {
        "CallSid": sid or new_sid(),
        "AccountSid": number.credential.account_sid,
        "From": CALLER,
        "To": number.number,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }
    return post_signed(VOICE, number, params)


def status(number: PhoneNumber, sid: str, call_status: str) -> Any:
    return post_signed(STATUS, number, {"CallSid": sid, "CallStatus": call_status})


def refusal_line(response: Any) -> str | None:
    """The spoken line of a refusal, or None for an admitted call (a media stream)."""
    assert response.status_code == 200, response.content
    root = ElementTree.fromstring(response.content)
    tags = [child.tag for child in root]
    if tags == ["Connect"]:
        return None
    assert tags == ["Say", "Hangup"], response.content
    return root.find("Say").text or ""  # type: ignore[union-attr]


WEBHOOK_SECRET = "whsec_test_" + "s" * 24


@pytest.fixture
def fake_stripe(settings: Any) -> Iterator[FakeStripe]:
    """The fake Stripe on its own event loop in a thread (the SDK here is synchronous),
    with the platform's Stripe settings pointed at it."""
    fake = FakeStripe(api_key="sk_test_" + secrets.token_hex(8))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
    settings.STRIPE_SECRET_KEY = fake.api_key
    settings.STRIPE_API_BASE = fake.url
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_METER_EVENT_NAME = fake.meter_event_name
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
