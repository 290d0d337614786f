"""The endpoints' API: the secret shown once, validation in the API's error shape,
rotation, roles of API keys, and the events' shapes in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

import jsonschema
from drf_spectacular.generators import SchemaGenerator

from tenants.services import api_key_create
from tests.conftest import Tenant
from tests.factories import make_finished_call, make_webhook_endpoint, turn_timeline
from tests.webhooks.listener import Listener
from webhooks import events
from webhooks.models import WebhookEndpoint

URL = "/api/v1/webhook-endpoints/"


def test_create_shows_the_generated_secret_once(tenant_a: Tenant) -> None:
    response = tenant_a.client.post(
        URL, {"url": "https://hooks.example.com/in", "events": ["call.ended"]}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    assert body["events"] == ["call.ended"] and body["state"] == "enabled"
    stored = WebhookEndpoint.objects.for_org(tenant_a.organization).get(pk=body["id"])
    assert stored.secret == body["secret"]
    detail = tenant_a.client.get(f"{URL}{body['id']}/").json()
    listed = tenant_a.client.get(URL).json()["results"][0]
    for shown in (detail, listed):
        assert "secret" not in shown and body["secret"] not in str(shown)


def test_the_secret_is_encrypted_at_rest(tenant_a: Tenant) -> None:
    from django.db import connection

    endpoint = make_webhook_endpoint(tenant_a.organization)
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM webhooks_webhookendpoint WHERE id = %s", [endpoint.pk])
        (raw,) = cursor.fetchone()
    assert raw and endpoint.secret not in raw


def test_events_default_to_all_and_are_checked(tenant_a: Tenant) -> None:
    body = tenant_a.client.post(URL, {"url": "https://hooks.example.com/a"}, format="json").json()
    assert set(body["events"]) == {
        "call.started",
        "call.ended",
        "call.analyzed",
        "call.recording_ready",
        "transcript.turn",
        "billing.usage_threshold",
    }
    bad = tenant_a.client.post(
        URL, {"url": "https://hooks.example.com/a", "events": ["call.exploded"]}, format="json"
    )
    assert bad.status_code == 400
    assert "events" in bad.json()["error"]["fields"]
    empty = tenant_a.client.post(
        URL, {"url": "https://hooks.example.com/a", "events": []}, format="json"
    )
    assert empty.status_code == 400


def test_a_private_url_is_refused_naming_the_field(tenant_a: Tenant, settings: Any) -> None:
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    for url in ("http://127.0.0.1:8000/hook", "http://169.254.169.254/latest", "http://10.0.0.5/"):
        response = tenant_a.client.post(URL, {"url": url}, format="json")
        assert response.status_code == 400, url
        assert "url" in response.json()["error"]["fields"]


def test_a_host_name_that_cannot_be_resolved_is_a_400_not_a_500(tenant_a: Tenant) -> None:
    # Found by the schema fuzz: a 64+ character label made the resolver's IDNA step raise.
    for url in ("http://" + "a" * 70 + ".com/", "http://a." + "b" * 64 + "/"):
        response = tenant_a.client.post(URL, {"url": url}, format="json")
        assert response.status_code == 400, url
        assert "url" in response.json()["error"]["fields"]


def test_update_and_delete(tenant_a: Tenant) -> None:
    endpoint = make_webhook_endpoint(tenant_a.organization)
    response = tenant_a.client.patch(
        f"{URL}{endpoint.pk}/",
        {"events": ["transcript.turn"], "description": "Turns", "enabled": False},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["events"], body["description"], body["enabled"], body["state"]) == (
        ["transcript.turn"],
        "Turns",
        False,
        "disabled",
    )
    assert tenant_a.client.delete(f"{URL}{endpoint.pk}/").status_code == 204
    assert not WebhookEndpoint.objects.for_org(tenant_a.organization).exists()


def test_rotate_returns_the_new_secret_once_and_keeps_the_old_one_for_the_overlap(
    tenant_a: Tenant,
) -> None:
    endpoint = make_webhook_endpoint(tenant_a.organization)
    old = endpoint.secret
    response = tenant_a.client.post(
        f"{URL}{endpoint.pk}/rotate/", {"overlap_s": 600}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["secret"] != old and body["previous_secret_expires_at"] is not None
    endpoint.refresh_from_db()
    assert endpoint.secret == body["secret"] and endpoint.previous_secret == old
    too_long = tenant_a.client.post(
        f"{URL}{endpoint.pk}/rotate/", {"overlap_s": 10**9}, format="json"
    )
    assert too_long.status_code == 400 and "overlap_s" in too_long.json()["error"]["fields"]
    now = tenant_a.client.post(f"{URL}{endpoint.pk}/rotate/", {"overlap_s": 0}, format="json")
    assert now.json()["previous_secret_expires_at"] is None


def test_read_only_keys_read_but_do_not_configure(tenant_a: Tenant) -> None:
    from rest_framework.test import APIClient

    endpoint = make_webhook_endpoint(tenant_a.organization)
    issued = api_key_create(organization=tenant_a.organization, scope="read_only")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    assert client.get(URL).status_code == 200
    assert client.get("/api/v1/webhook-deliveries/").status_code == 200
    for response in (
        client.post(URL, {"url": "https://hooks.example.com/x"}, format="json"),
        client.post(f"{URL}{endpoint.pk}/rotate/", {}, format="json"),
        client.patch(f"{URL}{endpoint.pk}/", {"enabled": False}, format="json"),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"


def _schema_component(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return schema["components"]["schemas"][name], schema


def _nullable_as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` in JSON Schema's words (``null`` is one more
    allowed type), so a JSON Schema validator reads the schema as OpenAPI means it."""
    if isinstance(node, list):
        return [_nullable_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _nullable_as_json_schema(value) for key, value in node.items()}
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        else:
            return {"anyOf": [out, {"type": "null"}]}
    return out


