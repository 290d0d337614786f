from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import CredentialProvider
from calls.live import call_publish
from calls.models import (
    TERMINAL_STATUSES,
    TURN_STAGES,
    Call,
    CallStatus,
    Direction,
    PhoneNumber,
    ToolInvocation,
    TranscriptEntry,
    TurnMetric,
)
from calls.redaction import redact
from calls.signals import call_ended, call_finalized
from tenants.models import Organization
from voice.events import CallEnded, EndReason, SecureCapture, ToolCallRecord, TurnTimeline
from voice.events import TranscriptEntry as TranscriptEntryEvent

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


# -- calls ---------------------------------------------------------------------------

STREAM_TOKEN_SALT = "glassbox.calls.twilio-stream"


class StreamTokenError(Exception):
    """A media-stream token that is forged, expired, or already used."""


class CallSidConflict(Exception):
    """The carrier call SID already names a call on another number."""


def call_create_inbound(
    *,
    phone_number: PhoneNumber,
    carrier_call_sid: str,
    from_number: str,
    to_number: str,
    variables: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Call:
    """The carrier told us about a new inbound call: record it with a frozen agent snapshot.

    Twilio retries a webhook that timed out, so a second request for the same call SID
    returns the existing call (with a fresh stream nonce while no stream has connected).
    A SID that names a call on another number raises CallSidConflict: a tenant signs its
    webhooks with its own token, so it can put any SID in them, including one of another
    tenant's calls.

    ``variables`` and ``overrides`` (agent settings replaced for this call) come from the
    number's lookup webhook (calls/lookup.py), when it has one.
    """
    from calls.callconfig import agent_snapshot

    agent = phone_number.agent
    assert agent is not None, "caller checks that the number has an agent"
    existing = _call_by_sid(carrier=phone_number.carrier, carrier_call_sid=carrier_call_sid)
    if existing is not None:
        _check_same_number(existing, phone_number)
        if existing.stream_connected_at is None:
            existing.stream_nonce = secrets.token_hex(16)
            existing.save(update_fields=["stream_nonce"])
        return existing
    call = Call(
        organization=phone_number.organization,
        agent=agent,
        phone_number=phone_number,
        direction=Direction.INBOUND,
        from_number=from_number[:32],
        to_number=to_number[:32],
        carrier=phone_number.carrier,
        carrier_call_sid=carrier_call_sid,
        status=CallStatus.RINGING,
        agent_snapshot={**agent_snapshot(agent), **(overrides or {})},
        variables=variables or {},
        metadata=metadata or {},
        stream_nonce=secrets.token_hex(16),
        started_at=timezone.now(),
    )
    try:
        with transaction.atomic():
            call.save()
    except IntegrityError:
        # A concurrent retry of the same webhook won. Its nonce stays: whichever of the
        # two answers Twilio acts on, its token works (once).
        existing = _call_by_sid(carrier=phone_number.carrier, carrier_call_sid=carrier_call_sid)
        assert existing is not None
        _check_same_number(existing, phone_number)
        return existing
    call_publish(call=call)
    return call


def call_create_refused(
    *,
    phone_number: PhoneNumber,
    carrier_call_sid: str,
    from_number: str,
    to_number: str,
    detail: str,
) -> Call:
    """An inbound call that admission refused: heard a line and was hung up, never ran.

    Recorded (end reason ``refused``, ``detail`` naming the limit) so the calls API shows
    it; finalized at once with no duration. A retried webhook returns the recorded call.
    """
    existing = _call_by_sid(carrier=phone_number.carrier, carrier_call_sid=carrier_call_sid)
    if existing is not None:
        _check_same_number(existing, phone_number)
        return existing
    now = timezone.now()
    call = Call(
        organization=phone_number.organization,
        agent=phone_number.agent,
        phone_number=phone_number,
        direction=Direction.INBOUND,
        from_number=from_number[:32],
        to_number=to_number[:32],
        carrier=phone_number.carrier,
        carrier_call_sid=carrier_call_sid,
        status=CallStatus.COMPLETED,
        end_reason="refused",
        end_detail=detail[:2000],
        stream_nonce="",
        started_at=now,
        ended_at=now,
        duration_ms=0,
        finalized_at=now,
    )
    try:
        with transaction.atomic():
            call.save()
    except IntegrityError:
        existing = _call_by_sid(carrier=phone_number.carrier, carrier_call_sid=carrier_call_sid)
        assert existing is not None
        _check_same_number(existing, phone_number)
        return existing
    return call


def _call_by_sid(*, carrier: str, carrier_call_sid: str) -> Call | None:
    # Call SIDs are unique across the platform (a constraint), so the lookup must see
    # every tenant's calls; callers check the owner before using the row.
    return (
        Call.objects.dangerously_unscoped()
        .filter(carrier=carrier, carrier_call_sid=carrier_call_sid)
        .first()
    )


def _check_same_number(call: Call, phone_number: PhoneNumber) -> None:
    if (call.organization_id, call.phone_number_id) != (
        phone_number.organization_id,
        phone_number.pk,
    ):
        raise CallSidConflict(f"call SID {call.carrier_call_sid} belongs to another number")


def call_stream_token(*, call: Call) -> str:
    """A short-lived, single-use token naming the call, for the media WebSocket URL."""
    return signing.dumps({"c": call.pk, "n": call.stream_nonce}, salt=STREAM_TOKEN_SALT)


def call_stream_claim(*, token: str, max_age_s: float) -> Call:
    """Check a media-stream token and mark it used. Raises StreamTokenError."""
    try:
        data = signing.loads(token, salt=STREAM_TOKEN_SALT, max_age=timedelta(seconds=max_age_s))
        call_id, nonce = int(data["c"]), str(data["n"])
    except signing.SignatureExpired as exc:
        raise StreamTokenError("stream token expired") from exc
    except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
        raise StreamTokenError("invalid stream token") from exc
    now = timezone.now()
    # The token itself names the call: like an API key, it *determines* the tenant.
    claimed = (
        Call.objects.dangerously_unscoped()
        .filter(pk=call_id, stream_nonce=nonce, stream_connected_at__isnull=True)
        .exclude(status__in=TERMINAL_STATUSES)
        .update(stream_connected_at=now, answered_at=now, status=CallStatus.IN_PROGRESS)
    )
    if claimed != 1:
        raise StreamTokenError("stream token already used or call over")
    call = Call.objects.dangerously_unscoped().select_related("organization").get(pk=call_id)
    call_publish(call=call)
    return call


_STATUS_ORDER = {
    CallStatus.QUEUED: 0,
    CallStatus.RINGING: 1,
    CallStatus.IN_PROGRESS: 2,
}


def call_status_update(*, call: Call, status: str, duration_s: int | None) -> Call:
    """A carrier status callback. Idempotent and order-tolerant: never moves backwards,
    never leaves a terminal state, and keeps the first end time it learned.

    Once a media stream has connected, the engine's ``call_end`` says why the call ended
    and what it used, and finalizes it; the carrier's "completed" usually races ahead of
    it, so it must neither guess the reason nor finalize with the usage still missing.

    Twilio posts callbacks concurrently, so the decision is made on the row as it is now,
    locked, not on the caller's copy.
    """
    with transaction.atomic():
        call = _call_locked(call)
        engine_ends_it = call.stream_connected_at is not None
        fields: list[str] = []
        if duration_s is not None and call.carrier_duration_s != duration_s:
            call.carrier_duration_s = duration_s
            fields.append("carrier_duration_s")
        current = CallStatus(call.status)
        new = CallStatus(status)
        if current not in TERMINAL_STATUSES and (
            new in TERMINAL_STATUSES or _STATUS_ORDER[new] > _STATUS_ORDER[current]
        ):
            call.status = new
            fields.append("status")
            if new in TERMINAL_STATUSES and call.ended_at is None:
                call.ended_at = timezone.now()
                fields.append("ended_at")
                if not call.end_reason and not engine_ends_it:
                    call.end_reason = "caller-hangup" if new == CallStatus.COMPLETED else new.value
                    fields.append("end_reason")
        if fields:
            call.save(update_fields=fields)
            call_publish(call=call)
        if call.status in TERMINAL_STATUSES and call.finalized_at is None and not engine_ends_it:
            call_finalize_later(call=call)
    return call


def _call_locked(call: Call) -> Call:
    return (
        Call.objects.for_org(call.organization)
        .select_related("organization")
        .select_for_update(of=("self",))
        .get(pk=call.pk)
    )


def call_record_transcript(*, call: Call, entry: TranscriptEntryEvent) -> None:
    # Redacted before it is stored, so nothing downstream (API, webhooks, analysis,
    # search) ever holds the original.
    text = redact(entry.text) if call.organization.redact_transcripts else entry.text
    TranscriptEntry.objects.for_org(call.organization).create(
        organization=call.organization,
        call=call,
        role=str(entry.role),
        text=text,
        turn_index=entry.turn_index,
        start_ms=entry.start_ms,
        end_ms=entry.end_ms,
        interrupted=entry.interrupted,
    )


def call_record_turn(*, call: Call, timeline: TurnTimeline) -> None:
    data = timeline.as_dict()
    TurnMetric.objects.for_org(call.organization).update_or_create(
        organization=call.organization,
        call=call,
        turn_index=timeline.turn_index,
        defaults={
            "call_started_at": call.started_at,
            "agent_id": call.agent_id,
            "kind": str(timeline.kind),
            "interrupted": timeline.interrupted_at_ms is not None,
            "timeline": data,
            **{stage: data[stage] for stage in TURN_STAGES},
        },
    )


def call_record_tool(*, call: Call, record: ToolCallRecord) -> None:
    ToolInvocation.objects.for_org(call.organization).create(
        organization=call.organization,
        call=call,
        turn_index=record.turn_index,
        name=record.name[:64],
        arguments=record.arguments,
        ok=record.ok,
        result=record.result,
        duration_ms=record.duration_ms,
    )


def call_record_secure_capture(*, call: Call, capture: SecureCapture, replay: bool = False) -> None:
    """A closed secure-digits window (no digits in it): kept so a recording can be muted."""
    window = {
        "tool": capture.tool,
        "turn_index": capture.turn_index,
        "start_ms": capture.start_ms,
        "end_ms": capture.end_ms,
    }
    with transaction.atomic():
        locked = _call_locked(call)
        if replay and window in locked.secure_captures:
            return
        locked.secure_captures = [*locked.secure_captures, window]
        locked.save(update_fields=["secure_captures"])
    call.secure_captures = locked.secure_captures


def call_end(*, call: Call, ended: CallEnded) -> Call:
    """The media stream is over: record why, and what it used, then finalize."""
    with transaction.atomic():
        call = _call_locked(call)
        call.end_reason = call.end_reason or str(ended.reason)
        call.end_detail = ended.detail[:2000]
        call.transferred_to = ended.transfer_to[:32]
        call.stt_seconds = ended.usage.stt_seconds
        call.llm_prompt_tokens = ended.usage.llm_prompt_tokens
        call.llm_completion_tokens = ended.usage.llm_completion_tokens
        call.tts_characters = ended.usage.tts_characters
        call.discarded_llm_requests = ended.usage.discarded_llm_requests
        call.discarded_llm_tokens = ended.usage.discarded_llm_tokens
        call.fallbacks = list(ended.fallbacks)
        if call.ended_at is None:
            call.ended_at = timezone.now()
        if call.status not in TERMINAL_STATUSES:
            failed = ended.reason in (EndReason.PROVIDER_ERROR, EndReason.ERROR)
            call.status = CallStatus.FAILED if failed else CallStatus.COMPLETED
        call.save(
            update_fields=[
                "end_reason",
                "end_detail",
                "transferred_to",
                "stt_seconds",
                "llm_prompt_tokens",
                "llm_completion_tokens",
                "tts_characters",
                "discarded_llm_requests",
                "discarded_llm_tokens",
                "fallbacks",
                "ended_at",
                "status",
            ]
        )
        call_publish(call=call)
        call_finalize_later(call=call)
    return call


def call_finalize_later(*, call: Call) -> None:
    """Finalize once the current transaction commits (``calls.tasks`` does it)."""
    call_ended.send(sender=Call, call=call)


def call_finalize(*, call: Call) -> Call:
    """Totals and duration, once, then the post-call hooks (analysis, webhooks, billing)."""
    with transaction.atomic():
        call = _call_locked(call)
        if call.finalized_at is not None:
            return call
        start = call.answered_at or call.started_at
        end = call.ended_at or timezone.now()
        call.ended_at = end
        call.duration_ms = max(0, int((end - start).total_seconds() * 1000))
        call.finalized_at = timezone.now()
        call.save(update_fields=["ended_at", "duration_ms", "finalized_at"])
        call_publish(call=call)
    call_finalized.send(sender=Call, call=call)
    return call


def call_stream_started(*, call: Call, stream_sid: str) -> None:
    call.carrier_stream_sid = stream_sid[:64]
    call.save(update_fields=["carrier_stream_sid"])


# -- maintenance ---------------------------------------------------------------------

SWEEP_GRACE = timedelta(minutes=5)
# After its token expired a stream can no longer connect; the carrier opens it within a
# second or two, so a short grace past the token's lifetime is plenty.
STREAM_CONNECT_GRACE = timedelta(seconds=60)


def _stream_connect_deadline() -> timedelta:
    return timedelta(seconds=settings.TWILIO_STREAM_TOKEN_MAX_AGE_S) + STREAM_CONNECT_GRACE


def calls_sweep_abandoned(*, now: datetime | None = None) -> dict[str, int]:
    """End and finalize calls whose media-stream process died without recording the end.

    Normally ``call_end`` (from the engine) or a status callback for a call that never
    streamed finalizes every call. A web process that dies hard leaves calls behind:

    - ended by the carrier, but never finalized: finalized after a grace period;
    - streaming longer than the agent's max duration allows (the engine would have ended
      it): ended as ``lost``;
    - answered by the webhook, but no stream connected before its token expired (it
      never can after that): failed as ``no-stream``.

    Runs periodically: celery beat, or in the web process when there is no beat (the
    embedded default, calls/sweeper.py). A platform-wide maintenance job, hence unscoped.
    """
    now = now or timezone.now()
    counts = {"finalized": 0, "lost": 0, "no_stream": 0}
    unfinished = Call.objects.dangerously_unscoped().filter(finalized_at__isnull=True)
    for call in unfinished.filter(status__in=TERMINAL_STATUSES, ended_at__lt=now - SWEEP_GRACE):
        call_finalize(call=call)
        counts["finalized"] += 1
    live = unfinished.exclude(status__in=TERMINAL_STATUSES)
    for call in live.filter(stream_connected_at__isnull=False):
        limit = timedelta(seconds=float(call.agent_snapshot.get("max_duration_s", 4 * 3600)))
        if call.stream_connected_at < now - limit - SWEEP_GRACE:
            _call_abandon(call, "lost", "The call's media stream stopped without an end.")
            counts["lost"] += 1
    for call in live.filter(
        stream_connected_at__isnull=True, started_at__lt=now - _stream_connect_deadline()
    ):
        _call_abandon(
            call,
            "no-stream",
            "The carrier never opened the media stream before its token expired.",
        )
        counts["no_stream"] += 1
    return counts


def _call_abandon(call: Call, reason: str, detail: str) -> None:
    with transaction.atomic():
        call = _call_locked(call)
        if call.status in TERMINAL_STATUSES:
            return
        call.status = CallStatus.FAILED
        call.end_reason = call.end_reason or reason
        call.end_detail = call.end_detail or detail
        call.ended_at = call.ended_at or timezone.now()
        call.save(update_fields=["status", "end_reason", "end_detail", "ended_at"])
    call_finalize(call=call)
