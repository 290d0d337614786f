"""Where billing meets a call's lifecycle (``calls.signals``)."""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.signals import pre_save
from django.dispatch import receiver

from agents.models import Agent
from billing import leases, services
from billing.admission import call_key
from billing.selectors import plan_for
from calls.models import Call, PhoneNumber
from calls.signals import (
    admission_abandoned,
    call_alive,
    call_analyzed,
    call_ended,
    call_finalized,
    call_sid_assigned,
)
from tenants.models import Organization

logger = logging.getLogger(__name__)


def _release(*, organization_id: int, carrier: str, call_sid: str) -> None:
    try:
        leases.lease_release(
            organization_id=organization_id, call_key=call_key(carrier=carrier, call_sid=call_sid)
        )
    except (redis.RedisError, OSError) as exc:
        # The lease expires by itself; ending the call must not fail on it.
        logger.warning("%s: could not release its slot: %s", call_sid, exc)


def _release_call(call: Call) -> None:
    _release(
        organization_id=call.organization_id, carrier=call.carrier, call_sid=call.carrier_call_sid
    )


@receiver(call_alive, dispatch_uid="billing.refresh_lease")
def _refresh_lease(sender: Any, call: Call, **kwargs: Any) -> None:
    leases.lease_refresh(
        organization_id=call.organization_id,
        call_key=call_key(carrier=call.carrier, call_sid=call.carrier_call_sid),
    )


@receiver(call_sid_assigned, dispatch_uid="billing.move_lease")
def _move_lease(sender: Any, call: Call, previous_sid: str, **kwargs: Any) -> None:
    # The slot was taken under the placeholder SID: take it under the real one (no limit:
    # it is the same call), then drop the placeholder's.
    try:
        leases.lease_acquire(
            organization=call.organization,
            call_key=call_key(carrier=call.carrier, call_sid=call.carrier_call_sid),
            limit=None,
        )
        leases.lease_release(
            organization_id=call.organization_id,
            call_key=call_key(carrier=call.carrier, call_sid=previous_sid),
        )
    except (redis.RedisError, OSError) as exc:
        logger.warning("call %s: could not move its slot: %s", call.pk, exc)


@receiver(admission_abandoned, dispatch_uid="billing.release_abandoned")
def _release_abandoned(
    sender: Any, organization: Organization, call_sid: str, carrier: str, **kwargs: Any
) -> None:
    _release(organization_id=organization.pk, carrier=carrier, call_sid=call_sid)


@receiver(call_ended, dispatch_uid="billing.release_on_end")
def _release_on_end(sender: Any, call: Call, **kwargs: Any) -> None:
    _release_call(call)


@receiver(call_finalized, dispatch_uid="billing.usage_on_finalize")
def _usage_on_finalize(sender: Any, call: Call, **kwargs: Any) -> None:
    # The sweep finalizes dead calls without a call_ended: release here too (idempotent).
    _release_call(call)
    usage = services.usage_record_call(call=call)
    if usage is None:
        return
    services.usage_notices_send(organization=call.organization)
    from billing.tasks import usage_report_task

    organization_id, usage_id = call.organization_id, usage.pk
    transaction.on_commit(
        lambda: usage_report_task.delay(organization_id=organization_id, usage_id=usage_id)
    )


@receiver(call_analyzed, dispatch_uid="billing.usage_on_analysis")
def _usage_on_analysis(sender: Any, call: Call, **kwargs: Any) -> None:
    services.usage_record_analysis(call=call)


# -- plan limits on configuration ----------------------------------------------------
# Creating an agent or a phone number past the plan's limit is refused where the row is
# saved, so the API, the dashboard and the admin all give the same 400 without each of
# their services having to know about plans.


def _plan_limit_check(instance: Any, field: str, noun: str) -> None:
    if not instance._state.adding or not instance.organization_id:
        return
    plan = plan_for(organization_id=instance.organization_id)
    limit = getattr(plan, field, None) if plan is not None else None
    if plan is None or limit is None:
        return
    if transaction.get_connection().in_atomic_block:
        # Two creates at once would both count one under the limit: the organization's
        # row serializes them until the saving transaction ends (the services, the
        # dashboard and the admin all save inside one).
        Organization.objects.select_for_update().filter(pk=instance.organization_id).first()
    count = type(instance).objects.dangerously_unscoped()
    if count.filter(organization_id=instance.organization_id).count() >= limit:
        raise ValidationError(
            f"Your plan ({plan.name}) allows {limit} {noun}: delete one or change plan."
        )


@receiver(pre_save, sender=Agent, dispatch_uid="billing.agent_limit")
def _agent_limit(sender: Any, instance: Agent, **kwargs: Any) -> None:
    _plan_limit_check(instance, "max_agents", "agents")


@receiver(pre_save, sender=PhoneNumber, dispatch_uid="billing.number_limit")
def _number_limit(sender: Any, instance: PhoneNumber, **kwargs: Any) -> None:
    _plan_limit_check(instance, "max_numbers", "phone numbers")
