"""Answering machines on outbound calls: Twilio's asynchronous AMD verdict, and the
agent's voicemail policy (``agent.voicemail``: detect, action, message).

- ``hangup``: a machine (or fax) ends the call at once, through the REST API.
- ``leave_message``: detection waits for the end of the greeting (``DetectMessageEnd``);
  on ``machine_end_*`` the call's TwiML is replaced by ``<Say>message</Say><Hangup/>``
  (the message with the call's variables filled in), which also ends our media stream.

The verdict, its duration and what was done are stored on the call (``answered_by``,
``amd_duration_ms``, ``voicemail_action``); a call ended this way has end reason
``voicemail``. A human changes nothing.
"""

from __future__ import annotations

import concurrent.futures
import logging

from django.db import transaction
from twilio.twiml.voice_response import VoiceResponse

from calls.callconfig import call_snapshot_rendered
from calls.live import call_publish
from calls.models import TERMINAL_STATUSES, Call
from calls.outbound import twilio_rest_run
from voice.carriers.twilio_rest import TwilioRestError

logger = logging.getLogger(__name__)

ANSWERED_BY = frozenset(
    {
        "human",
        "machine_start",
        "machine_end_beep",
        "machine_end_silence",
        "machine_end_other",
        "fax",
        "unknown",
    }
)
_MESSAGE_END = frozenset({"machine_end_beep", "machine_end_silence", "machine_end_other"})


def _action(policy: dict[str, object], answered_by: str) -> str:
    """What the policy does for this verdict: "hangup", "left-message" or ""."""
    if not policy.get("detect"):
        return ""
    if answered_by == "fax":
        return "hangup"
    if not answered_by.startswith("machine_"):
        return ""
    if policy.get("action") == "leave_message":
        return "left-message" if answered_by in _MESSAGE_END else ""
    return "hangup"


def voicemail_twiml(message: str) -> str:
    response = VoiceResponse()
    response.say(message)
    response.hangup()
    return str(response.to_xml(xml_declaration=False))


def voicemail_verdict(*, call: Call, answered_by: str, duration_ms: int | None) -> Call:
    """Record the verdict and apply the policy (once: a repeated verdict does nothing)."""
    rendered = call_snapshot_rendered(call)
    policy = rendered.get("voicemail") or {}
    with transaction.atomic():
        locked = (
            Call.objects.for_org(call.organization)
            .select_related("phone_number__credential", "organization")
            .select_for_update(of=("self",))
            .get(pk=call.pk)
        )
        if locked.voicemail_action:
            return locked
        action = "" if locked.status in TERMINAL_STATUSES else _action(policy, answered_by)
        locked.answered_by = answered_by
        locked.amd_duration_ms = duration_ms
        locked.voicemail_action = action
        fields = ["answered_by", "amd_duration_ms", "voicemail_action"]
        if action:
            # Set before the stream ends, so the engine's end keeps this reason.
            locked.end_reason = "voicemail"
            locked.end_detail = f"Answered by {answered_by}; voicemail policy: {action}."
            fields += ["end_reason", "end_detail"]
        locked.save(update_fields=fields)
    call_publish(call=locked)
    if action and locked.phone_number is not None:
        sid = locked.carrier_call_sid
        try:
            if action == "hangup":
                twilio_rest_run(locked.phone_number, lambda client: client.hangup(sid))
            else:
                twiml = voicemail_twiml(str(policy.get("message") or ""))
                twilio_rest_run(locked.phone_number, lambda client: client.play(sid, twiml))
        except (TwilioRestError, concurrent.futures.TimeoutError, ValueError) as exc:
            logger.warning("call %s: voicemail %s failed: %s", locked.pk, action, exc)
    return locked
