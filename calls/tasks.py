from __future__ import annotations

import asyncio
import logging
from typing import Any

from celery import shared_task
from django.db import transaction
from django.dispatch import receiver

from calls import analysis, retention, services
from calls.models import Call
from calls.signals import call_analyzed, call_ended, call_finalized
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


def _call(organization_id: int, call_id: int) -> Call | None:
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        return None
    return (
        Call.objects.for_org(organization).select_related("organization").filter(pk=call_id).first()
    )


@receiver(call_finalized, dispatch_uid="calls.tasks.analyze_when_committed")
def _analyze_when_committed(sender: Any, call: Call, **kwargs: Any) -> None:
    if not analysis.call_analysis_pending(call=call):
        return
    organization_id, call_id = call.organization_id, call.pk
    transaction.on_commit(
        lambda: call_analyze_task.delay(organization_id=organization_id, call_id=call_id)
    )


ANALYSIS_MAX_RETRIES = 6  # with backoff 30 s, 1, 2, 4, 8, 16 min: about half an hour


@shared_task(bind=True, name="calls.tasks.call_analyze", acks_late=True, max_retries=None)
def call_analyze_task(self: Any, *, organization_id: int, call_id: int) -> Any:
    """Post-call analysis (calls/analysis.py). Provider errors are retried with
    exponential backoff; after the last retry the analysis is stored as failed. Either
    way ``call_analyzed`` is sent once the result is stored."""
    call = _call(organization_id, call_id)
    if call is None:
        logger.warning("call_analyze: no call %s in organization %s", call_id, organization_id)
        return "missing"
    inputs = analysis.analysis_inputs(call=call)
    try:
        result = asyncio.run(analysis.analysis_run(inputs))
    except analysis.AnalysisRetryable as exc:
        retries = self.request.retries
        if retries < ANALYSIS_MAX_RETRIES:
            logger.warning("call %s: analysis will be retried: %s", call_id, exc)
            # Not raised: run eagerly (the embedded default) the retry then happens in
            # Celery's apply() instead of propagating into whatever finalized the call.
            return self.retry(exc=exc, countdown=30 * 2**retries, throw=False)
        call = analysis.call_analysis_fail(
            call=call, reason=f"the model's server kept failing ({exc})"
        )
    else:
        call = analysis.call_analysis_store(call=call, result=result)
    call_analyzed.send(sender=Call, call=call)
    return str(call.analysis_status)


@shared_task
def calls_sweep_abandoned() -> dict[str, int]:
    counts = services.calls_sweep_abandoned()
    if any(counts.values()):
        logger.warning("calls_sweep_abandoned: %s", counts)
    return counts


@shared_task(name="calls.tasks.calls_retention_purge")
def calls_retention_purge_task() -> dict[str, int]:
    """Transcripts and recordings past each organization's retention (calls/retention.py)."""
    counts = retention.calls_retention_purge()
    if counts["organizations"]:
        logger.info("retention purge: %s", counts)
    return counts
