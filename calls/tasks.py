from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db import transaction
from django.dispatch import receiver

from calls import services
from calls.models import Call
from calls.signals import call_ended
from tenants.models import Organization

logger = logging.getLogger(__name__)


@receiver(call_ended, dispatch_uid="calls.tasks.finalize_when_committed")
def _finalize_when_committed(sender: Any, call: Call, **kwargs: Any) -> None:
    organization_id, call_id = call.organization_id, call.pk
    transaction.on_commit(
        lambda: call_finalize_task.delay(organization_id=organization_id, call_id=call_id)
    )


@shared_task(
    name="calls.tasks.call_finalize",  # the name queued messages already carry
    acks_late=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def call_finalize_task(*, organization_id: int, call_id: int) -> None:
    organization = Organization.objects.filter(pk=organization_id).first()
    call = (
        Call.objects.for_org(organization).filter(pk=call_id).first()
        if organization is not None
        else None
    )
    if call is None:  # deleted since, or a stale message from another deployment
        logger.warning("call_finalize: no call %s in organization %s", call_id, organization_id)
        return
    services.call_finalize(call=call)


@shared_task
def calls_sweep_abandoned() -> dict[str, int]:
    counts = services.calls_sweep_abandoned()
    if any(counts.values()):
        logger.warning("calls_sweep_abandoned: %s", counts)
    return counts
