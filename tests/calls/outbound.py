"""Helpers for outbound-call tests in a synchronous test: the fake Twilio REST server on
a thread of its own (the dialer runs the official SDK on a loop of its own, too), and
Twilio's signed callbacks to our webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.test import Client
from twilio.request_validator import RequestValidator

from tests.fakes.twilio_rest import FakeTwilioRest, RecordedRequest

ACCOUNT_SID = "AC" + "1" * 32  # tests.factories.make_credential's twilio account
AUTH_TOKEN = "twilio-token-" + "t" * 20


@contextlib.contextmanager
def fake_twilio(settings_fixture: Any) -> Iterator[FakeTwilioRest]:
    """The fake Twilio REST API, served from a background thread's event loop, with
    ``TWILIO_API_BASE_URL`` pointed at it."""
    fake = FakeTwilioRest(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-twilio", daemon=True)
    thread.start()
    try:
        url = asyncio.run_coroutine_threadsafe(fake.start(), loop).result(timeout=10)
        settings_fixture.TWILIO_API_BASE_URL = url
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def creates(fake: FakeTwilioRest) -> list[RecordedRequest]:
    """The Calls.json POSTs the fake received (placed calls), in order."""
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("/Calls.json")]


def signed_post(url: str, params: dict[str, str], *, token: str = AUTH_TOKEN) -> Any:
    """POST a form to one of our Twilio webhooks as Twilio does. ``url`` is the public
    URL Twilio was given (PUBLIC_BASE_URL + path[?query]); the signature covers it."""
    signature = RequestValidator(token).compute_signature(url, params)
    parts = urlsplit(url)
    assert url.startswith(settings.PUBLIC_BASE_URL), url
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return Client().post(
        path,
        urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )


def status_callback(fake: FakeTwilioRest, call_sid: str, status: str, **extra: str) -> Any:
    """The fake Twilio moves a call it created on and sends its status callback, signed,
    to the URL the platform gave it."""
    url, form = fake.progress(call_sid, status, **extra)
    assert url, f"{call_sid} was created without a StatusCallback"
    return signed_post(url, form, token=fake.auth_token)
