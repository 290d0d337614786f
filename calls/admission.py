"""Whether an inbound call may start: the checks named in ``CALL_ADMISSION_CHECKS``.

A check is ``check(organization, *, call_sid, carrier) -> Refusal | str | None``. A
refusal is spoken to the caller (``line``) and recorded on the call (``detail``, end
reason ``refused``); a plain string is both. A check may take a resource for the call (a
concurrency slot, keyed by the carrier and call SID, as the call will carry them) and must
then release it when the call ends (``calls.signals``): checks that refuse should come
before checks that take.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils.module_loading import import_string

from tenants.models import Organization


@dataclass(frozen=True, slots=True)
class Refusal:
    line: str  # what the caller hears before the hang-up
    detail: str  # what the call's record says: which limit, how far


def admission_refusal(organization: Organization, *, call_sid: str, carrier: str) -> Refusal | None:
    if not organization.is_active:
        line = "This service is not available."
        return Refusal(line=line, detail="The organization is deactivated.")
    for path in settings.CALL_ADMISSION_CHECKS:
        refusal: Refusal | str | None = import_string(path)(
            organization, call_sid=call_sid, carrier=carrier
        )
        if isinstance(refusal, str) and refusal:
            return Refusal(line=refusal, detail=refusal)
        if isinstance(refusal, Refusal):
            return refusal
    return None
