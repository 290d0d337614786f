from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from calls.models import PhoneNumber
from tenants.models import Organization


def phone_number_list(*, organization: Organization) -> QuerySet[PhoneNumber]:
    return PhoneNumber.objects.for_org(organization)


def access_phone_number(*, organization: Organization, phone_number_id: int) -> PhoneNumber:
    try:
        return PhoneNumber.objects.for_org(organization).get(pk=phone_number_id)
    except PhoneNumber.DoesNotExist as exc:
        raise Http404("No such phone number.") from exc
