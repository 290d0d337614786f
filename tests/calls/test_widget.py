"""The embeddable widget's public endpoint (calls/widget.py) and its dashboard page."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.test import Client

from calls.models import Call, Direction, WidgetKey
from calls.webcalls import web_call_claim
from calls.widget import widget_key_create, widget_key_disable, widget_origins_clean
from tenants.models import Role
from tenants.services import membership_create
from tests.factories import make_agent, make_organization, make_user

SHOP = "https://shop.example"
URL = "/widget/v1/web-calls/"


@pytest.fixture(autouse=True)
def _fresh_limits(settings: Any) -> None:
    cache.clear()
    settings.WIDGET_RATE_PER_KEY = "100/minute"
    settings.WIDGET_RATE_PER_ADDRESS = "100/minute"


def _post(key: str, origin: str = SHOP, **extra: Any) -> Any:
    return Client().post(
        URL, {"key": key}, content_type="application/json", HTTP_ORIGIN=origin, **extra
    )


def test_a_listed_origin_starts_a_web_call(db: Any) -> None:
    agent = make_agent(make_organization())
    key = widget_key_create(agent=agent, allowed_origins=[SHOP + "/"])
    response = _post(key.key)
    assert response.status_code == 201, response.content
    assert response["Access-Control-Allow-Origin"] == SHOP
    body = response.json()
    call = Call.objects.for_org(agent.organization).get(pk=body["call"])
    assert (call.direction, call.from_number, call.agent_id) == (Direction.WEB, "widget", agent.pk)
    token = body["ws_url"].rstrip("/").rsplit("/", 1)[1]
    # the token opens a socket only from the page's own origin
    assert web_call_claim(token=token, origin=SHOP).pk == call.pk


@pytest.mark.parametrize(
    ("origin", "code"),
    [("https://evil.example", "origin_not_allowed"), ("", "origin_not_allowed")],
)
def test_other_origins_are_refused(db: Any, origin: str, code: str) -> None:
    key = widget_key_create(agent=make_agent(make_organization()), allowed_origins=[SHOP])
    response = _post(key.key, origin=origin)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == code
    assert not Call.objects.dangerously_unscoped().exists()


def test_unknown_and_disabled_keys_are_refused(db: Any) -> None:
    key = widget_key_create(agent=make_agent(make_organization()), allowed_origins=[SHOP])
    assert _post("wk_nope").json()["error"]["code"] == "invalid_key"
    widget_key_disable(widget_key=key)
    response = _post(key.key)
    assert response.status_code == 403 and response.json()["error"]["code"] == "invalid_key"
    assert Client().post(URL, "not json", content_type="application/json").status_code == 400


def test_rate_limited_per_address_and_per_key(db: Any, settings: Any) -> None:
    key = widget_key_create(agent=make_agent(make_organization()), allowed_origins=[SHOP])
    settings.WIDGET_RATE_PER_ADDRESS = "2/minute"
    assert [_post(key.key).status_code for _ in range(3)] == [201, 201, 429]
    limited = _post(key.key)
    assert int(limited["Retry-After"]) > 0
    # another address still gets through, until the key's own limit
    settings.WIDGET_RATE_PER_KEY = "3/minute"
    other = {"REMOTE_ADDR": "10.9.9.9"}
    assert _post(key.key, **other).status_code == 201
    response = _post(key.key, **other)
    assert response.status_code == 429
    assert "this key" in response.json()["error"]["message"]


def test_preflight_answers_cors(db: Any) -> None:
    response = Client().options(URL, HTTP_ORIGIN=SHOP)
    assert response.status_code == 204
    assert response["Access-Control-Allow-Methods"] == "POST"


def test_origins_must_be_origins() -> None:
    assert widget_origins_clean(["https://a.example/", "http://b.example:8080"]) == [
        "http://b.example:8080",
        "https://a.example",
    ]
    for bad in (["ftp://a.example"], ["https://a.example/path"], []):
        with pytest.raises(ValidationError):
            widget_origins_clean(bad)


def test_the_widget_page_shows_the_snippet_and_admins_create_keys(db: Any) -> None:
    organization = make_organization()
    agent = make_agent(organization)
    user = make_user()
    membership_create(organization=organization, user=user, role=Role.ADMIN)
    client = Client()
    client.force_login(user)
    url = f"/agents/{agent.pk}/widget/"
    response = client.post(url, {"allowed_origins": "not an origin"})
    assert response.status_code == 400 and "is not an origin" in response.content.decode()
    response = client.post(url, {"allowed_origins": f"{SHOP}\nhttps://www.shop.example"})
    assert response.status_code == 302
    key = WidgetKey.objects.for_org(organization).get()
    assert key.allowed_origins == [SHOP, "https://www.shop.example"]
    page = html.unescape(client.get(url).content.decode())
    assert f'data-key="{key.key}"' in page and "/static/calls/widget.js" in page
