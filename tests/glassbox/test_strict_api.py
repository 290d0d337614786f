"""The API enforces what its schema states: JSON types as declared (no coercion), valid
pagination and filter values, and the constraints written into the OpenAPI document."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.conftest import Tenant
from tests.factories import make_agent, make_credential, make_tool

AGENT = {
    "name": "a",
    "stt": {"provider": "pocketsphinx"},
    "llm": {"provider": "scripted"},
    "tts": {"provider": "espeak"},
}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/agents/", {**AGENT, "name": 0}, "name"),
        ("/api/v1/agents/", {**AGENT, "first_message_interruptible": "yes"}, None),
        ("/api/v1/agents/", {**AGENT, "max_duration_s": "600"}, "max_duration_s"),
        ("/api/v1/agents/", {**AGENT, "llm": {"provider": "scripted", "max_tokens": 1.5}}, "llm"),
        ("/api/v1/agents/", {**AGENT, "llm": {"provider": "scripted", "temperature": True}}, "llm"),
        ("/api/v1/agents/", {**AGENT, "end_call_phrases": ["bye", 3]}, "end_call_phrases"),
        ("/api/v1/agents/", {**AGENT, "tools": ["1"]}, "tools"),
        ("/api/v1/tools/", {"name": "t", "kind": "end_call", "filler_after_s": False}, None),
        ("/api/v1/tools/", {"name": 7, "kind": "end_call"}, "name"),
        ("/api/v1/credentials/", {"name": "c", "provider": "openai", "api_key": 12345678}, None),
        ("/api/v1/api-keys/", {"name": 0}, "name"),
    ],
)
def test_wrong_json_types_are_a_400_not_coerced(
    tenant_a: Tenant, path: str, body: dict[str, Any], field: str | None
) -> None:
    response = tenant_a.client.post(path, body, format="json")
    assert response.status_code == 400, response.content
    fields = response.json()["error"]["fields"]
    assert len(fields) == 1
    if field is not None:
        assert field in fields


def test_filler_after_s_false_is_refused_on_update_too(tenant_a: Tenant) -> None:
    tool = make_tool(tenant_a.organization)
    response = tenant_a.client.patch(f"/api/v1/tools/{tool.pk}/", {"filler_after_s": False})
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"filler_after_s": ["Expected a number."]}


@pytest.mark.parametrize(
    "query",
    [
        "page_size=false",
        "page_size=0",
        "page_size=201",
        "page_size=",
        "page=abc",
        "page=0",
        "page=1.0",
    ],
)
def test_invalid_pagination_is_a_400(tenant_a: Tenant, query: str) -> None:
    response = tenant_a.client.get(f"/api/v1/agents/?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid"


def test_valid_pagination_still_pages(tenant_a: Tenant) -> None:
    for _ in range(3):
        make_agent(tenant_a.organization)
    body = tenant_a.client.get("/api/v1/agents/?page_size=2&page=2").json()
    assert body["count"] == 3 and len(body["results"]) == 1
    assert tenant_a.client.get("/api/v1/agents/?page=9").status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        "api-keys/?revoked=null",
        "api-keys/?revoked=maybe",
        "api-keys/?revoked=",
        "tools/?kind=",
        "calls/?agent=",
        "calls/?agent=abc",
        "credentials/?provider=nope",
    ],
)
def test_invalid_filter_values_are_a_400(tenant_a: Tenant, query: str) -> None:
    response = tenant_a.client.get(f"/api/v1/{query}")
    assert response.status_code == 400, response.content


def test_valid_filters_still_filter(tenant_a: Tenant) -> None:
    keys = tenant_a.client.get("/api/v1/api-keys/?revoked=false").json()
    assert keys["count"] == 1
    assert tenant_a.client.get("/api/v1/api-keys/?revoked=true").json()["count"] == 0
    assert tenant_a.client.get("/api/v1/agents/?name=").status_code == 200


def test_phone_numbers_and_transfer_targets_must_be_strict_e164(tenant_a: Tenant) -> None:
    credential = make_credential(tenant_a.organization, "twilio")
    spaced = tenant_a.client.post(
        "/api/v1/phone-numbers/", {"number": "+1 415 555 0123", "credential": credential.pk}
    )
    assert spaced.status_code == 400
    assert "E.164" in spaced.json()["error"]["fields"]["number"][0]
    tool = tenant_a.client.post(
        "/api/v1/tools/", {"name": "t", "kind": "transfer_call", "transfer_to": "0800-FLOWERS"}
    )
    assert tool.status_code == 400


def test_the_schema_states_the_constraints(db: Any) -> None:
    schema = APIClient().get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    assert parameter["schema"]["minimum"] == 1, path
                if parameter["name"] in ("page", "page_size"):
                    assert parameter["schema"]["minimum"] == 1
    agent = components["AgentRequest"]["properties"]
    assert agent["llm_credential"]["minimum"] == 1
    assert agent["tools"]["items"]["minimum"] == 1
    assert components["PhoneNumberRequest"]["properties"]["number"]["pattern"] == (
        r"^\+[1-9][0-9]{1,14}$"
    )
    tool = components["ToolRequest"]["properties"]
    assert "http" in tool["url"]["description"] and "url" in tool["kind"]["description"]
    assert "pattern" in str(tool["transfer_to"])
    credential = components["CredentialRequest"]["properties"]
    assert "twilio" in credential["account_sid"]["description"]
    assert "twilio" in credential["api_key"]["description"]
    assert "openai" in credential["base_url"]["description"].lower()
    # PATCH merges nested objects: nothing inside them is required
    patched_llm = schema["components"]["schemas"]["PatchedAgentRequest"]["properties"]["llm"]
    ref = patched_llm.get("$ref") or patched_llm["allOf"][0]["$ref"]
    assert "required" not in components[ref.rsplit("/", 1)[1]]
