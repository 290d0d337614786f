"""Deleting a call, retention purges, redaction at storage, the data settings and the
audit log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from billing.models import CallUsage
from calls import services
from calls.models import Call, ToolInvocation, TranscriptEntry, TurnMetric
from calls.retention import calls_retention_purge
from calls.signals import call_deleting, recordings_expired
from tenants.models import AuditLogEntry, Organization
from tenants.services import api_key_create
from tests.conftest import Tenant
from tests.factories import (
    make_call,
    make_finished_call,
    make_tool_invocation,
    make_transcript_entry,
    turn_timeline,
)
from voice.events import Role
from voice.events import TranscriptEntry as Said


def _full_call(organization: Organization, *, days_ago: float = 0.0) -> Call:
    call = make_finished_call(
        organization,
        started_at=timezone.now() - timedelta(days=days_ago, minutes=5),
        turns=[turn_timeline(1, speech_end_ms=1000)],
    )
    make_transcript_entry(organization, call=call, text="my order is 42")
    make_tool_invocation(organization, call=call, result='{"status": "shipped"}')
    call.analysis_status = "completed"
    call.analysis = {"summary": "About order 42.", "structured_data": None, "success": True}
    call.save(update_fields=["analysis_status", "analysis"])
    return call


@pytest.fixture
def deleting() -> Iterator[list[int]]:
    """What the recordings app would be told: calls about to be deleted."""
    seen: list[int] = []

    def receiver(sender: Any, call: Call, **kwargs: Any) -> None:
        seen.append(call.pk)

    call_deleting.connect(receiver, dispatch_uid="test-deleting")
    yield seen
    call_deleting.disconnect(dispatch_uid="test-deleting")


def test_delete_removes_the_call_and_everything_stored_with_it(
    tenant_a: Tenant, deleting: list[int]
) -> None:
    org = tenant_a.organization
    call = _full_call(org)
    other = _full_call(org)
    response = tenant_a.client.delete(f"/api/v1/calls/{call.pk}/")
    assert response.status_code == 204
    assert deleting == [call.pk]
    assert not Call.objects.for_org(org).filter(pk=call.pk).exists()
    for model in (TranscriptEntry, TurnMetric, ToolInvocation):
        assert not model.objects.for_org(org).filter(call_id=call.pk).exists()
        assert model.objects.for_org(org).filter(call_id=other.pk).exists()
    assert tenant_a.client.get(f"/api/v1/calls/{call.pk}/").status_code == 404
    # what it used stays in billing: deleting calls gives no minutes back
    usage = CallUsage.objects.for_org(org).get(call__isnull=True)
    assert usage.seconds > 0 and usage.meter_identifier == f"usage-{usage.pk}"
    # ... and the deletion is in the audit log, by the key, with nothing about the caller
    entry = AuditLogEntry.objects.for_org(org).get()
    assert (entry.action, entry.target_type, entry.target_id) == (
        "call.deleted",
        "call",
        str(call.pk),
    )
    assert entry.actor_api_key is not None and entry.actor.startswith("API key")
    assert call.from_number not in str(entry.detail) and entry.detail["transcript_entries"] == 1


def test_a_receiver_that_fails_keeps_the_call(tenant_a: Tenant) -> None:
    call = _full_call(tenant_a.organization)

    def refuse(sender: Any, call: Call, **kwargs: Any) -> None:
        raise OSError("the recording store is down")

    call_deleting.connect(refuse, dispatch_uid="test-refuse")
    try:
        response = tenant_a.client.delete(f"/api/v1/calls/{call.pk}/")
        page = _page_client(tenant_a.organization, "admin").post(f"/calls/{call.pk}/delete/")
    finally:
        call_deleting.disconnect(dispatch_uid="test-refuse")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert "nothing was deleted" in response.json()["error"]["message"]
    assert page.status_code == 503 and "nothing was deleted" in page.content.decode()
    assert Call.objects.for_org(tenant_a.organization).filter(pk=call.pk).exists()
    assert not AuditLogEntry.objects.for_org(tenant_a.organization).exists()


def test_read_only_keys_cannot_delete(tenant_a: Tenant) -> None:
    from rest_framework.test import APIClient

    call = _full_call(tenant_a.organization)
    client = APIClient()
    issued = api_key_create(organization=tenant_a.organization, scope="read_only")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    assert client.delete(f"/api/v1/calls/{call.pk}/").status_code == 403
    assert Call.objects.for_org(tenant_a.organization).filter(pk=call.pk).exists()


def test_transcript_retention_purges_old_transcripts_only(
    tenant_a: Tenant, tenant_b: Tenant
) -> None:
    org = tenant_a.organization
    old, recent = _full_call(org, days_ago=31), _full_call(org, days_ago=29)
    theirs = _full_call(tenant_b.organization, days_ago=400)  # keeps everything
    org.transcript_retention_days = 30
    org.save(update_fields=["transcript_retention_days"])

    counts = calls_retention_purge()

    assert counts == {"organizations": 1, "transcripts": 1, "recordings": 0}
    for model in (TranscriptEntry, ToolInvocation):
        assert not model.objects.for_org(org).filter(call=old).exists()
        assert model.objects.for_org(org).filter(call=recent).exists()
        assert model.objects.for_org(tenant_b.organization).filter(call=theirs).exists()
    old.refresh_from_db()
    assert old.transcript_purged_at is not None
    # the call itself and its metrics stay (analytics), and the next run finds nothing
    assert TurnMetric.objects.for_org(org).filter(call=old).exists()
    assert calls_retention_purge()["transcripts"] == 0
    entry = AuditLogEntry.objects.for_org(org).get()
    assert entry.action == "retention.purged" and entry.actor == "Glassbox (automatic)"
    assert entry.detail["transcripts_of_calls"] == 1
    assert not AuditLogEntry.objects.for_org(tenant_b.organization).exists()
    # the API says the transcript is gone rather than that nothing was said
    detail = tenant_a.client.get(f"/api/v1/calls/{old.pk}/").json()
    assert detail["transcript"] == [] and detail["transcript_purged_at"] is not None


def test_a_call_in_progress_is_never_purged(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    call = make_call(org, started_at=timezone.now() - timedelta(days=10))
    make_transcript_entry(org, call=call)
    org.transcript_retention_days = 1
    org.save(update_fields=["transcript_retention_days"])
    assert calls_retention_purge()["transcripts"] == 0
    assert TranscriptEntry.objects.for_org(org).filter(call=call).exists()


def test_recording_retention_asks_the_recordings_hook(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    org.recording_retention_days = 7
    org.save(update_fields=["recording_retention_days"])
    asked: list[tuple[int, datetime, int]] = []

    def purge(
        sender: Any, organization: Organization, started_before: datetime, days: int, **kw: Any
    ) -> int:
        asked.append((organization.pk, started_before, days))
        return 3

    recordings_expired.connect(purge, dispatch_uid="test-purge")
    try:
        now = timezone.now()
        counts = calls_retention_purge(now=now)
    finally:
        recordings_expired.disconnect(dispatch_uid="test-purge")
    assert asked == [(org.pk, now - timedelta(days=7), 7)]
    assert counts["recordings"] == 3
    assert AuditLogEntry.objects.for_org(org).get().detail["recordings"] == 3


def test_redaction_before_the_transcript_is_stored(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    call = make_call(org)
    said = "I'm jo@example.com, card 4111 1111 1111 1111, call +1 415 555 0123"
    services.call_record_transcript(call=call, entry=Said(Role.USER, said, 1, 0.0, 900.0))
    org.redact_transcripts = True
    org.save(update_fields=["redact_transcripts"])
    call.organization.refresh_from_db()
    services.call_record_transcript(call=call, entry=Said(Role.USER, said, 2, 1000.0, 1900.0))
    stored = list(
        TranscriptEntry.objects.for_org(org).filter(call=call).values_list("text", flat=True)
    )
    assert stored == [said, "I'm [email], card [card], call [phone]"]


def test_data_settings_through_the_api(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    got = tenant_a.client.get("/api/v1/organization/")
    assert got.status_code == 200
    assert got.json() == {
        "name": "Tenant A",
        "recording_retention_days": None,
        "transcript_retention_days": None,
        "redact_transcripts": False,
    }
    changed = tenant_a.client.patch(
        "/api/v1/organization/",
        {"transcript_retention_days": 90, "redact_transcripts": True},
        format="json",
    )
    assert changed.status_code == 200, changed.json()
    assert changed.json()["transcript_retention_days"] == 90
    org.refresh_from_db()
    assert (org.transcript_retention_days, org.redact_transcripts) == (90, True)
    log = tenant_a.client.get("/api/v1/audit-log/").json()["results"]
    assert [e["action"] for e in log] == ["organization.updated"]
    assert log[0]["detail"] == {
        "transcript_retention_days": {"from": None, "to": 90},
        "redact_transcripts": {"from": False, "to": True},
    }
    # back to "keep forever"
    cleared = tenant_a.client.patch(
        "/api/v1/organization/", {"transcript_retention_days": None}, format="json"
    )
    assert cleared.json()["transcript_retention_days"] is None


@pytest.mark.parametrize(
    "payload",
    [
        {"transcript_retention_days": 0},
        {"recording_retention_days": -3},
        {"recording_retention_days": "soon"},
        {"redact_transcripts": "maybe"},
    ],
)
def test_bad_data_settings_are_a_400(tenant_a: Tenant, payload: dict[str, Any]) -> None:
    response = tenant_a.client.patch("/api/v1/organization/", payload, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == set(payload)


def test_the_audit_log_is_for_full_access_keys(tenant_a: Tenant) -> None:
    from rest_framework.test import APIClient

    client = APIClient()
    issued = api_key_create(organization=tenant_a.organization, scope="read_only")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    response = client.get("/api/v1/audit-log/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


# --- the dashboard ------------------------------------------------------------------------


def _page_client(organization: Organization, role: str) -> Any:
    from django.test import Client

    from tenants.services import membership_create
    from tests.factories import make_user

    user = make_user()
    membership_create(organization=organization, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client


def test_an_admin_deletes_a_call_from_its_page(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    call = _full_call(org)
    admin, member = _page_client(org, "admin"), _page_client(org, "member")
    assert "Delete call" in admin.get(f"/calls/{call.pk}/").content.decode()
    assert "Delete call" not in member.get(f"/calls/{call.pk}/").content.decode()
    assert member.post(f"/calls/{call.pk}/delete/").status_code == 403
    confirm = admin.get(f"/calls/{call.pk}/delete/")
    assert confirm.status_code == 200 and "for good" in confirm.content.decode()
    response = admin.post(f"/calls/{call.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == "/calls/"
    assert not Call.objects.for_org(org).filter(pk=call.pk).exists()
    log = admin.get("/audit-log/").content.decode()
    assert "call.deleted" in log and f"call {call.pk}" in log


def test_data_settings_page(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    admin = _page_client(org, "admin")
    page = admin.get("/settings/data/").content.decode()
    assert 'name="transcript_retention_days"' in page and 'name="redact_transcripts"' in page
    saved = admin.post(
        "/settings/data/",
        {
            "transcript_retention_days": "30",
            "recording_retention_days": "",
            "redact_transcripts": ["false", "true"],
        },
    )
    assert saved.status_code == 302, saved.content.decode()
    org.refresh_from_db()
    assert (org.transcript_retention_days, org.recording_retention_days) == (30, None)
    assert org.redact_transcripts is True
    bad = admin.post(
        "/settings/data/",
        {
            "transcript_retention_days": "0",
            "recording_retention_days": "",
            "redact_transcripts": "false",
        },
    )
    assert bad.status_code == 400
    assert "Ensure this value is greater than or equal to 1." in bad.content.decode()
    assert "organization.updated" in admin.get("/audit-log/").content.decode()
