from __future__ import annotations

import os
import secrets
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
