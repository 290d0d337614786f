"""A whole call on the real cloud providers (Deepgram, OpenAI, Cartesia SDKs) against the
protocol-faithful fake servers, and on the real Twilio serializer
(:class:`~voice.carriers.twilio.TwilioOutput`) in front of a phone that plays its frames in
real time. Tests assert on what the fakes received and what the sink got.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import FakeCartesia, FakeDeepgram, FakeOpenAI
from tests.voice.doubles import Caller, RecordingSink
from tests.voice.harness import RESULT_TIMEOUT_S, make_config
from voice.carriers.twilio import (
    Clear,
    MarkStatus,
    OutboundMark,
    OutboundMedia,
    TwilioOutput,
    parse_outbound,
)
from voice.config import TWILIO_FORMAT, CallConfig
from voice.conversation import Conversation
from voice.events import CallEnded, TurnTimeline
from voice.providers.registry import build_llm, build_stt, build_tts

# The marks of a timeline that happen, in this order, in every reply turn that is heard.
REPLY_MARKS = (
    "end_of_turn_ms",
    "llm_request_ms",
    "llm_first_token_ms",
    "tts_first_text_ms",
    "tts_first_audio_ms",
    "first_audio_sent_ms",
    "playback_finished_ms",
)
SPOKEN_MARKS = REPLY_MARKS[3:]


STREAM_SID = "MZ00000000000000000000000000000001"


class Phone:
    """Twilio's side of a Media Stream, reduced to what the engine can observe: it parses
    every frame :class:`TwilioOutput` sends, plays media in real time, echoes each mark
    once the audio before it has played (at once, for all pending, after a ``clear``), and
    hands echoes back the way the consumer does. ``log`` uses the kinds of
    :class:`tests.voice.doubles.RecordingOutput`."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.output = TwilioOutput(
            stream_sid=STREAM_SID, send=self._receive, hangup=self._hangup, transfer=self._transfer
        )
        self.conversation: Conversation | None = None
        self.echo_status: list[MarkStatus] = []
        self._play_end = 0.0
        self._pending: dict[str, asyncio.TimerHandle] = {}

    async def _receive(self, frame: str) -> None:
        command = parse_outbound(frame)
        assert command.stream_sid == STREAM_SID
        loop = asyncio.get_running_loop()
        if isinstance(command, OutboundMedia):
            assert 0 < len(command.payload) <= TWILIO_FORMAT.bytes_for_ms(20)
            self.log.append(("audio", len(command.payload)))
            start = max(self._play_end, loop.time())
            self._play_end = start + len(command.payload) / TWILIO_FORMAT.sample_rate
        elif isinstance(command, OutboundMark):
            self.log.append(("mark", command.name))
            when = max(self._play_end, loop.time())
            self._pending[command.name] = loop.call_at(when, self._echo, command.name)
        elif isinstance(command, Clear):
            self.log.append(("clear", None))
            self._play_end = 0.0
            for name, handle in list(self._pending.items()):
                handle.cancel()
                self._echo(name)

    def _echo(self, name: str) -> None:
        self._pending.pop(name, None)
        self.log.append(("echo", name))
        self.echo_status.append(self.output.mark_echoed(name))
        if self.conversation is not None:
            self.conversation.mark_played(name)

    def _drop(self) -> None:
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()

    async def _hangup(self) -> None:
        self.log.append(("hangup", None))
        self._drop()

    async def _transfer(self, to: str) -> None:
        self.log.append(("transfer", to))
        self._drop()

    def kinds(self) -> list[str]:
        return [k for k, _ in self.log]


@dataclass
class CloudCall:
    dg: FakeDeepgram
    oa: FakeOpenAI
    ca: FakeCartesia
    config: CallConfig | None = None
    conv: Conversation | None = None
    out: Phone = field(default_factory=Phone)
    sink: RecordingSink = field(default_factory=RecordingSink)
    task: asyncio.Task[CallEnded] | None = None

    def start(self, **overrides: Any) -> Caller:
        """Start the call; ``overrides`` replace fields of the harness's CallConfig."""
        fields: dict[str, Any] = {
            "stt": self.dg.stt_config(),
            "llm": self.oa.llm_config(),
            "tts": self.ca.tts_config(),
        }
        config = self.config = make_config(**{**fields, **overrides})
        self.conv = Conversation(
            config,
            stt=build_stt(config.stt),
            llm=build_llm(config.llm),
            tts=build_tts(config.tts),
            output=self.out.output,
            sink=self.sink,
        )
        self.out.conversation = self.conv
        self.task = asyncio.create_task(self.conv.run())
        return Caller(self.conv)

    async def result(self) -> CallEnded:
        assert self.task is not None
        async with asyncio.timeout(RESULT_TIMEOUT_S):
            return await self.task

    async def hang_up(self) -> CallEnded:
        assert self.conv is not None
        self.conv.caller_hung_up()
        return await self.result()

    def contexts(self) -> list[Any]:
        """Cartesia contexts, in the order they were opened (one per spoken turn)."""
        return list(self.ca.contexts.values())

    def marks(self, kind: str) -> list[str]:
        return [name for k, name in self.out.log if k == kind]


def ordered(timeline: TurnTimeline, names: tuple[str, ...]) -> list[float]:
    """The named marks of ``timeline``; fails unless all are present and in order."""
    values = [getattr(timeline, name) for name in names]
    missing = [n for n, v in zip(names, values, strict=True) if v is None]
    assert not missing, f"turn {timeline.turn_index} lacks {missing}"
    assert values == sorted(values), dict(zip(names, values, strict=True))
    return values
