from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from calls.models import Call, PhoneNumber
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
            .prefetch_related("transcript", "turns", "tool_invocations")
            .get(pk=call_id)
        )
    except Call.DoesNotExist as exc:
        raise Http404("No such call.") from exc
