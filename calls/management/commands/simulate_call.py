"""Place a simulated Twilio call against a running Glassbox server.

Speaks as Twilio does: signs the voice webhook, opens the media stream from the TwiML,
streams eSpeak-synthesized sentences (or a WAV file) in real time with pauses, answers
marks as a phone would, optionally talks over the bot, then prints the transcript and a
per-turn latency table from the call's record.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from calls.models import TIMELINE_STAGES, TURN_STAGES, Call, PhoneNumber, TurnMetric
from voice.carriers.twilio_caller import (
    CallerConfig,
    CallResult,
    Digits,
    Pause,
    Say,
    Step,
    WaitForBot,
    place_call,
)
from voice.config import AudioFormat, Encoding, TTSConfig
from voice.providers.espeak_tts import EspeakTTS

# The demo's front desk, end to end: a greeting, a question, a booking whose date goes in
# on the keypad, and a goodbye.
DEFAULT_SCRIPT = (
    "Hello there.",
    "What are your opening hours?",
    "I would like to book an appointment.",
    "dtmf:1203#",
    "Thank you, goodbye.",
)
DTMF_PREFIX = "dtmf:"
PCM_8K = AudioFormat(Encoding.PCM16, 8000)


async def synthesize_all(texts: list[str]) -> dict[str, bytes]:
    """PCM16 8 kHz for each sentence, through the same eSpeak provider the bot uses."""
    out: dict[str, bytes] = {}
    async with EspeakTTS(TTSConfig(provider="espeak")).connect(PCM_8K) as conn:
        for text in texts:
            ctx = conn.context()
            await ctx.push(text)
            await ctx.end_input()
            out[text] = b"".join([chunk async for chunk in ctx.audio()])
    return out


class Command(BaseCommand):
    help = "Call a running server the way Twilio would and print the transcript and latencies."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="Where the server listens (default: %(default)s).",
        )
        parser.add_argument("--to", help="The called number (default: the first number).")
        parser.add_argument("--from", dest="from_number", default="+15005550006")
        parser.add_argument(
            "--say",
            action="append",
            default=[],
            help=(
                "A sentence to speak; repeat for several turns. 'dtmf:1203#' presses those "
                "keys instead."
            ),
        )
        parser.add_argument("--wav", help="Speak this WAV file (8 kHz or any rate, mono).")
        parser.add_argument(
            "--pause-ms",
            type=int,
            default=300,
            help="Silence after the bot finishes before the next sentence.",
        )
        parser.add_argument(
            "--barge-in",
            metavar="TEXT",
            help="After the last sentence, talk over the bot's reply with TEXT.",
        )
        parser.add_argument("--barge-in-after-ms", type=int, default=600)
        parser.add_argument(
            "--wait-s", type=float, default=30.0, help="How long to wait for the bot each turn."
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON document.")

    def handle(self, *args: Any, **options: Any) -> None:
        number = self._number(options["to"])
        credential = number.credential
        texts = list(options["say"]) or ([] if options["wav"] else list(DEFAULT_SCRIPT))
        spoken = [t for t in texts if not t.startswith(DTMF_PREFIX)]
        spoken += [options["barge_in"]] if options["barge_in"] else []
        audio = asyncio.run(synthesize_all(spoken)) if spoken else {}
        wait = WaitForBot(timeout_s=options["wait_s"])
        script: list[Step] = [wait]
        if options["wav"]:
            script += [Say(wav=options["wav"], label="wav"), wait, Pause(options["pause_ms"])]
        for text in texts:
            if text.startswith(DTMF_PREFIX):
                try:
                    step: Step = Digits(text.removeprefix(DTMF_PREFIX))
                except ValueError as exc:
                    raise CommandError(str(exc)) from None
            else:
                step = Say(pcm=audio[text], label=text)
            script += [step, wait, Pause(options["pause_ms"])]
        if options["barge_in"]:
            # Replace the wait after the last sentence: talk over the bot's reply to it.
            if texts or options["wav"]:
                script = script[:-2]
            script += [
                Say(
                    pcm=audio[options["barge_in"]],
                    label=options["barge_in"],
                    barge_in_after_ms=options["barge_in_after_ms"],
                    wait_for_bot_s=options["wait_s"],
                ),
                wait,
            ]
        config = CallerConfig(
            public_base_url=settings.PUBLIC_BASE_URL,
            connect_base_url=options["base_url"].rstrip("/"),
            account_sid=credential.account_sid,
            auth_token=credential.auth_token,
            from_number=options["from_number"],
            to_number=number.number,
        )
        result = asyncio.run(place_call(config, script))
        call = self._await_call(result.call_sid, timeout_s=10.0)
        if options["json"]:
            self.stdout.write(json.dumps(self._document(result, call), indent=2, default=str))
        else:
            self._print(result, call)
        if result.errors or call is None:
            raise CommandError("the call did not complete cleanly (see above)")

    def _number(self, to: str | None) -> PhoneNumber:
        numbers = PhoneNumber.objects.dangerously_unscoped().select_related("credential")
        number = numbers.filter(number=to).first() if to else numbers.order_by("id").first()
        if number is None:
            raise CommandError(
                f"No phone number {to}." if to else "No phone numbers; run seed_demo first."
            )
        return number

    def _await_call(self, call_sid: str, *, timeout_s: float) -> Call | None:
        """The server writes the call's end a moment after the socket closes."""
        deadline = time.monotonic() + timeout_s
        while True:
            call = Call.objects.dangerously_unscoped().filter(carrier_call_sid=call_sid).first()
            if call is not None and call.ended_at is not None:
                return call
            if time.monotonic() > deadline:
                return call
            time.sleep(0.2)

    def _turns(self, call: Call | None) -> list[TurnMetric]:
        if call is None:
            return []
        return list(TurnMetric.objects.for_org(call.organization).filter(call=call))

    def _document(self, result: CallResult, call: Call | None) -> dict[str, Any]:
        doc: dict[str, Any] = {"caller": result.summary()}
        if call is not None:
            transcript = call.transcript.all()
            doc["call"] = {
                "id": call.pk,
                "status": call.status,
                "end_reason": call.end_reason,
                "duration_ms": call.duration_ms,
                "transcript": [
                    {"role": e.role, "text": e.text, "interrupted": e.interrupted}
                    for e in transcript
                ],
                "metrics": [
                    {"turn": t.turn_index, "kind": t.kind, **_stages(t)} for t in self._turns(call)
                ],
            }
        return doc

    def _print(self, result: CallResult, call: Call | None) -> None:
        out = self.stdout
        for error in result.errors:
            out.write(self.style.ERROR(f"error: {error}"))
        if call is None:
            out.write(self.style.ERROR("The server did not record this call."))
            return
        out.write(f"Call {call.pk}: {call.status}, ended by {call.end_reason or '?'}")
        out.write("")
        out.write("Transcript")
        for entry in call.transcript.all():
            flag = " (interrupted)" if entry.interrupted else ""
            out.write(f"  {entry.role:>9}: {entry.text}{flag}")
        out.write("")
        header = (
            "turn",
            "kind",
            "v2v",
            "vad hang",
            "endpoint",
            "stt lag",
            "llm ttft",
            "1st clause",
            "tts ttfb",
            "overhead",
            "interrupted",
        )
        out.write("Latency per assistant turn (ms, server timeline)")
        out.write("  " + "".join(f"{h:>12}" for h in header))
        for turn in self._turns(call):
            stages = _stages(turn)
            cells = (
                [str(turn.turn_index), turn.kind]
                + [
                    _ms(stages[k])
                    for k in (
                        "voice_to_voice_ms",
                        "vad_hangover_ms",
                        "endpointing_ms",
                        "stt_lag_ms",
                        "llm_ttft_ms",
                        "llm_first_clause_ms",
                        "tts_ttfb_ms",
                        "platform_overhead_ms",
                    )
                ]
                + ["yes" if turn.interrupted else ""]
            )
            out.write("  " + "".join(f"{c:>12}" for c in cells))
        out.write("")
        out.write("As the caller heard it (ms)")
        if result.greeting_ms is not None:
            out.write(f"  greeting after {result.greeting_ms:.0f}")
        for heard in result.turns:
            v2v = _ms(heard.voice_to_voice_ms)
            clear = f", clear after {heard.clear_ms:.0f}" if heard.clear_ms is not None else ""
            out.write(f"  {heard.label[:40]!r}: voice-to-voice {v2v}{clear}")


def _stages(turn: TurnMetric) -> dict[str, float | None]:
    return {stage: getattr(turn, stage) for stage in (*TURN_STAGES, *TIMELINE_STAGES)}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
