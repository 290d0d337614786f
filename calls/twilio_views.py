"""Twilio's HTTP webhooks: the number's Voice URL and its status callback.

Both verify ``X-Twilio-Signature`` with the auth token of the Twilio credential that owns
the number, over the URL Twilio requested. Behind a proxy that URL is not what Django
sees, so it is rebuilt from ``PUBLIC_BASE_URL`` + the request path.
"""

from __future__ import annotations

import logging
import re
import secrets

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

from calls import services
from calls.admission import admission_refusal
from calls.lookup import LookupResult, number_lookup
from calls.models import TERMINAL_STATUSES, Call, CallStatus, Direction, PhoneNumber
from calls.outbound import PENDING_PREFIX, call_sid_adopt
from calls.signals import admission_abandoned
from calls.voicemail import ANSWERED_BY, voicemail_verdict
from glassbox.ratelimit import failure_record, failures_retry_after, too_many

logger = logging.getLogger(__name__)

# fullmatch, not match: "$" also matches before a trailing newline.
_SID = re.compile(r"CA[0-9A-Za-z]{1,62}")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# ASCII digits only (str.isdigit() accepts "²", which int() refuses), and few enough to
# fit the column.
_SECONDS = re.compile(r"[0-9]{1,9}")


def _plain(status: int, message: str) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


def _twiml(response: VoiceResponse) -> HttpResponse:
    return HttpResponse(str(response), content_type="text/xml; charset=utf-8")


# Checked against when the named number or call is unknown, so an unknown one costs the
# same HMAC as a known one (no timing oracle either).
_NO_TOKEN = "glassbox-no-such-number"


def _signed(request: HttpRequest, auth_token: str | None) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    url = settings.PUBLIC_BASE_URL + request.get_full_path()
    valid = RequestValidator(auth_token or _NO_TOKEN).validate(url, request.POST, signature)
    return bool(valid and signature and auth_token)


def _forged(request: HttpRequest) -> HttpResponse:
    # One answer for "unknown number", "unknown call", "unsigned" and "forged": a sweep
    # of unsigned requests must not tell which numbers are registered here.
    failure_record(request, kind="twilio")
    return _plain(403, "Invalid X-Twilio-Signature.")


def _throttled(request: HttpRequest) -> HttpResponse | None:
    """429 for a client address that keeps sending unsigned or forged webhooks."""
    wait = failures_retry_after(request, kind="twilio")
    return too_many(wait) if wait is not None else None


def _websocket_origin() -> str:
    base = settings.PUBLIC_BASE_URL
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://")
    return "ws://" + base.removeprefix("http://")


def _hang_up_with(message: str) -> HttpResponse:
    response = VoiceResponse()
    response.say(message)
    response.hangup()
    return _twiml(response)


@csrf_exempt
@require_POST
def voice(request: HttpRequest) -> HttpResponse:
    if (throttled := _throttled(request)) is not None:
        return throttled
    call_sid = request.POST.get("CallSid", "")
    to_number = request.POST.get("To", "")
    from_number = request.POST.get("From", "")
    if not _SID.fullmatch(call_sid) or not _E164.fullmatch(to_number):
        return _plain(400, "CallSid and an E.164 To number are required.")
    # The called number *determines* the tenant, as an API key does.
    phone_number = (
        PhoneNumber.objects.dangerously_unscoped()
        .select_related("organization", "credential", "agent")
        .filter(number=to_number)
        .first()
    )
    token = phone_number.credential.auth_token if phone_number is not None else None
    if not _signed(request, token) or phone_number is None:
        logger.warning("twilio voice webhook: unsigned, forged or unknown number %s", to_number)
        return _forged(request)
    if phone_number.agent is None:
        return _hang_up_with("This number is not in service.")
    # After the checks above: an admission check may take a concurrency slot.
    refusal = admission_refusal(
        phone_number.organization, call_sid=call_sid, carrier=phone_number.carrier
    )
    if refusal is not None:
        try:
            services.call_create_refused(
                phone_number=phone_number,
                carrier_call_sid=call_sid,
                from_number=from_number,
                to_number=to_number,
                detail=refusal.detail,
            )
        except services.CallSidConflict:
            return _sid_conflict(phone_number, call_sid)
        return _hang_up_with(refusal.line)
    found = LookupResult(status="")
    if phone_number.lookup_url and not _call_exists(call_sid):
        found = number_lookup(
            phone_number=phone_number,
            call_sid=call_sid,
            from_number=from_number,
            to_number=to_number,
        )
    try:
        call = services.call_create_inbound(
            phone_number=phone_number,
            carrier_call_sid=call_sid,
            from_number=from_number,
            to_number=to_number,
            variables=found.variables,
            overrides=found.overrides,
            metadata={"lookup": found.record()} if found.status else {},
        )
    except services.CallSidConflict:
        return _sid_conflict(phone_number, call_sid)
    if call.stream_connected_at is not None:
        # A retried webhook for a call whose stream already runs: do not start another.
        return _hang_up_with("This call is already connected.")
    return _stream_twiml(call)


def _sid_conflict(phone_number: PhoneNumber, call_sid: str) -> HttpResponse:
    """The SID names a call on another number: refuse, and give back what admission took
    for it, unless a call of this organization holds it (then the slot is that call's)."""
    logger.warning("twilio voice webhook: %s names a call on another number", call_sid)
    organization = phone_number.organization
    if not Call.objects.for_org(organization).filter(carrier_call_sid=call_sid).exists():
        admission_abandoned.send(
            sender=Call, organization=organization, call_sid=call_sid, carrier=phone_number.carrier
        )
    return _plain(409, "This CallSid belongs to another call.")


