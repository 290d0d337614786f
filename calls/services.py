from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from agents.models import CredentialProvider
from calls.models import PhoneNumber
from tenants.models import Organization

# Deliberately says nothing about who holds the number.
NUMBER_TAKEN = "This number is already in use."


def _phone_number_save(phone_number: PhoneNumber) -> None:
    for obj in (phone_number.credential, phone_number.agent):
        if obj is not None and obj.organization_id != phone_number.organization_id:
            raise ValidationError("Referenced object belongs to another organization.")
    if phone_number.credential.provider != CredentialProvider.TWILIO:
        raise ValidationError({"credential": "Expected a twilio credential."})
    # Numbers are unique across the platform, so this check must see every tenant's rows;
    # it only answers "taken or not".
    taken = (
        PhoneNumber.objects.dangerously_unscoped()
        .filter(number=phone_number.number)
        .exclude(pk=phone_number.pk)
        .exists()
    )
    if taken:
        raise ValidationError({"number": NUMBER_TAKEN})
    try:
        with transaction.atomic():
            phone_number.save()
    except IntegrityError as exc:  # lost a race with a concurrent create
        raise ValidationError({"number": NUMBER_TAKEN}) from exc


def phone_number_create(*, organization: Organization, data: dict[str, Any]) -> PhoneNumber:
    phone_number = PhoneNumber(organization=organization, **data)
    _phone_number_save(phone_number)
    return phone_number


def phone_number_update(*, phone_number: PhoneNumber, data: dict[str, Any]) -> PhoneNumber:
    for field, value in data.items():
        setattr(phone_number, field, value)
    _phone_number_save(phone_number)
    return phone_number


def phone_number_delete(*, phone_number: PhoneNumber) -> None:
    phone_number.delete()
