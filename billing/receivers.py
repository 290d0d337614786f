"""Where billing meets a call's lifecycle (``calls.signals``)."""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.db import transaction
from django.dispatch import receiver

from billing import leases, services
from billing.admission import call_key
from calls.models import Call
from calls.signals import call_alive, call_ended, call_finalized

logger = logging.getLogger(__name__)


def _release(call: Call) -> None:
    try:
        leases.lease_release(
            organization_id=call.organization_id,
            call_key=call_key(carrier=call.carrier, call_sid=call.carrier_call_sid),
        )
    except (redis.RedisError, OSError) as exc:
        # The lease expires by itself; ending the call must not fail on it.
        logger.warning("call %s: could not release its slot: %s", call.pk, exc)


@receiver(call_alive, dispatch_uid="billing.refresh_lease")
def _refresh_lease(sender: Any, call: Call, **kwargs: Any) -> None:
    leases.lease_refresh(
        organization_id=call.organization_id,
        call_key=call_key(carrier=call.carrier, call_sid=call.carrier_call_sid),
    )


@receiver(call_ended, dispatch_uid="billing.release_on_end")
def _release_on_end(sender: Any, call: Call, **kwargs: Any) -> None:
    _release(call)


@receiver(call_finalized, dispatch_uid="billing.usage_on_finalize")
def _usage_on_finalize(sender: Any, call: Call, **kwargs: Any) -> None:
    # The sweep finalizes dead calls without a call_ended: release here too (idempotent).
    _release(call)
    usage = services.usage_record_call(call=call)
    if usage is None:
        return
    from billing.tasks import usage_report_task

    organization_id, usage_id = call.organization_id, usage.pk
    transaction.on_commit(
        lambda: usage_report_task.delay(organization_id=organization_id, usage_id=usage_id)
    )