def _validators() -> dict[str, jsonschema.Draft202012Validator]:
    """Per event type, a validator for its variant of WebhookEvent, picked as OpenAPI
    says: by the discriminator's mapping."""
    component, schema = _schema_component("WebhookEvent")
    schema = _nullable_as_json_schema(schema)
    mapping = component["discriminator"]["mapping"]
    assert component["discriminator"]["propertyName"] == "type"
    return {
        event_type: jsonschema.Draft202012Validator(
            {"$ref": ref, "components": schema["components"]}
        )
        for event_type, ref in mapping.items()
    }


def test_event_payloads_match_their_documented_schema(tenant_a: Tenant, listener: Listener) -> None:
    """What is sent is what /api/schema/ documents (component WebhookEvent and its
    variants), so the documented shapes cannot drift from the real ones."""
    from datetime import timedelta

    from django.utils import timezone

    org = tenant_a.organization
    call = make_finished_call(
        org,
        started_at=timezone.now() - timedelta(minutes=5),
        turns=[turn_timeline(1, speech_end_ms=1000), turn_timeline(2, speech_end_ms=5000)],
    )
    entry = call.transcript.create(
        organization=org, role="user", text="hello", turn_index=1, start_ms=0.0, end_ms=900.0
    )
    bodies = {
        "call.started": events.call_started_data(call),
        "call.ended": events.call_ended_data(call),
        "call.analyzed": events.call_analyzed_data(call, {"summary": "s", "success": True}),
        "call.recording_ready": events.call_recording_ready_data(call),
        "transcript.turn": events.transcript_turn_data(call, entry),
        "billing.usage_threshold": events.usage_threshold_data(
            kind="cap",
            percent=100,
            used_minutes=1000.25,
            limit_minutes=1000,
            plan="Starter",
            period_start=timezone.now() - timedelta(days=20),
            period_end=timezone.now() + timedelta(days=10),
        ),
    }
    validators = _validators()
    assert set(validators) == set(bodies)
    for event_type, data in bodies.items():
        validator = validators[event_type]
        payload = events.envelope(
            public_id="evt_x", event_type=event_type, created=timezone.now(), data=data
        )
        errors = [e.message for e in validator.iter_errors(payload)]
        assert not errors, (event_type, errors)
    ended = bodies["call.ended"]
    assert ended["metrics"]["turns"] == 2
    assert ended["metrics"]["stages"]["voice_to_voice_ms"]["p50"] is not None
    assert ended["usage"]["llm_prompt_tokens"] == 800
    assert ended["call"]["status"] == "completed"


def test_the_readme_shows_the_documented_snippet() -> None:
    from pathlib import Path

    from tests.webhooks.listener import documented_snippet

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Event webhooks", 1)[1].split("\n## ", 1)[0]
    assert "```python\n" + documented_snippet("python") + "```" in section
