"""A whole call on the real cloud providers (Deepgram, OpenAI, Cartesia SDKs) against the
protocol-faithful fake servers, with the real-time, mark-echoing carrier from
:mod:`tests.voice.doubles`. Tests assert on what the fakes received and what the sink got.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import FakeCartesia, FakeDeepgram, FakeOpenAI
from tests.voice.doubles import Caller, RecordingOutput, RecordingSink
from tests.voice.harness import RESULT_TIMEOUT_S, make_config
from voice.config import CallConfig
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


@dataclass
class CloudCall:
    dg: FakeDeepgram
    oa: FakeOpenAI
    ca: FakeCartesia
    config: CallConfig | None = None
    conv: Conversation | None = None
    out: RecordingOutput = field(default_factory=RecordingOutput)
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
            output=self.out,
            sink=self.sink,
        )
        self.out.attach(self.conv)
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
