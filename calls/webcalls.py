"""Web calls: a browser talks to an agent (docs/web-calls.md).

An authenticated request (the dashboard's "Talk to this agent", the API, or the widget
with its public key) records the call (direction ``web``) and gets a short-lived,
single-use token for ``/ws/web/<token>/``; the socket (calls/webcall_stream.py) spends
it and runs the call with the same engine and recorder as a phone call.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from calls.admission import admission_refusal
from calls.live import call_publish
from calls.models import TERMINAL_STATUSES, Call, CallStatus, Carrier, Direction
from calls.services import StreamTokenError

WEB_TOKEN_SALT = "glassbox.calls.web-call"
WS_PATH = "/ws/web/{token}/"


class WebCallRefused(Exception):
    """Admission refused the call (a limit, a deactivated organization)."""


@dataclass(frozen=True, slots=True)
class WebCallTicket:
    call: Call
    token: str
    expires_in_s: float
    # The rate the browser should send: what the agent's speech-to-text hears best.
    sample_rate: int = 16000

    @property
    def ws_path(self) -> str:
        return WS_PATH.format(token=self.token)

    @property
    def ws_url(self) -> str:
        base = settings.PUBLIC_BASE_URL
        scheme, _, rest = base.partition("://")
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{self.ws_path}"


def web_call_token_max_age_s() -> float:
    # The sweeper fails calls whose stream never connected within this (plus a grace).
    return float(settings.TWILIO_STREAM_TOKEN_MAX_AGE_S)


def web_call_create(*, agent: Agent, source: str, origin: str = "") -> WebCallTicket:
    """Record a web call with ``agent`` and mint its token.

    ``source`` says who started it ("dashboard", "api", "widget"; the call's
    ``from_number``); ``origin``, when given, is the only page origin whose socket may
    spend the token (the widget's)."""
    organization = agent.organization
    sid = "WC" + secrets.token_hex(16)
    refusal = admission_refusal(organization, call_sid=sid, carrier=Carrier.WEB)
    if refusal is not None:
        raise WebCallRefused(refusal.detail)
    from calls.callconfig import agent_snapshot

    call = Call(
        organization=organization,
        agent=agent,
        direction=Direction.WEB,
        from_number=source[:32],
        to_number=agent.name[:32],
        carrier=Carrier.WEB,
        carrier_call_sid=sid,
        status=CallStatus.RINGING,
        agent_snapshot=agent_snapshot(agent),
        stream_nonce=secrets.token_hex(16),
        started_at=timezone.now(),
    )
    with transaction.atomic():
        call.save()
        call_publish(call=call)
    token = signing.dumps({"c": call.pk, "n": call.stream_nonce, "o": origin}, salt=WEB_TOKEN_SALT)
    return WebCallTicket(
        call=call,
        token=token,
        expires_in_s=web_call_token_max_age_s(),
        sample_rate=_sample_rate(agent),
    )


def _sample_rate(agent: Agent) -> int:
    # PocketSphinx starts each call from a channel prior fitted to 8 kHz telephone audio;
    # at 16 kHz it starts from its model's default, which mishears the first utterances
    # (voice/providers/pocketsphinx_stt.py). Every other STT takes wideband audio.
    return 8000 if (agent.stt or {}).get("provider") == "pocketsphinx" else 16000


def web_call_claim(*, token: str, origin: str) -> Call:
    """Check a web-call token (and the page's Origin, if the token names one) and mark it
    used. Raises StreamTokenError."""
    try:
        data = signing.loads(
            token, salt=WEB_TOKEN_SALT, max_age=timedelta(seconds=web_call_token_max_age_s())
        )
        call_id, nonce, allowed = int(data["c"]), str(data["n"]), str(data.get("o", ""))
    except signing.SignatureExpired as exc:
        raise StreamTokenError("web call token expired") from exc
    except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
        raise StreamTokenError("invalid web call token") from exc
    if allowed and origin != allowed:
        raise StreamTokenError("this token is for another page's origin")
    now = timezone.now()
    # The token names the call, and so the tenant (like a carrier's stream token).
    claimed = (
        Call.objects.dangerously_unscoped()
        .filter(pk=call_id, stream_nonce=nonce, stream_connected_at__isnull=True, carrier="web")
        .exclude(status__in=TERMINAL_STATUSES)
        .update(stream_connected_at=now, answered_at=now, status=CallStatus.IN_PROGRESS)
    )
    if claimed != 1:
        raise StreamTokenError("web call token already used or call over")
    call = Call.objects.dangerously_unscoped().select_related("organization").get(pk=call_id)
    call_publish(call=call)
    return call
