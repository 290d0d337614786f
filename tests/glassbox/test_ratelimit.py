"""Unauthenticated traffic is throttled by client address: invalid API keys, unsigned or
forged Twilio webhooks, and (django-axes) failed logins, by address and by account."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from glassbox.ratelimit import Rate, client_address
from tests.conftest import Tenant
from tests.factories import make_phone_number, make_user

_addresses = (f"198.51.100.{n}" for n in itertools.count(1))


@pytest.fixture
def address() -> str:
    # a fresh client address per test: the counters live in the cache, across tests
    return next(_addresses)


@pytest.fixture
def low_rate(settings: Any) -> None:
    settings.AUTH_FAILURE_RATE = "5/minute"


def _request(remote: str, forwarded: str | None = None) -> Any:
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_x_forwarded_for_is_not_trusted_by_default() -> None:
    assert client_address(_request("203.0.113.9", "1.2.3.4")) == "203.0.113.9"


def test_trusted_proxy_count_picks_what_our_outermost_proxy_saw(settings: Any) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    # the client may send its own X-Forwarded-For; our proxy appends the real peer
    assert client_address(_request("10.0.0.2", "6.6.6.6, 192.0.2.44")) == "192.0.2.44"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_address(_request("10.0.0.2", "6.6.6.6, 192.0.2.44, 10.0.0.9")) == "192.0.2.44"
    # fewer entries than proxies: the request did not come through them
    assert client_address(_request("10.0.0.2", "")) == "10.0.0.2"
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_address(_request("10.0.0.2", "not-an-ip")) == "10.0.0.2"


def test_rates_parse() -> None:
    assert Rate.parse("20/minute") == Rate(20, 60)
    assert Rate.parse("5/10s") == Rate(5, 10)
    assert Rate.parse("100/h") == Rate(100, 3600)
    with pytest.raises(ValueError):
        Rate.parse("lots")


def test_invalid_api_keys_are_throttled_by_address(
    tenant_a: Tenant, low_rate: None, address: str
) -> None:
    bad = APIClient(REMOTE_ADDR=address)
    bad.credentials(HTTP_AUTHORIZATION="Bearer gb_not-a-real-key")
    assert [bad.get("/api/v1/agents/").status_code for _ in range(5)] == [401] * 5
    throttled = bad.get("/api/v1/agents/")
    assert throttled.status_code == 429
    assert 1 <= int(throttled["Retry-After"]) <= 60
    assert throttled.json()["error"]["code"] == "throttled"
    # another address is unaffected
    other = APIClient(REMOTE_ADDR=next(_addresses))
    other.credentials(HTTP_AUTHORIZATION="Bearer gb_not-a-real-key")
    assert other.get("/api/v1/agents/").status_code == 401
    good = APIClient(REMOTE_ADDR=next(_addresses))
    good.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant_a.key}")
    assert good.get("/api/v1/agents/").status_code == 200


def test_forged_twilio_webhooks_are_throttled_by_address(
    tenant_a: Tenant, low_rate: None, address: str
) -> None:
    number = make_phone_number(tenant_a.organization)
    body = urlencode({"CallSid": "CA" + "a1" * 16, "To": number.number, "From": "+15005550006"})
    client = Client(REMOTE_ADDR=address)

    def post() -> Any:
        return client.post(
            "/telephony/twilio/voice/",
            body,
            content_type="application/x-www-form-urlencoded",
            HTTP_X_TWILIO_SIGNATURE="forged",
        )

    assert [post().status_code for _ in range(5)] == [403] * 5
    throttled = post()
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) >= 1
    status = client.post(
        "/telephony/twilio/status/",
        urlencode({"CallSid": "CA" + "a1" * 16, "CallStatus": "completed"}),
        content_type="application/x-www-form-urlencoded",
    )
    assert status.status_code == 429
    elsewhere = Client(REMOTE_ADDR=next(_addresses)).post(
        "/telephony/twilio/voice/", body, content_type="application/x-www-form-urlencoded"
    )
    assert elsewhere.status_code == 403


def _login(client: Client, username: str, password: str) -> Any:
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


@pytest.mark.django_db
def test_admin_logins_lock_out_by_address(settings: Any, address: str) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    staff = make_user()
    staff.is_staff = True
    staff.save()
    client = Client(REMOTE_ADDR=address)
    assert [_login(client, f"nobody{i}@x.test", "wrong").status_code for i in range(3)] == [
        200,
        200,
        429,
    ]
    # the address is locked out, even for a real account with its real password
    locked = _login(client, staff.username, "pw-x1!")
    assert locked.status_code == 429 and int(locked["Retry-After"]) > 0
    # from elsewhere the account is fine
    assert _login(Client(REMOTE_ADDR=next(_addresses)), staff.username, "pw-x1!").status_code == 302


@pytest.mark.django_db
def test_admin_logins_lock_out_by_account(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    staff = make_user()
    staff.is_staff = True
    staff.save()
    # one wrong password from each of three addresses: the account locks
    codes = [
        _login(Client(REMOTE_ADDR=next(_addresses)), staff.username, "wrong").status_code
        for _ in range(3)
    ]
    assert codes[-1] == 429
    response = _login(Client(REMOTE_ADDR=next(_addresses)), staff.username, "pw-x1!")
    assert response.status_code == 429
    assert int(response["Retry-After"]) == 15 * 60


@pytest.mark.django_db
def test_authenticate_without_a_request_still_works(settings: Any) -> None:
    # The test client's login() and scripts call authenticate() without a request.
    settings.AXES_FAILURE_LIMIT = 2
    from django.contrib.auth import authenticate

    staff = make_user()
    for _ in range(3):
        assert authenticate(username=staff.username, password="wrong") is None
    assert authenticate(username=staff.username, password="pw-x1!") == staff
    assert Client().login(username=staff.username, password="pw-x1!")