def _call_exists(call_sid: str) -> bool:
    # A retried webhook (Twilio timed out on us) must not ask the lookup again.
    return Call.objects.dangerously_unscoped().filter(carrier_call_sid=call_sid).exists()


def _stream_twiml(call: Call) -> HttpResponse:
    token = services.call_stream_token(call=call)
    response = VoiceResponse()
    connect = response.connect()
    stream = connect.stream(url=f"{_websocket_origin()}/ws/twilio/{token}/")
    stream.parameter(name="call_id", value=str(call.pk))
    return _twiml(response)


def _outbound_call(call_id: int) -> Call | None:
    # The URL names the call as a stream token does; the signature (with the token of the
    # number the call was placed from) is what proves the request is Twilio's.
    return (
        Call.objects.dangerously_unscoped()
        .select_related("phone_number__credential", "organization")
        .filter(pk=call_id, direction=Direction.OUTBOUND)
        .first()
    )


def _call_token(call: Call | None) -> str | None:
    phone_number = call.phone_number if call is not None else None
    return phone_number.credential.auth_token if phone_number is not None else None


def _sid_matches(call: Call, call_sid: str) -> bool:
    """The request's CallSid is the call's (adopting it while the call still has its
    placeholder: Twilio may call back before the REST answer is stored)."""
    if call.carrier_call_sid == call_sid:
        return True
    return call_sid_adopt(call=call, call_sid=call_sid)


@csrf_exempt
@require_POST
def outbound_answer(request: HttpRequest, call_id: int) -> HttpResponse:
    """Twilio fetches the TwiML of an outbound call when the callee answers."""
    if (throttled := _throttled(request)) is not None:
        return throttled
    call_sid = request.POST.get("CallSid", "")
    if not _SID.fullmatch(call_sid):
        return _plain(400, "CallSid is required.")
    call = _outbound_call(call_id)
    if not _signed(request, _call_token(call)) or call is None:
        logger.warning("twilio outbound answer: unsigned, forged or unknown call %s", call_id)
        return _forged(request)
    if not _sid_matches(call, call_sid):
        return _plain(409, "This CallSid belongs to another call.")
    if call.stream_connected_at is not None or call.status in TERMINAL_STATUSES:
        return _hang_up_with("This call is already connected.")
    if call.stream_nonce:  # a retried fetch gets a fresh single-use token
        call.stream_nonce = secrets.token_hex(16)
        call.save(update_fields=["stream_nonce"])
    return _stream_twiml(call)


@csrf_exempt
@require_POST
def amd(request: HttpRequest, call_id: int) -> HttpResponse:
    """Twilio's asynchronous answering-machine verdict for an outbound call."""
    if (throttled := _throttled(request)) is not None:
        return throttled
    call_sid = request.POST.get("CallSid", "")
    answered_by = request.POST.get("AnsweredBy", "")
    duration_raw = request.POST.get("MachineDetectionDuration", "")
    if not _SID.fullmatch(call_sid) or answered_by not in ANSWERED_BY:
        return _plain(400, "CallSid and a known AnsweredBy are required.")
    if duration_raw and not _SECONDS.fullmatch(duration_raw):
        return _plain(400, "MachineDetectionDuration must be a whole number of milliseconds.")
    call = _outbound_call(call_id)
    if not _signed(request, _call_token(call)) or call is None:
        logger.warning("twilio amd callback: unsigned, forged or unknown call %s", call_id)
        return _forged(request)
    if not _sid_matches(call, call_sid):
        return _plain(409, "This CallSid belongs to another call.")
    voicemail_verdict(
        call=call,
        answered_by=answered_by,
        duration_ms=int(duration_raw) if duration_raw else None,
    )
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def status(request: HttpRequest) -> HttpResponse:
    if (throttled := _throttled(request)) is not None:
        return throttled
    call_sid = request.POST.get("CallSid", "")
    new_status = request.POST.get("CallStatus", "")
    if new_status == "initiated":  # Twilio's first outbound event: the call is queued
        new_status = CallStatus.QUEUED
    if not _SID.fullmatch(call_sid) or new_status not in CallStatus.values:
        return _plain(400, "CallSid and a known CallStatus are required.")
    duration_raw = request.POST.get("CallDuration", "")
    if duration_raw and not _SECONDS.fullmatch(duration_raw):
        return _plain(400, "CallDuration must be a whole number of seconds.")
    call = (
        Call.objects.dangerously_unscoped()
        .select_related("phone_number__credential", "organization")
        .filter(carrier="twilio", carrier_call_sid=call_sid)
        .first()
    )
    named = request.GET.get("call", "")
    if call is None and named.isascii() and named.isdigit() and len(named) < 19:
        # An outbound call's callbacks name it (?call=<id>): found even before the REST
        # answer with its SID was stored.
        call = _outbound_call(int(named))
        if call is not None and not call.carrier_call_sid.startswith(PENDING_PREFIX):
            call = None
    if not _signed(request, _call_token(call)) or call is None:
        logger.warning("twilio status callback: unsigned, forged or unknown call %s", call_sid)
        return _forged(request)
    if not _sid_matches(call, call_sid):
        return _plain(409, "This CallSid belongs to another call.")
    services.call_status_update(
        call=call,
        status=new_status,
        duration_s=int(duration_raw) if duration_raw else None,
    )
    return HttpResponse(status=204)
