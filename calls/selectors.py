from __future__ import annotations

from datetime import datetime

from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404

from calls.models import Call, PhoneNumber, TranscriptEntry
from tenants.models import Organization


def phone_number_list(*, organization: Organization) -> QuerySet[PhoneNumber]:
    return PhoneNumber.objects.for_org(organization)


def access_phone_number(*, organization: Organization, phone_number_id: int) -> PhoneNumber:
    try:
        return PhoneNumber.objects.for_org(organization).get(pk=phone_number_id)
    except PhoneNumber.DoesNotExist as exc:
        raise Http404("No such phone number.") from exc


def call_list(*, organization: Organization) -> QuerySet[Call]:
    return Call.objects.for_org(organization).select_related("agent", "phone_number")


def access_call(*, organization: Organization, call_id: int) -> Call:
    try:
        return (
            call_list(organization=organization)
            .prefetch_related("transcript", "turns", "tool_invocations", "control_actions")
            .get(pk=call_id)
        )
    except Call.DoesNotExist as exc:
        raise Http404("No such call.") from exc


def call_search(
    *,
    organization: Organization,
    agent_id: int | None = None,
    phone_number_id: int | None = None,
    status: str = "",
    direction: str = "",
    end_reason: str = "",
    started_after: datetime | None = None,
    started_before: datetime | None = None,
    text: str = "",
) -> QuerySet[Call]:
    """Calls, newest first, narrowed by whichever filters are given.

    ``text`` finds calls whose transcript contains it (case-insensitive); a correlated
    EXISTS, so a call that says it twice is still listed once.
    """
    calls = call_list(organization=organization)
    if agent_id is not None:
        calls = calls.filter(agent_id=agent_id)
    if phone_number_id is not None:
        calls = calls.filter(phone_number_id=phone_number_id)
    if status:
        calls = calls.filter(status=status)
    if direction:
        calls = calls.filter(direction=direction)
    if end_reason:
        calls = calls.filter(end_reason=end_reason)
    if started_after is not None:
        calls = calls.filter(started_at__gte=started_after)
    if started_before is not None:
        calls = calls.filter(started_at__lt=started_before)
    if text:
        calls = calls.filter(call_transcript_contains(organization=organization, text=text))
    return calls


def call_transcript_contains(*, organization: Organization, text: str) -> Exists:
    return Exists(
        TranscriptEntry.objects.for_org(organization).filter(
            call_id=OuterRef("pk"), text__icontains=text
        )
    )


def call_end_reasons(*, organization: Organization) -> list[str]:
    """The end reasons the organization's calls have, for a filter's choices."""
    return list(
        Call.objects.for_org(organization)
        .exclude(end_reason="")
        .order_by("end_reason")
        .values_list("end_reason", flat=True)
        .distinct()
    )
