"""Realistic call data for the calls pages' browser tests and screenshots."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from calls import services
from calls.models import Call
from tenants.models import Organization
from tests.factories import (
    make_agent,
    make_finished_call,
    make_phone_number,
    make_tool_invocation,
    turn_timeline,
)
from voice.events import EndReason, TurnKind, TurnTimeline
from voice.events import Role as Speaker
from voice.events import TranscriptEntry as Said


def support_call(organization: Organization, *, hours_ago: float = 1.0) -> Call:
    """A realistic call: greeting, three replies (one interrupted), a tool call."""
    agent = make_agent(organization, name="Acme support")
    number = make_phone_number(organization, agent=agent, name="Support line")
    greeting = TurnTimeline(
        turn_index=0,
        kind=TurnKind.GREETING,
        llm_request_ms=4.0,
        llm_first_token_ms=212.0,
        tts_first_text_ms=215.0,
        tts_first_audio_ms=331.0,
        first_audio_sent_ms=336.0,
        playback_finished_ms=2600.0,
    )
    # the VAD's hangover and the LLM's first clause, as a real call records them
    heard: dict[str, float] = {"vad_hangover_ms": 100.0, "llm_first_clause_ms": 45.0}
    call = make_finished_call(
        organization,
        phone_number=number,
        started_at=timezone.now() - timedelta(hours=hours_ago),
        duration_s=74,
        from_number="+15005550006",
        turns=[
            greeting,
            turn_timeline(1, speech_end_ms=5200, llm_ttft_ms=380, tts_ttfb_ms=140, **heard),
            turn_timeline(
                2,
                speech_end_ms=14800,
                endpointing_ms=420,
                llm_ttft_ms=910,
                overhead_ms=18,
                **heard,
            ),
            turn_timeline(
                3, speech_end_ms=26100, llm_ttft_ms=290, interrupted_after_ms=700, **heard
            ),
        ],
    )
    for entry in (
        Said(Speaker.ASSISTANT, "Hi, this is Acme support. How can I help?", 0, 336, 2600),
        Said(Speaker.USER, "My router keeps dropping the connection.", 1, 3100, 5200),
        Said(Speaker.ASSISTANT, "Sorry to hear that. What's your order number?", 1, 5990, 8400),
        Said(Speaker.USER, "It's A-17.", 2, 13900, 14800),
        Said(
            Speaker.ASSISTANT,
            "Thanks, I found order A-17: a replacement ships today.",
            2,
            16310,
            19900,
        ),
        Said(Speaker.USER, "Great, can I also", 3, 24900, 26100),
        Said(Speaker.ASSISTANT, "Of course, anything", 3, 26780, 27480, interrupted=True),
    ):
        services.call_record_transcript(call=call, entry=entry)
    make_tool_invocation(
        organization,
        call=call,
        turn_index=2,
        name="lookup_order",
        arguments={"order_id": "A-17"},
        result='{"status": "replacement shipped", "eta_days": 2}',
        duration_ms=84.0,
    )
    return call


def week_of_calls(organization: Organization) -> None:
    """A week of calls for the lists and charts."""
    for day in range(7):
        for n in range(1 + day % 3):
            make_finished_call(
                organization,
                started_at=timezone.now() - timedelta(days=day, hours=2 + n),
                duration_s=40 + 13 * n + 7 * day,
                turns=[
                    turn_timeline(i, speech_end_ms=4000.0 * i, llm_ttft_ms=260 + 45 * (i + day))
                    for i in range(1, 4)
                ],
                reason=EndReason.ASSISTANT_HANGUP if n == 1 else EndReason.CALLER_HANGUP,
            )
    make_finished_call(
        organization,
        started_at=timezone.now() - timedelta(days=1, hours=5),
        duration_s=12,
        reason=EndReason.PROVIDER_ERROR,
        detail="deepgram: connection closed (1011) after 3 keep-alive timeouts",
    )
