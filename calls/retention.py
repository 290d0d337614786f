"""Deleting a tenant's call data: one call on request, or everything past retention.

- ``call_delete``: a call and everything stored with it (transcript, per-turn metrics,
  tool calls, analysis; its recording through the ``call_deleting`` signal), in one
  transaction, recorded in the audit log. What the call used stays in billing (the usage
  row outlives the call), so deleting calls never gives minutes back.
- ``calls_retention_purge``: per organization, transcripts (with tool calls, whose
  arguments and results can hold what was said) of calls that started more than
  ``transcript_retention_days`` ago, and recordings past ``recording_retention_days``
  through the ``recordings_expired`` signal: the recordings app deletes its files there,
  so this module does not need to know how recordings are stored. Each purge that
  removed something is in the audit log, by the platform.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from calls.models import Call, ToolInvocation, TranscriptEntry
from calls.signals import call_deleting, recordings_expired
from tenants.models import AuditAction, Organization
from tenants.services import PLATFORM, Actor, audit_record

logger = logging.getLogger(__name__)


class CallDeleteFailed(Exception):
    """Something stored outside the call's rows (its recording) could not be deleted:
    nothing was deleted; try again later."""


def call_delete(*, call: Call, actor: Actor) -> None:
    organization = call.organization
    with transaction.atomic():
        detail: dict[str, Any] = {
            # nothing that identifies the caller: this is a deletion request
            "started_at": call.started_at.isoformat(),
            "direction": call.direction,
            "status": call.status,
            "duration_ms": call.duration_ms,
            "transcript_entries": TranscriptEntry.objects.for_org(organization)
            .filter(call=call)
            .count(),
        }
        try:
            call_deleting.send(sender=Call, call=call)
        except Exception as exc:  # any receiver's failure: the transaction rolls back
            logger.warning("call %s: not deleted: %s: %s", call.pk, type(exc).__name__, exc)
            raise CallDeleteFailed(
                "The call's recording could not be deleted just now, so nothing was "
                "deleted. Try again later."
            ) from exc
        call_id = call.pk
        call.delete()
        audit_record(
            organization=organization,
            actor=actor,
            action=AuditAction.CALL_DELETED,
            target_type="call",
            target_id=call_id,
            detail=detail,
        )


def _cutoff(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)


def _purge_transcripts(organization: Organization, *, now: datetime) -> int:
    days = organization.transcript_retention_days
    if days is None:
        return 0
    old = Call.objects.for_org(organization).filter(
        started_at__lt=_cutoff(now, days), transcript_purged_at__isnull=True
    )
    # only calls that are over: a live call's transcript is still being written
    old = old.exclude(finalized_at__isnull=True)
    ids = list(old.values_list("pk", flat=True)[:5000])
    if not ids:
        return 0
    with transaction.atomic():
        TranscriptEntry.objects.for_org(organization).filter(call_id__in=ids).delete()
        ToolInvocation.objects.for_org(organization).filter(call_id__in=ids).delete()
        Call.objects.for_org(organization).filter(pk__in=ids).update(transcript_purged_at=now)
    return len(ids)


def _purge_recordings(organization: Organization, *, now: datetime) -> int:
    days = organization.recording_retention_days
    if days is None:
        return 0
    responses = recordings_expired.send(
        sender=Call, organization=organization, started_before=_cutoff(now, days), days=days
    )
    deleted = 0
    for _, answer in responses:
        count: object = answer
        if isinstance(count, int) and not isinstance(count, bool):
            deleted += count
    return deleted


def calls_retention_purge(*, now: datetime | None = None) -> dict[str, int]:
    """Every organization with a retention set. A platform-wide job (celery beat, daily),
    each organization's rows read through its own scope."""
    now = now or timezone.now()
    totals = {"organizations": 0, "transcripts": 0, "recordings": 0}
    organizations = Organization.objects.filter(is_active=True).exclude(
        transcript_retention_days__isnull=True, recording_retention_days__isnull=True
    )
    for organization in organizations:
        transcripts = _purge_transcripts(organization, now=now)
        recordings = _purge_recordings(organization, now=now)
        if transcripts or recordings:
            totals["organizations"] += 1
            totals["transcripts"] += transcripts
            totals["recordings"] += recordings
            audit_record(
                organization=organization,
                actor=PLATFORM,
                action=AuditAction.RETENTION_PURGED,
                target_type="organization",
                target_id=organization.pk,
                detail={
                    "transcripts_of_calls": transcripts,
                    "recordings": recordings,
                    "transcript_retention_days": organization.transcript_retention_days,
                    "recording_retention_days": organization.recording_retention_days,
                },
            )
    return totals
