"""Where campaigns meet a call's lifecycle (``calls.signals``)."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from calls.models import Call, Direction
from calls.signals import call_finalized
from campaigns.services import contact_call_finished


@receiver(call_finalized, dispatch_uid="campaigns.contact_on_finalize")
def _contact_on_finalize(sender: Any, call: Call, **kwargs: Any) -> None:
    if call.direction == Direction.OUTBOUND:
        contact_call_finished(call=call)
