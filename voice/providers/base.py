"""The provider contracts. Each provider is one module implementing one of these.

A provider object is built per call from its config (``voice.providers.registry``) and
holds no state shared between calls. All network waits inside providers are bounded; a
provider that fails raises :class:`ProviderError` so the engine can end the call with a
clear reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from voice.config import AudioFormat, ToolConfig


class ProviderError(Exception):
    """A provider failed in a way the call cannot recover from (auth, network, protocol)."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message


# ---------------------------------------------------------------------------- STT


class STTEventKind(StrEnum):
    INTERIM = "interim"  # partial hypothesis, may change
    FINAL = "final"  # this segment's text will not change
    SPEECH_STARTED = "speech-started"  # provider-side VAD
    UTTERANCE_END = "utterance-end"  # provider thinks the utterance is over


@dataclass(slots=True)
class STTEvent:
    kind: STTEventKind
    text: str = ""
    # FINAL only: the provider also judged the speaker to have stopped (Deepgram speech_final)
    speech_final: bool = False
    confidence: float = 0.0


class STTSession(Protocol):
    async def send_audio(self, audio: bytes) -> None:
        """Audio in the format the session was opened with. Must not block for long."""

    async def finalize(self) -> None:
        """Ask for any pending text now (end of turn decided by the engine)."""

    def events(self) -> AsyncIterator[STTEvent]:
        """Events until the session closes. Raises ProviderError if the provider fails."""


class STTProvider(Protocol):
    name: str

    def input_format(self, carrier: AudioFormat) -> AudioFormat:
        """The format this provider wants, given the carrier's (avoid transcoding if able)."""

    def session(self, fmt: AudioFormat) -> AbstractAsyncContextManager[STTSession]:
        """Open a streaming session for one call; closed (bounded time) on exit."""


# ---------------------------------------------------------------------------- LLM


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it


@dataclass(slots=True)
class Message:
    """One chat message in OpenAI's shape (role system/user/assistant/tool)."""

    role: str
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str = ""
    name: str = ""

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in self.tool_calls
            ]
            if not self.content:
                out["content"] = None
        if self.role == "tool":
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ToolCallsRequested:
    """The model finished its message asking for these tools (all complete)."""

    calls: list[ToolCall]


@dataclass(slots=True)
class LLMUsage:
    prompt_tokens: int
    completion_tokens: int


LLMChunk = TextDelta | ToolCallsRequested | LLMUsage


class LLMProvider(Protocol):
    name: str

    def stream(
        self, *, messages: Sequence[Message], tools: Sequence[ToolConfig]
    ) -> AsyncIterator[LLMChunk]:
        """Stream one reply. Cancelling the consumer (or ``aclose``) stops the request."""

    async def aclose(self) -> None:
        """Release what the provider holds for the call (HTTP connections); called once,
        when the call ends."""


# ---------------------------------------------------------------------------- TTS


class TTSContext(Protocol):
    """One assistant reply: text in as it is generated, audio out as it is synthesized."""

    async def push(self, text: str) -> None:
        """A clause or sentence to speak; synthesis may start at once."""

    async def end_input(self) -> None:
        """No more text for this reply; ``audio()`` ends after the last chunk."""

    def audio(self) -> AsyncIterator[bytes]:
        """Audio chunks, in the format given to ``context()``, until the reply is spoken.

        Optional but recommended: yield an empty chunk (``b""``) when the audio for one
        ``push()`` is complete (Cartesia: the ``flush_done`` of that push; a local engine:
        after synthesizing it). The engine sends a carrier mark there, so on barge-in it
        knows which text the caller heard. Without boundaries one mark covers the reply.
        """

    async def cancel(self) -> None:
        """Stop synthesis now (barge-in). ``audio()`` ends promptly."""


class TTSConnection(Protocol):
    def context(self) -> TTSContext: ...


class TTSProvider(Protocol):
    name: str

    def connect(self, fmt: AudioFormat) -> AbstractAsyncContextManager[TTSConnection]:
        """A connection for one call, producing audio in ``fmt``; closed on exit."""


# ---------------------------------------------------------------------------- tasks


@contextlib.asynccontextmanager
async def owned_tasks() -> AsyncIterator[asyncio.TaskGroup]:
    """A task group for the tasks a provider's context starts (readers, pumps, keep-alives),
    so none outlives the context. A lone error comes out as itself, not as a group: callers
    and tests see the provider's ``ProviderError``, as they would without the group."""
    try:
        async with asyncio.TaskGroup() as tasks:
            yield tasks
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
