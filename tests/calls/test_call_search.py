"""Finding calls: the call_search selector (pages) and the API's end_reason / q filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from calls import services
from calls.models import Call
from calls.selectors import call_end_reasons, call_search
from tests.conftest import Tenant
from tests.factories import make_finished_call, make_transcript_entry
from voice.events import EndReason

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def calls(tenant_a: Tenant, tenant_b: Tenant) -> list[Call]:
    org = tenant_a.organization
    refund = make_finished_call(org, started_at=T0)
    make_transcript_entry(org, call=refund, text="I would like a REFUND please")
    make_transcript_entry(org, call=refund, text="a refund, yes", turn_index=2)
    broken = make_finished_call(
        org, started_at=T0 + timedelta(hours=1), reason=EndReason.PROVIDER_ERROR
    )
    make_transcript_entry(org, call=broken, text="hello?")
    other = make_finished_call(tenant_b.organization, started_at=T0)
    make_transcript_entry(tenant_b.organization, call=other, text="refund")
    return [refund, broken]


def test_search_in_transcripts_lists_a_call_once(tenant_a: Tenant, calls: list[Call]) -> None:
    found = call_search(organization=tenant_a.organization, text="refund")
    assert list(found) == [calls[0]]


def test_filters_combine(tenant_a: Tenant, calls: list[Call]) -> None:
    org = tenant_a.organization
    assert list(call_search(organization=org, end_reason="provider-error")) == [calls[1]]
    assert list(call_search(organization=org, status="failed")) == [calls[1]]
    assert list(call_search(organization=org, agent_id=calls[0].agent_id)) == [calls[0]]
    assert list(call_search(organization=org, phone_number_id=calls[1].phone_number_id)) == [
        calls[1]
    ]
    window = {
        "started_after": T0 + timedelta(minutes=30),
        "started_before": T0 + timedelta(hours=2),
    }
    assert list(call_search(organization=org, **window)) == [calls[1]]
    assert list(call_search(organization=org, direction="outbound")) == []
    assert list(call_search(organization=org)) == [calls[1], calls[0]]
    assert call_end_reasons(organization=org) == ["caller-hangup", "provider-error"]


def test_api_filters(tenant_a: Tenant, calls: list[Call]) -> None:
    def ids(**params: str) -> list[int]:
        response = tenant_a.client.get("/api/v1/calls/", params)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids(q="Refund") == [calls[0].pk]
    assert ids(end_reason="provider-error") == [calls[1].pk]
    assert ids(q="nobody said this") == []


def test_api_rejects_text_the_database_cannot_search(tenant_a: Tenant, calls: list[Call]) -> None:
    response = tenant_a.client.get("/api/v1/calls/", {"q": "a\x00b"})
    assert response.status_code == 400
    assert "q" in response.json()["error"]["fields"]


def test_search_sees_an_entry_written_by_the_recorder(tenant_a: Tenant, calls: list[Call]) -> None:
    from voice.events import Role, TranscriptEntry

    services.call_record_transcript(
        call=calls[1],
        entry=TranscriptEntry(
            Role.USER, "my parcel never came", turn_index=3, start_ms=1, end_ms=2
        ),
    )
    assert list(call_search(organization=tenant_a.organization, text="PARCEL")) == [calls[1]]
