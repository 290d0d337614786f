"""One error shape for every 4xx, and no 500 for anything a client can send."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from tests.conftest import Tenant
from tests.factories import make_agent


def _assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.mark.parametrize(
    "body",
    [
        "{bad json",
        "[" * 100_000 + "]" * 100_000,  # RecursionError inside json
        '{"name": NaN}',
        "\xff\xfe",
        "",
    ],
    ids=["syntax", "deep-nesting", "nan", "not-utf8", "empty"],
)
def test_malformed_bodies_are_400(body: str, tenant_a: Tenant) -> None:
    raw = body.encode("latin-1") if body == "\xff\xfe" else body.encode()
    response = tenant_a.client.generic(
        "POST", "/api/v1/agents/", raw, content_type="application/json"
    )
    _assert_error(response, 400)


@pytest.mark.parametrize("body", ["[]", "3", '"x"', "null"])
def test_non_object_bodies_are_400(body: str, tenant_a: Tenant) -> None:
    response = tenant_a.client.generic(
        "POST", "/api/v1/tools/", body, content_type="application/json"
    )
    _assert_error(response, 400)


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10_000)
def test_huge_payload_is_413(tenant_a: Tenant) -> None:
    payload = '{"name": "' + "x" * 20_000 + '"}'
    response = tenant_a.client.generic(
        "POST", "/api/v1/tools/", payload, content_type="application/json"
    )
    _assert_error(response, 413, "payload_too_large")


def test_wrong_types_never_500(tenant_a: Tenant) -> None:
    agent = make_agent(tenant_a.organization)
    for payload in (
        {"name": ["x"], "stt": 1, "llm": [], "tts": None},
        {"name": {"a": 1}, "turn": {"min_wait_ms": "1e309"}, "tools": {"a": 1}},
        {"name": "x", "stt": {"provider": None}, "end_call_phrases": [None, 1]},
        {"name": "\u0000", "stt": {"provider": "deepgram", "model": "\ud800"}},
        {"tools": [True, None, "1x", -1, 10**30]},
    ):
        for method, url in (("post", "/api/v1/agents/"), ("patch", f"/api/v1/agents/{agent.pk}/")):
            response = getattr(tenant_a.client, method)(url, payload)
            _assert_error(response, 400, "invalid")


def test_unsupported_media_type_is_415(tenant_a: Tenant) -> None:
    response = tenant_a.client.post(
        "/api/v1/tools/", "name=x", content_type="application/x-www-form-urlencoded"
    )
    _assert_error(response, 415, "unsupported_media_type")


def test_method_not_allowed_is_405(tenant_a: Tenant) -> None:
    agent = make_agent(tenant_a.organization)
    _assert_error(tenant_a.client.put(f"/api/v1/agents/{agent.pk}/", {}), 405, "method_not_allowed")
    _assert_error(tenant_a.client.delete("/api/v1/agents/"), 405)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nope/",
        "/api/v1/agents/abc/",
        "/api/v1/agents/1/extra/",
        "/api/nothing",
        "/api/v1/agents",
    ],
)
def test_unknown_api_paths_are_json_404(path: str, tenant_a: Tenant) -> None:
    _assert_error(tenant_a.client.get(path), 404, "not_found")
    _assert_error(tenant_a.client.post(path, {}), 404, "not_found")


def test_validation_errors_carry_fields(tenant_a: Tenant) -> None:
    error = _assert_error(tenant_a.client.post("/api/v1/tools/", {}), 400, "invalid")
    assert set(error["fields"]) == {"name", "kind"}


def test_unauthenticated_401_comes_before_404(db: Any) -> None:
    _assert_error(APIClient().get("/api/v1/agents/1/"), 401, "not_authenticated")


def test_non_api_paths_keep_django_pages(db: Any) -> None:
    response = APIClient().get("/no-such-page/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("big", ["9" * 30, str(2**63), str(2**63 - 1)])
def test_out_of_range_ids_are_404_or_400_never_500(big: str, tenant_a: Tenant) -> None:
    agent = make_agent(tenant_a.organization)
    _assert_error(tenant_a.client.get(f"/api/v1/agents/{big}/"), 404, "not_found")
    _assert_error(tenant_a.client.delete(f"/api/v1/agents/{big}/"), 404, "not_found")
    response = tenant_a.client.patch(f"/api/v1/agents/{agent.pk}/", {"tools": [int(big)]})
    _assert_error(response, 400, "invalid")
    listing = tenant_a.client.get(f"/api/v1/phone-numbers/?agent={big}")
    if int(big) < 2**63:
        assert listing.status_code == 200 and listing.json()["count"] == 0
    else:
        assert _assert_error(listing, 400, "invalid")["fields"]["agent"]


@pytest.mark.parametrize("query", ["name=%00", "agent=1e999", "agent=nan", "page=%00", "kind=%00"])
def test_hostile_query_strings_never_500(query: str, tenant_a: Tenant) -> None:
    for path in ("/api/v1/agents/", "/api/v1/phone-numbers/", "/api/v1/tools/"):
        response = tenant_a.client.get(f"{path}?{query}")
        assert response.status_code in (200, 400, 404), (path, query, response.content)
        if response.status_code != 200:
            _assert_error(response, response.status_code)
