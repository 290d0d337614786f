"""One assistant turn in flight, and how it is settled into history and events.

Written only by the :class:`voice.speaking.Speaker` that runs it.

A turn owns its :class:`~voice.events.TurnTimeline`, its :class:`~voice.playback.Playback`
and the messages it produced (an assistant message per LLM round, tool results between).
When it ends — played out, interrupted, or cut by the end of the call — :func:`settle`
turns it into what the LLM remembers and what the sink receives, keeping only what the
caller heard.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from voice.events import Role, ToolCallRecord, TranscriptEntry, TurnKind, TurnTimeline
from voice.playback import Heard, Piece, Playback
from voice.providers.base import Message
from voice.turns import UserTurn

INTERRUPTED_TOOL_RESULT = "Cancelled: the caller interrupted before this finished."


@dataclass(slots=True)
class Turn:
    index: int
    kind: TurnKind
    timeline: TurnTimeline
    playback: Playback
    interruptible: bool
    started_ms: float
    user: UserTurn | None = None
    messages: list[Message] = field(default_factory=list)
    interrupted: bool = False
    barged_in: bool = False  # interrupted by the caller, not by the end of the call
    heard: Heard | None = None  # snapshot taken when interrupted
    end_call: bool = False
    transfer_to: str = ""
    input_done: bool = False
    apologized: bool = False  # the apology line was said (once per turn)
    failure: str = ""  # every LLM failed: the call ends after this turn
    playback_done: asyncio.Event = field(default_factory=asyncio.Event)
    tool_records: list[ToolCallRecord] = field(default_factory=list)
    # a preemptive reply is prepared before its turn is confirmed: its audio is held and
    # its tools wait until then; discarded, nothing of it is settled
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    discarded: bool = False
    llm_requests: int = 0
    llm_tokens: int = 0  # prompt + completion, as the providers reported them

    @property
    def audible(self) -> bool:
        return self.playback.first_audio_sent_ms is not None

    def interrupt(self, now_ms: float) -> None:
        if self.interrupted:
            return
        self.interrupted = True
        self.timeline.interrupted_at_ms = now_ms
        self.heard = self.playback.heard(now_ms)


@dataclass(slots=True)
class Settled:
    history: list[Message]  # to append to the LLM history
    transcript: list[TranscriptEntry]
    spoken: str  # what the caller heard from the assistant
    # nothing was heard and nothing was done: give the user's words back to the detector
    restore_user: bool


def _heard_pieces(turn: Turn) -> list[Piece]:
    if turn.heard is not None and not turn.heard.complete:
        return turn.heard.pieces
    return [p for span in turn.playback.spans for p in span.pieces] + list(turn.playback.queued)


def settle(turn: Turn, now_ms: float) -> Settled:
    """History and transcript entries for a finished turn (see the module docstring)."""
    pieces = _heard_pieces(turn)
    spoken = " ".join(p.text for p in pieces)
    called_tools = any(m.tool_calls for m in turn.messages)
    if turn.barged_in and not spoken and not called_tools and turn.user is not None:
        return Settled([], [], "", restore_user=True)

    history: list[Message] = []
    transcript: list[TranscriptEntry] = []
    if turn.user is not None:
        history.append(Message("user", turn.user.text))
        start = turn.user.speech_start_ms
        end = turn.user.speech_end_ms or turn.user.stt_final_ms or turn.started_ms
        transcript.append(TranscriptEntry(Role.USER, turn.user.text, turn.index, start or end, end))

    answered: set[str] = {m.tool_call_id for m in turn.messages if m.role == "tool"}
    for i, message in enumerate(turn.messages):
        if message.role != "assistant":
            history.append(message)
            continue
        # what was spoken for this message (fillers included), else what the LLM wrote
        content = " ".join(p.text for p in pieces if p.message == i)
        if not turn.interrupted and not content:
            content = message.content
        if not content and not message.tool_calls:
            continue
        history.append(Message("assistant", content, tool_calls=list(message.tool_calls)))
        for call in message.tool_calls:
            if call.id not in answered:
                history.append(
                    Message("tool", INTERRUPTED_TOOL_RESULT, tool_call_id=call.id, name=call.name)
                )
    if spoken:
        transcript.append(
            TranscriptEntry(
                Role.ASSISTANT,
                spoken,
                turn.index,
                turn.playback.first_audio_sent_ms or turn.started_ms,
                now_ms,
                interrupted=turn.interrupted,
            )
        )
    return Settled(history, transcript, spoken, restore_user=False)
