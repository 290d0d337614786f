from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Tenant
from tests.factories import make_agent, make_credential, make_phone_number


def _payload(tenant: Tenant, **extra: Any) -> dict[str, Any]:
    return {
        "number": "+14155552671",
        "credential": make_credential(tenant.organization, "twilio").pk,
        "agent": make_agent(tenant.organization).pk,
        **extra,
    }


def test_create_takes_strict_e164(tenant_a: Tenant) -> None:
    # The schema states the E.164 pattern; formatted input is refused, not rewritten.
    formatted = tenant_a.client.post(
        "/api/v1/phone-numbers/", _payload(tenant_a, number="+1 (415) 555-2671")
    )
    assert formatted.status_code == 400
    assert "Use E.164 format, e.g. +14155550123." in formatted.json()["error"]["fields"]["number"]
    response = tenant_a.client.post(
        "/api/v1/phone-numbers/", _payload(tenant_a, number="+14155552671")
    )
    assert response.status_code == 201, response.json()
    assert response.json()["number"] == "+14155552671"
    assert response.json()["carrier"] == "twilio"


@pytest.mark.parametrize("number", ["4155552671", "+1415", "+1999", "not a number", "+" + "9" * 30])
def test_invalid_numbers(number: str, tenant_a: Tenant) -> None:
    response = tenant_a.client.post("/api/v1/phone-numbers/", _payload(tenant_a, number=number))
    assert response.status_code == 400
    assert "number" in response.json()["error"]["fields"]


def test_number_in_use_by_another_tenant_does_not_leak(tenant_a: Tenant, tenant_b: Tenant) -> None:
    make_phone_number(tenant_a.organization, number="+14155552671")
    foreign = tenant_b.client.post("/api/v1/phone-numbers/", _payload(tenant_b))
    make_phone_number(tenant_b.organization, number="+14155552672")
    own = tenant_b.client.post("/api/v1/phone-numbers/", _payload(tenant_b, number="+14155552672"))
    assert foreign.status_code == own.status_code == 400
    assert foreign.json() == own.json()
    assert foreign.json()["error"]["fields"] == {"number": ["This number is already in use."]}
    assert tenant_a.organization.name not in foreign.content.decode()


def test_credential_must_be_twilio(tenant_a: Tenant) -> None:
    openai = make_credential(tenant_a.organization, "openai")
    response = tenant_a.client.post(
        "/api/v1/phone-numbers/", _payload(tenant_a, credential=openai.pk)
    )
    assert response.status_code == 400
    assert "credential" in response.json()["error"]["fields"]


def test_reassign_and_unassign_agent(tenant_a: Tenant) -> None:
    number = make_phone_number(tenant_a.organization)
    other = make_agent(tenant_a.organization)
    url = f"/api/v1/phone-numbers/{number.pk}/"
    assert tenant_a.client.patch(url, {"agent": other.pk}).json()["agent"] == other.pk
    assert tenant_a.client.patch(url, {"agent": None}).json()["agent"] is None
    listed = tenant_a.client.get(f"/api/v1/phone-numbers/?agent={other.pk}").json()
    assert listed["count"] == 0


def test_deleting_an_agent_unassigns_its_numbers(tenant_a: Tenant) -> None:
    number = make_phone_number(tenant_a.organization)
    assert tenant_a.client.delete(f"/api/v1/agents/{number.agent_id}/").status_code == 204
    assert tenant_a.client.get(f"/api/v1/phone-numbers/{number.pk}/").json()["agent"] is None
