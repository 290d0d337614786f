"""GET /api/v1/analytics/{latency,calls,agents}/: the analytics selectors over the API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from calls.analytics import STAGES
from tests.conftest import Tenant
from tests.factories import make_finished_call, turn_timeline
from voice.events import EndReason


@pytest.fixture
def seeded(tenant_a: Tenant) -> list[Any]:
    now = timezone.now()
    first = make_finished_call(
        tenant_a.organization,
        started_at=now - timedelta(hours=2),
        duration_s=120,
        turns=[
            turn_timeline(1, speech_end_ms=1000, llm_ttft_ms=300),
            turn_timeline(2, speech_end_ms=6000, llm_ttft_ms=500, interrupted_after_ms=200),
        ],
    )
    second = make_finished_call(
        tenant_a.organization,
        started_at=now - timedelta(days=2),
        duration_s=60,
        reason=EndReason.PROVIDER_ERROR,
        turns=[turn_timeline(1, speech_end_ms=1000, llm_ttft_ms=700)],
    )
    return [first, second]


def test_latency(tenant_a: Tenant, seeded: list[Any]) -> None:
    body = tenant_a.client.get("/api/v1/analytics/latency/").json()

    assert body["period"] == "7d" and body["agent"] is None
    assert body["turns"] == 3
    assert set(body["stages"]) == set(STAGES)
    assert body["stages"]["llm_ttft_ms"] == {"p50": 500.0, "p95": 680.0, "count": 3}
    assert body["stages"]["endpointing_ms"] == {"p50": 240.0, "p95": 240.0, "count": 3}
    assert len(body["by_day"]) == 8
    assert sum(day["turns"] for day in body["by_day"]) == 3
    assert {"date", "turns", "voice_to_voice_ms"} == set(body["by_day"][-1])


def test_latency_for_one_agent(tenant_a: Tenant, seeded: list[Any]) -> None:
    agent = seeded[1].agent_id
    body = tenant_a.client.get("/api/v1/analytics/latency/", {"agent": agent}).json()
    assert body["agent"] == agent
    assert body["stages"]["llm_ttft_ms"] == {"p50": 700.0, "p95": 700.0, "count": 1}


def test_calls(tenant_a: Tenant, seeded: list[Any]) -> None:
    body = tenant_a.client.get("/api/v1/analytics/calls/", {"period": "30d"}).json()

    assert body["period"] == "30d"
    assert (body["calls"], body["minutes"], body["completed"], body["failed"]) == (2, 3.0, 1, 1)
    assert (body["turns"], body["interruptions"], body["interruptions_per_call"]) == (3, 1, 0.5)
    assert body["end_reasons"] == [
        {"reason": "caller-hangup", "count": 1},
        {"reason": "provider-error", "count": 1},
    ]
    assert len(body["by_day"]) == 31
    assert sum(day["minutes"] for day in body["by_day"]) == 3.0


def test_calls_in_the_last_24_hours(tenant_a: Tenant, seeded: list[Any]) -> None:
    body = tenant_a.client.get("/api/v1/analytics/calls/", {"period": "24h"}).json()
    assert (body["calls"], body["minutes"]) == (1, 2.0)


def test_agents(tenant_a: Tenant, seeded: list[Any]) -> None:
    body = tenant_a.client.get("/api/v1/analytics/agents/").json()
    assert [(row["agent"], row["turns"]) for row in body["results"]] == [
        (seeded[0].agent_id, 2),
        (seeded[1].agent_id, 1),
    ]
    assert body["results"][0]["agent_name"] == seeded[0].agent.name
    assert body["results"][0]["voice_to_voice_ms"]["count"] == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"period": "2w"}, "period"),
        ({"agent": "abc"}, "agent"),
        ({"agent": "-1"}, "agent"),
        ({"agent": str(2**70)}, "agent"),
    ],
)
@pytest.mark.parametrize("name", ["latency", "calls", "agents"])
def test_bad_parameters_are_400(
    tenant_a: Tenant, name: str, params: dict[str, str], field: str
) -> None:
    response = tenant_a.client.get(f"/api/v1/analytics/{name}/", params)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"]


def test_needs_an_api_key(db: Any) -> None:
    response = APIClient().get("/api/v1/analytics/latency/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_documented_with_typed_responses(db: Any) -> None:
    schema = APIClient().get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/analytics/latency/"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"agent", "period"}
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    component = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"turns", "stages", "by_day", "period"} <= set(component["properties"])
    assert "400" in operation["responses"]
