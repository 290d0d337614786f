"""Outbound calls: check the number, admit the call, place it through Twilio's REST API.

The Call row is written *before* Twilio is asked (with a placeholder SID, ``pending-...``),
so the call's answer webhook and status callbacks always find it, the concurrency slot
is held under a key that exists, and a crash between the two leaves a visible record
rather than an untracked call. When Twilio answers with the SID, the row takes it and
``call_sid_assigned`` tells billing to move the slot to the real key.

When the callee answers, Twilio fetches ``/telephony/twilio/outbound/<call id>/`` (signed
like every Twilio webhook), which answers with the same ``<Connect><Stream>`` as an
inbound call: same engine, transcript and metrics from there on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import phonenumbers
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import Agent
from calls.admission import admission_refusal
from calls.callconfig import agent_snapshot
from calls.live import call_publish
from calls.models import Call, CallStatus, DialingPolicy, Direction, PhoneNumber
from calls.signals import admission_abandoned, call_sid_assigned
from calls.variables import variables_clean, variables_missing
from tenants.models import Organization
from voice.carriers.twilio_rest import TwilioRestClient, TwilioRestError

logger = logging.getLogger(__name__)

PENDING_PREFIX = "pending-"
# Twilio's REST API answers in well under a second; past this the dial counts as failed.
TWILIO_REST_TIMEOUT_S = 10.0
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
# The voicemail policy's detection mode: a verdict as soon as known (to hang up), or
# after the greeting's beep (to leave a message).
AMD_MODES = {"hangup": "Enable", "leave_message": "DetectMessageEnd"}

T = TypeVar("T")
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="twilio-rest")


class OutboundError(Exception):
    """The call cannot be placed; ``field`` names the input at fault (for a 400)."""

    def __init__(self, message: str, *, field: str = "non_field_errors") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class OutboundRefused(OutboundError):
    """Admission refused the call (plan limits, concurrency): nothing was dialed."""


def twilio_rest_run(
    phone_number: PhoneNumber, action: Callable[[TwilioRestClient], Awaitable[T]]
) -> T:
    """Run one REST action for ``phone_number``'s account on a loop of its own, in a
    worker thread, so it works from a sync view, a Celery task or under an event loop."""
    credential = phone_number.credential

    async def run() -> T:
        async with TwilioRestClient(
            account_sid=credential.account_sid,
            auth_token=credential.auth_token,
            base_url=settings.TWILIO_API_BASE_URL,
            timeout_s=TWILIO_REST_TIMEOUT_S,
        ) as client:
            return await action(client)

    return _pool.submit(asyncio.run, run()).result(timeout=TWILIO_REST_TIMEOUT_S + 5)


# -- the number ----------------------------------------------------------------------


def dialing_policy_get(*, organization: Organization) -> DialingPolicy:
    policy, _ = DialingPolicy.objects.for_org(organization).get_or_create(organization=organization)
    return policy


def dialing_policy_update(*, organization: Organization, data: dict[str, Any]) -> DialingPolicy:
    policy = dialing_policy_get(organization=organization)
    for field in ("allowed_countries", "denied_countries", "allow_premium"):
        if field in data:
            value = data[field]
            setattr(policy, field, sorted(set(value)) if isinstance(value, list) else value)
    policy.save()
    return policy


def destination_refusal(
    *, organization: Organization, to: str, policy: DialingPolicy | None = None
) -> str | None:
    """Why ``to`` may not be called by this organization, or None. Pass ``policy`` when
    checking many numbers (it is read once)."""
    try:
        parsed = phonenumbers.parse(to, None)
    except phonenumbers.NumberParseException:
        return "Use E.164 format, e.g. +14155550123."
    if not to.startswith("+") or not phonenumbers.is_valid_number(parsed):
        return "Not a valid E.164 phone number."
    number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    for prefix in settings.OUTBOUND_REFUSED_PREFIXES:
        if number.startswith(prefix):
            return f"Calls to {prefix}... are refused by the platform."
    policy = policy or dialing_policy_get(organization=organization)
    region = phonenumbers.region_code_for_number(parsed) or "ZZ"
    if region in policy.denied_countries:
        return f"Calls to {region} are denied by your dialing policy."
    if policy.allowed_countries and region not in policy.allowed_countries:
        return f"Calls to {region} are not in your dialing policy's allowed countries."
    kind = phonenumbers.number_type(parsed)
    premium = (phonenumbers.PhoneNumberType.PREMIUM_RATE, phonenumbers.PhoneNumberType.SHARED_COST)
    if kind in premium and not policy.allow_premium:
        return "Premium-rate and shared-cost numbers are refused (see the dialing policy)."
    return None


# -- placing the call ----------------------------------------------------------------


def _public(path: str) -> str:
    return settings.PUBLIC_BASE_URL + path


def call_create_outbound(
    *,
    organization: Organization,
    agent: Agent,
    phone_number: PhoneNumber,
    to: str,
    variables: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    max_duration_s: float | None = None,
    idempotency_key: str = "",
) -> tuple[Call, bool]:
    """Place an outbound call. Returns ``(call, created)``; ``created`` is False when
    ``idempotency_key`` names a call placed before (returned as it is now).

    Raises OutboundError for input that cannot be called (400), OutboundRefused when
    admission says no. A call Twilio refuses is recorded as failed (``dial-failed``)."""
    for obj in (agent, phone_number):
        if obj.organization_id != organization.pk:
            raise OutboundError("Referenced object belongs to another organization.")
    if idempotency_key:
        existing = Call.objects.for_org(organization).filter(idempotency_key=idempotency_key)
        if (found := existing.first()) is not None:
            return found, False
    refusal = destination_refusal(organization=organization, to=to)
    if refusal is not None:
        raise OutboundError(refusal, field="to")
    try:
        cleaned = variables_clean(variables or {})
    except ValueError as exc:
        raise OutboundError(str(exc), field="variables") from exc
    snapshot = agent_snapshot(agent)
    if max_duration_s is not None:
        snapshot["max_duration_s"] = max_duration_s
    missing = variables_missing(snapshot, cleaned)
    if missing:
        raise OutboundError(
            "Unknown variables (the agent uses them and the request gives no value): "
            + ", ".join(missing),
            field="variables",
        )
    pending_sid = PENDING_PREFIX + secrets.token_hex(16)
    admission = admission_refusal(organization, call_sid=pending_sid, carrier=phone_number.carrier)
    if admission is not None:
        raise OutboundRefused(admission.detail)
    call = Call(
        organization=organization,
        agent=agent,
        phone_number=phone_number,
        direction=Direction.OUTBOUND,
        from_number=phone_number.number,
        to_number=to,
        carrier=phone_number.carrier,
        carrier_call_sid=pending_sid,
        status=CallStatus.QUEUED,
        agent_snapshot=snapshot,
        variables=cleaned,
        metadata=metadata or {},
        idempotency_key=idempotency_key,
        stream_nonce=secrets.token_hex(16),
        started_at=timezone.now(),
    )
    try:
        with transaction.atomic():
            call.save()
    except IntegrityError:
        # A concurrent request with the same key won; this one never dialed: give back
        # the slot it took (keyed by a SID no call has).
        admission_abandoned.send(
            sender=Call, organization=organization, call_sid=pending_sid, carrier=call.carrier
        )
        found = Call.objects.for_org(organization).filter(idempotency_key=idempotency_key)
        return found.get(), False
    call_publish(call=call)
    _dial(call)
    call.refresh_from_db()
    return call, True


def _dial(call: Call) -> None:
    phone_number = call.phone_number
    assert phone_number is not None
    voicemail = call.agent_snapshot.get("voicemail") or {}
    amd: dict[str, Any] = {}
    if voicemail.get("detect"):
        amd = {
            "machine_detection": AMD_MODES.get(voicemail.get("action", ""), "Enable"),
            "async_amd_status_callback": _public(f"/telephony/twilio/amd/{call.pk}/"),
        }
    pending = call.carrier_call_sid

    async def create(client: TwilioRestClient) -> Any:
        return await client.create_call(
            to=call.to_number,
            from_=call.from_number,
            url=_public(f"/telephony/twilio/outbound/{call.pk}/"),
            status_callback=_public(f"/telephony/twilio/status/?call={call.pk}"),
            status_callback_events=STATUS_EVENTS,
            **amd,
        )

    try:
        state = twilio_rest_run(phone_number, create)
    except (TwilioRestError, concurrent.futures.TimeoutError, ValueError) as exc:
        logger.warning("call %s: Twilio refused or did not answer: %s", call.pk, exc)
        call_dial_failed(call=call, detail=str(exc))
        return
    call_sid_adopt(call=call, call_sid=state.sid)
    logger.info("call %s: placed as %s (was %s)", call.pk, state.sid, pending)


def call_sid_adopt(*, call: Call, call_sid: str) -> bool:
    """Give a call placed with a placeholder SID its real one (once). Returns whether it
    changed; a SID already taken by another call is refused (False)."""
    with transaction.atomic():
        locked = Call.objects.for_org(call.organization).select_for_update().get(pk=call.pk)
        if not locked.carrier_call_sid.startswith(PENDING_PREFIX):
            return locked.carrier_call_sid == call_sid
        previous = locked.carrier_call_sid
        locked.carrier_call_sid = call_sid
        try:
            with transaction.atomic():
                locked.save(update_fields=["carrier_call_sid"])
        except IntegrityError:
            return False
    call.carrier_call_sid = call_sid
    call_sid_assigned.send(sender=Call, call=call, previous_sid=previous)
    return True


def call_dial_failed(*, call: Call, detail: str) -> None:
    from calls.services import call_finalize_later

    now = timezone.now()
    with transaction.atomic():
        locked = Call.objects.for_org(call.organization).select_for_update().get(pk=call.pk)
        locked.status = CallStatus.FAILED
        locked.end_reason = "dial-failed"
        locked.end_detail = detail[:2000]
        locked.ended_at = now
        locked.save(update_fields=["status", "end_reason", "end_detail", "ended_at"])
        call_publish(call=locked)
        call_finalize_later(call=locked)
