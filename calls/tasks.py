from __future__ import annotations

import logging

from celery import shared_task

from calls import services
from calls.models import Call
from tenants.models import Organization

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def call_finalize(*, organization_id: int, call_id: int) -> None:
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
