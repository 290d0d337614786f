"""The OpenAPI schema is valid, and the API honours it under property-based fuzzing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tenants.models import ApiKey
from tests.conftest import Tenant
from tests.factories import (
    make_api_key,
    make_audit_log_entry,
    make_call,
    make_campaign,
    make_phone_number,
    make_stop_list_entry,
    make_tool,
    make_transcript_entry,
)
from tests.routes import api_routes

# Every built-in check but one. positive_data_acceptance wants every schema-valid body
# accepted, but some rules cannot be written in OpenAPI and are a 400 by design: ids in
# a body must name the organization's own objects, a phone number must be a real E.164
# number (the schema states the pattern), a tenant URL must not name a private address,
# names are unique per organization. Each of those has its own tests.
EXCLUDED = [positive_data_acceptance]


def test_schema_is_valid_openapi_3(db: Any) -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)  # raises on any violation of the OpenAPI 3 meta-schema
    assert schema["openapi"].startswith("3.")


def test_schema_documents_bearer_auth_errors_and_every_route(db: Any) -> None:
    body = APIClient().get("/api/schema/?format=json").json()
    assert body["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An organization API key: `Authorization: Bearer gb_...`.",
    }
    documented = set(body["paths"])
    for route in api_routes():
        assert route.path.replace("{pk}", "{id}") in documented
    for path, operations in body["paths"].items():
        for method, operation in operations.items():
            assert operation["security"] == [{"ApiKeyAuth": []}], (method, path)
            for code in ("400", "401", "404"):
                ref = operation["responses"][code]["content"]["application/json"]["schema"]
                assert ref == {"$ref": "#/components/schemas/Error"}
    assert "key" in body["components"]["schemas"]["ApiKeyCreated"]["properties"]
    assert "api_key" not in body["components"]["schemas"]["Credential"]["properties"]


def test_docs_page_is_served(db: Any) -> None:
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    # Swagger UI comes from our static files (drf-spectacular-sidecar), not a CDN.
    assert (
        b"/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in response.content
    )


@pytest.fixture
def keep_test_connection() -> Iterator[None]:
    # The WSGI handler closes DB connections when a request ends, which would close the
    # test's transaction. Django's own test client suspends this the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def no_twilio(settings: Any) -> None:
    # POST /calls/ dials: nothing listens on the discard port, so a dial fails at once.
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"


@pytest.mark.usefixtures("keep_test_connection", "no_twilio")
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzing_finds_no_server_errors_or_schema_violations(
    mode: GenerationMode, tenant_a: Tenant
) -> None:
    org = tenant_a.organization
    own_key = ApiKey.objects.for_org(org).get()
    number = make_phone_number(org)
    # Ids of real objects, so detail operations exercise updates and deletes too, not only
    # the 404 that random ids get.
    existing = {
        "agents": number.agent_id,
        "tools": make_tool(org).pk,
        "credentials": number.credential_id,
        "phone-numbers": number.pk,
        "api-keys": make_api_key(org).api_key.pk,
        "calls": make_transcript_entry(org, call=make_call(org, phone_number=number)).call_id,
        "audit-log": make_audit_log_entry(org).pk,
        "campaigns": make_campaign(org).pk,
        "stop-list": make_stop_list_entry(org).pk,
    }
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    auth = {"Authorization": f"Bearer {tenant_a.key}"}
    strategies = []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategies.append(operation.as_strategy(mode, headers=auth))
        if "{id}" in operation.path:
            resource = operation.path.split("/")[3]
            strategies.append(
                operation.as_strategy(
                    mode, headers=auth, path_parameters={"id": existing[resource]}
                )
            )

    @given(case=st.one_of(strategies))
    @settings(
        max_examples=int(os.environ.get("FUZZ_EXAMPLES", "250")),
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        revokes_own_key = (
            case.method == "DELETE"
            and case.path.startswith("/api/v1/api-keys/")
            and (case.path_parameters or {}).get("id") == own_key.pk
        )
        if revokes_own_key:
            return  # the fuzzer would lock itself out; revocation is tested elsewhere
        response = case.call()
        case.validate_response(response, excluded_checks=EXCLUDED)

    run()
