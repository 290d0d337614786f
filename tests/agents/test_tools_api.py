from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from agents.models import Tool
from tests.conftest import Tenant
from tests.factories import make_organization, make_tool

PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_http_tool(tenant_a: Tenant) -> None:
    response = tenant_a.client.post(
        "/api/v1/tools/",
        {
            "name": "get_weather",
            "description": "Weather by city.",
            "kind": "http",
            "url": "https://tools.example.test/weather",
            "method": "GET",
            "headers": {"X-Token": "abc"},
            "parameters": PARAMS,
            "timeout_s": 5,
        },
    )
    assert response.status_code == 201, response.json()
    assert response.json()["parameters"] == PARAMS


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "has space", "kind": "end_call"}, "name"),
        ({"name": "x" * 65, "kind": "end_call"}, "name"),
        ({"name": "t", "kind": "teleport"}, "kind"),
        ({"name": "t", "kind": "http"}, "url"),
        ({"name": "t", "kind": "http", "url": "https://x.test", "method": "TRACE"}, "method"),
        ({"name": "t", "kind": "http", "url": "https://x.test", "timeout_s": 600}, "timeout_s"),
        (
            {"name": "t", "kind": "http", "url": "https://x.test", "headers": {"a b": "c"}},
            "headers",
        ),
        (
            {"name": "t", "kind": "http", "url": "https://x.test", "headers": {"a": "b\r\nc: d"}},
            "headers",
        ),
        ({"name": "t", "kind": "end_call", "parameters": {"type": "string"}}, "parameters"),
        (
            {"name": "t", "kind": "end_call", "parameters": {"type": "object", "properties": 3}},
            "parameters",
        ),
        (
            {"name": "t", "kind": "end_call", "parameters": {"type": "object", "x": "\u0000"}},
            "parameters",
        ),
        ({"name": "t", "kind": "transfer_call", "transfer_to": "12345"}, "transfer_to"),
        ({"name": "t", "kind": "collect_digits", "max_digits": 0}, "max_digits"),
        ({"name": "t", "kind": "collect_digits", "terminator": "5"}, "terminator"),
        ({"name": "t", "kind": "collect_digits", "secure": True}, "url"),
        (
            {"name": "t", "kind": "collect_digits", "secure": True, "url": "http://10.0.0.1/x"},
            "url",
        ),
    ],
)
def test_tool_validation(payload: dict[str, Any], field: str, tenant_a: Tenant) -> None:
    response = tenant_a.client.post("/api/v1/tools/", payload)
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]


def test_builtin_tools(tenant_a: Tenant) -> None:
    transfer = tenant_a.client.post(
        "/api/v1/tools/",
        {"name": "transfer", "kind": "transfer_call", "transfer_to": "+14155552671"},
    )
    assert transfer.status_code == 201, transfer.json()
    assert transfer.json()["transfer_to"] == "+14155552671"
    digits = tenant_a.client.post(
        "/api/v1/tools/",
        {"name": "pin", "kind": "collect_digits", "max_digits": 6, "terminator": "*"},
    )
    assert digits.status_code == 201, digits.json()
    assert digits.json()["secure"] is False


def test_secure_digits_need_a_destination_and_keep_it(tenant_a: Tenant) -> None:
    created = tenant_a.client.post(
        "/api/v1/tools/",
        {
            "name": "card",
            "kind": "collect_digits",
            "secure": True,
            "reveal_last_digits": True,
            "url": "https://payments.example.com/digits",
        },
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["secure"], body["reveal_last_digits"]) == (True, True)
    assert body["url"] == "https://payments.example.com/digits"
    # a PATCH that drops the destination of a secure tool is refused
    tool_id = body["id"]
    cleared = tenant_a.client.patch(f"/api/v1/tools/{tool_id}/", {"url": ""})
    assert cleared.status_code == 400
    assert "url" in cleared.json()["error"]["fields"]


def test_tool_names_are_unique_per_organization(tenant_a: Tenant) -> None:
    make_tool(tenant_a.organization, name="lookup")
    make_tool(make_organization(), name="lookup")  # another tenant may use the name
    response = tenant_a.client.post("/api/v1/tools/", {"name": "lookup", "kind": "end_call"})
    assert response.status_code == 400
    assert "name" in response.json()["error"]["fields"]
    other = make_tool(tenant_a.organization, name="other")
    rename = tenant_a.client.patch(f"/api/v1/tools/{other.pk}/", {"name": "lookup"})
    assert rename.status_code == 400


def test_switching_to_http_requires_a_url(tenant_a: Tenant) -> None:
    tool = make_tool(tenant_a.organization)
    response = tenant_a.client.patch(f"/api/v1/tools/{tool.pk}/", {"kind": "http"})
    assert response.status_code == 400
    assert "url" in response.json()["error"]["fields"]


def test_filter_by_kind(tenant_a: Tenant) -> None:
    make_tool(tenant_a.organization)
    make_tool(tenant_a.organization, kind="http", url="https://x.test/")
    body = tenant_a.client.get("/api/v1/tools/?kind=http").json()
    assert [row["kind"] for row in body["results"]] == ["http"]
    assert tenant_a.client.get("/api/v1/tools/?kind=nope").status_code == 400


def test_tool_headers_are_write_only_and_encrypted_at_rest(tenant_a: Tenant) -> None:
    secret = "Bearer tool-server-s3cret-value"
    created = tenant_a.client.post(
        "/api/v1/tools/",
        {
            "name": "crm",
            "kind": "http",
            "url": "https://crm.example.test/hook",
            "headers": {"Authorization": secret, "X-Env": "prod"},
        },
    )
    assert created.status_code == 201, created.json()
    tool_id = created.json()["id"]
    assert created.json()["header_names"] == ["Authorization", "X-Env"]
    for response in (
        created,
        tenant_a.client.get(f"/api/v1/tools/{tool_id}/"),
        tenant_a.client.get("/api/v1/tools/"),
        tenant_a.client.patch(f"/api/v1/tools/{tool_id}/", {"description": "CRM"}),
    ):
        assert secret not in response.content.decode()
        assert "prod" not in response.content.decode()
    with connection.cursor() as cursor:
        cursor.execute("SELECT headers FROM agents_tool WHERE id = %s", [tool_id])
        (raw,) = cursor.fetchone()
    assert secret not in raw and "Authorization" not in raw
    tool = Tool.objects.for_org(tenant_a.organization).get(pk=tool_id)
    assert tool.headers == {"Authorization": secret, "X-Env": "prod"}

    replaced = tenant_a.client.patch(f"/api/v1/tools/{tool_id}/", {"headers": {}})
    assert replaced.json()["header_names"] == []
    tool.refresh_from_db()
    assert tool.headers == {}
