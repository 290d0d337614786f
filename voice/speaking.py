"""Speaking one assistant turn: LLM rounds and tools -> chunker -> one TTS context ->
carrier audio and marks.

The :class:`Speaker` is the one writer of the :class:`~voice.turn_state.Turn` in flight:
its timeline marks after end-of-turn, its playback bookkeeping (marks sent and echoed),
its messages and tool records, and whether it was interrupted. The conversation only
asks (:meth:`Speaker.interrupt`, :meth:`Speaker.mark_echoed`) and reads the settled turn.

:meth:`Speaker.speak` runs a turn to the end of its playback, its pump and tool tasks in a
task group of the turn's own. Text comes from a *producer*:
:meth:`Speaker.fixed_line` (greeting, idle prompt, closing) or :meth:`Speaker.reply` (LLM
with tools: stream a round, speak its text clause by clause as it arrives, run the tools it
asked for — side by side, with the tool's filler line if one is slow — and ask again with
their results, up to ``MAX_TOOL_ROUNDS``). A pump task forwards TTS audio to the carrier
as it arrives, sending a mark at each text boundary and one at the end (see
:mod:`voice.playback`).

Cancelling the task running :meth:`Speaker.speak` (barge-in, end of call) closes the LLM
stream and cancels the TTS context, each bounded in time. Every wait here has a timeout:
an LLM silent for ``LLM_STALL_S`` or a TTS silent for ``TTS_STALL_S`` after its last text
is a :class:`~voice.providers.base.ProviderError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from voice.chunker import TextChunker
from voice.config import CallConfig, TTSConfig
from voice.events import Fallback, Usage, chain_label
from voice.linecache import (
    LineCache,
    MemoryLineCache,
    RecordingContext,
    ReplayContext,
    line_key,
)
from voice.playback import Piece
from voice.providers.base import (
    LLMProvider,
    LLMUsage,
    Message,
    ProviderError,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
    TTSConnection,
    TTSContext,
    owned_tasks,
)
from voice.tools import ToolOutcome, ToolRunner
from voice.transport import CarrierOutput
from voice.turn_state import Turn

log = logging.getLogger(__name__)

CARRIER_TIMEOUT_S = 2.0  # send_clear, hangup, transfer, TTS cancel
LLM_STALL_S = 30.0  # longest silence inside one LLM stream
TTS_STALL_S = 15.0  # longest silence from TTS once all text is in
MARK_SLACK_S = 2.0  # beyond the unplayed audio, how long to wait for the final mark
MAX_TOOL_ROUNDS = 5
TTS_CONNECT_WAIT_S = 12.0  # a turn waiting for the TTS (the supervisor's own bound is 10 s)
FIRST_AUDIO_MS = 500  # a turn's first send is at most this much audio (see _send)

# Text for one turn, pushed to its TTS context; tool tasks go in the turn's task group.
Produce = Callable[[TTSContext, Turn, asyncio.TaskGroup], Awaitable[None]]


class LLMUnavailable(ProviderError):
    """Every LLM of the chain failed for one request."""


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    """Close a provider's stream, bounded: a cleanup that hangs must not hold the turn."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CARRIER_TIMEOUT_S):
                await aclose()


class Speaker:
    """Speaks the turns of one call. Built once the call's providers are connected."""

    def __init__(
        self,
        config: CallConfig,
        *,
        llms: Sequence[LLMProvider],
        output: CarrierOutput,
        tools: ToolRunner,
        usage: Usage,
        history: Sequence[Message],
        now: Callable[[], float],
        on_audible: Callable[[Turn], None],
        on_fallback: Callable[[Fallback], None],
        lines: LineCache | None = None,
    ) -> None:
        self._config = config
        self._llms = llms  # the primary, then its fallbacks
        self._llm_at = 0  # the one in use: a failed LLM is not asked again this call
        # the TTS in use (see use_tts); a cached line plays before it is connected
        self._tts_name = ""
        self._tts_config = config.tts
        self._connection: TTSConnection | None = None
        self._connected = asyncio.Event()
        self._lines = lines
        self._output = output
        self._tools = tools
        self._usage = usage
        self._history = history  # the call's; read here, extended by the conversation
        self._now = now
        self._on_audible = on_audible
        self._on_fallback = on_fallback
        self.turn: Turn | None = None  # the turn in flight
        # audio and marks reach the carrier in order: the pump's and a resume's
        self._sending = asyncio.Lock()
        self._first_audio_bytes = config.carrier_format.bytes_for_ms(FIRST_AUDIO_MS)

    def use_tts(self, connection: TTSConnection, name: str, config: TTSConfig) -> None:
        """The TTS connection turns speak through (the primary, or a fallback)."""
        self._connection, self._tts_name, self._tts_config = connection, name, config
        self._connected.set()

    def _line_key(self, text: str) -> str:
        return line_key(self._tts_config, self._config.carrier_format, text)

    def has_line(self, text: str) -> bool:
        """Whether ``text`` can be said now from the cache, with no TTS connection."""
        return isinstance(self._lines, MemoryLineCache) and (
            self._lines.get_now(self._line_key(text)) is not None
        )

    async def _context(self) -> TTSContext:
        async with asyncio.timeout(TTS_CONNECT_WAIT_S):
            await self._connected.wait()
        assert self._connection is not None
        return self._connection.context()

    async def say(self, turn: Turn, text: str) -> None:
        """A fixed line (greeting, idle prompt, closing): from the line cache when it has
        been said before in this voice, else synthesized and kept for next time."""
        produce = self.fixed_line(text, turn)
        lines = self._lines
        if lines is None:
            await self.speak(turn, produce)
            return
        key = self._line_key(text)
        cached = await lines.get(key)
        if cached is not None:
            await self.speak(turn, produce, ReplayContext(cached))
            return
        recording = RecordingContext(await self._context())
        await self.speak(turn, produce, recording)
        if recording.complete and recording.chunks:
            await lines.put(key, recording.chunks)

    def interrupt(self, turn: Turn, now_ms: float, *, barged_in: bool) -> None:
        """Stop counting what the caller hears of ``turn`` (its task is being cancelled)."""
        turn.interrupt(now_ms)
        turn.barged_in = turn.barged_in or barged_in

    def pause(self, turn: Turn, now_ms: float) -> None:
        """Stop sending the turn's audio, keeping it (the shell clears the carrier)."""
        turn.playback.pause(now_ms)

    async def resume(self, turn: Turn) -> None:
        """Play a paused (or held) turn on from where the caller stopped hearing it."""
        turn.confirmed.set()
        async with self._sending:
            items = turn.playback.resume(self._now())
            for item in items:
                if isinstance(item, str):
                    await self._output.send_mark(item)
                else:
                    await self._send(turn, item)
        if turn.playback.finished and not turn.playback_done.is_set():
            turn.playback_done.set()

    async def _send(self, turn: Turn, chunk: bytes) -> None:
        playback = turn.playback
        if playback.first_audio_sent_ms is None:
            # The turn's first audio: at most FIRST_AUDIO_MS goes out, then the loop runs
            # whatever else is ready before the rest (a held reply's first send is all of
            # its audio so far). When many calls' turns start at once, a caller's first
            # frame then waits for the others' heads, not for their whole replies; the
            # head outlasts the wait, so the caller hears no gap.
            head = self._first_audio_bytes
            if len(chunk) > head:
                await self._output.send_audio(chunk[:head])
                self._first_audio_sent(turn)
                await asyncio.sleep(0)
                await self._output.send_audio(chunk[head:])
                return
            await self._output.send_audio(chunk)
            self._first_audio_sent(turn)
            return
        await self._output.send_audio(chunk)

    def _first_audio_sent(self, turn: Turn) -> None:
        turn.playback.first_audio_sent_ms = turn.timeline.first_audio_sent_ms = self._now()
        self._on_audible(turn)

    def mark_echoed(self, name: str, now_ms: float) -> None:
        turn = self.turn
        if turn is None or turn.interrupted:
            return
        if turn.playback.echoed(name, now_ms) and not turn.playback_done.is_set():
            turn.timeline.playback_finished_ms = now_ms
            turn.playback_done.set()

    async def speak(self, turn: Turn, produce: Produce, ctx: TTSContext | None = None) -> None:
        """Run one turn until its audio has played (final mark echoed, or bounded wait).

        Cancelling it (barge-in, end of call) or a failure marks the turn interrupted at
        that moment, so what was heard is kept; the pump and tools stop with it.
        """
        self.turn = turn
        if ctx is None:
            ctx = await self._context()
        try:
            async with owned_tasks() as tg:  # a lone failure comes out as itself
                pump = tg.create_task(self._pump(ctx, turn))
                await produce(ctx, turn, tg)
                turn.input_done = True
                await ctx.end_input()
                await pump
            # a pause lasts until the machine decides (bounded by its resume wait), a held
            # reply until its turn is confirmed or it is discarded
            await turn.confirmed.wait()
            while not turn.playback_done.is_set():
                unplayed = turn.playback.unplayed_ms(self._now()) / 1000
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(unplayed + MARK_SLACK_S):
                        await turn.playback_done.wait()
                if not turn.playback.paused:
                    break
        except BaseException:
            turn.interrupt(self._now())
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CARRIER_TIMEOUT_S):
                    await ctx.cancel()
            raise
        finally:
            self.turn = None

    async def _pump(self, ctx: TTSContext, turn: Turn) -> None:
        """TTS audio -> carrier, with a mark at each text boundary and at the end."""
        playback = turn.playback
        timeline = turn.timeline
        audio = ctx.audio()
        try:
            while True:
                try:
                    async with asyncio.timeout(TTS_STALL_S if turn.input_done else None):
                        chunk = await anext(audio)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise ProviderError(self._tts_name, f"no audio for {TTS_STALL_S:g} s") from None
                async with self._sending:
                    if not chunk:
                        mark = playback.boundary()
                        if mark is not None:
                            await self._output.send_mark(mark)
                        continue
                    if timeline.tts_first_audio_ms is None:
                        timeline.tts_first_audio_ms = self._now()
                    playback.audio(len(chunk), chunk)
                    if not playback.paused:
                        await self._send(turn, chunk)
        finally:
            await _aclose(audio)
        async with self._sending:
            mark = playback.end()
            if mark is not None:
                await self._output.send_mark(mark)
        if playback.finished or not playback.spans:
            timeline.playback_finished_ms = timeline.playback_finished_ms or self._now()
            turn.playback_done.set()

    async def _push(self, ctx: TTSContext, turn: Turn, piece: Piece) -> None:
        if turn.timeline.tts_first_text_ms is None:
            turn.timeline.tts_first_text_ms = self._now()
        turn.playback.pushed(piece)
        self._usage.tts_characters += len(piece.text)
        await ctx.push(piece.text)

    def fixed_line(self, text: str, turn: Turn) -> Produce:
        """A fixed line (greeting, idle prompt, closing)."""
        turn.messages.append(Message("assistant", text))

        async def produce(ctx: TTSContext, turn: Turn, _tg: asyncio.TaskGroup) -> None:
            chunker = TextChunker()
            for chunk in [*chunker.push(text), *chunker.flush()]:
                await self._push(ctx, turn, Piece(chunk, 0))

        return produce

    def reply(self) -> Produce:
        async def produce(ctx: TTSContext, turn: Turn, tg: asyncio.TaskGroup) -> None:
            for _ in range(MAX_TOOL_ROUNDS):
                try:
                    calls = await self._llm_round(ctx, turn)
                except LLMUnavailable as exc:
                    # what was said (the apology) still plays out; then the goodbye
                    turn.failure = f"no language model answered: {exc}"
                    return
                if not calls:
                    return
                await turn.confirmed.wait()  # a preemptive reply runs no tool before
                await self._run_tools(ctx, turn, calls, tg)
                if turn.end_call or turn.transfer_to:
                    return
            log.warning("call %s: tool rounds exhausted", self._config.call_id)

        return produce

    def _messages(self, turn: Turn) -> list[Message]:
        messages = [Message("system", self._config.system_prompt), *self._history]
        if turn.user is not None:
            messages.append(Message("user", turn.user.text))
        return messages + turn.messages

    async def _llm_round(self, ctx: TTSContext, turn: Turn) -> list[ToolCall]:
        """One LLM request: text is spoken as it streams; returns the tools it asks for.

        An LLM that fails, stalls, or gives no first token within ``fallback.
        first_token_timeout_s`` is replaced by the next in the chain (or asked once more,
        when it has none), after the caller hears the apology line (once per turn). Text
        already spoken stays said, and the retry sees it. :class:`LLMUnavailable` when
        every option failed.
        """
        messages = self._messages(turn)
        if turn.timeline.llm_request_ms is None:
            turn.timeline.llm_request_ms = self._now()
        retried = False
        while True:
            index = len(turn.messages)
            message = Message("assistant")
            turn.messages.append(message)
            llm = self._llms[self._llm_at]
            chunker = TextChunker()
            try:
                return await self._stream(ctx, turn, llm, messages, message, index, chunker)
            except ProviderError as exc:
                if exc.provider != llm.name:  # the TTS under it, say: not the LLM's to handle
                    raise
                message.tool_calls = []  # incomplete: never run
                if message.content:  # the caller heard this much: it stays said
                    for text in chunker.flush():
                        await self._push(ctx, turn, Piece(text, index))
                    message.content = message.content.strip()
                    messages = [*messages, Message("assistant", message.content)]
                else:
                    turn.messages.pop()  # nothing of it exists
                nxt = self._llm_at + 1 if self._llm_at + 1 < len(self._llms) else None
                if nxt is None and (retried or len(self._llms) > 1):
                    raise LLMUnavailable(llm.name, exc.message) from exc
                retried = retried or nxt is None
                self._fall_back(turn, self._llm_at if nxt is None else nxt, exc)
                apology = self._config.fallback.apology
                if apology and not turn.apologized:
                    turn.apologized = True
                    turn.messages.append(Message("assistant", apology))
                    await self._push(ctx, turn, Piece(apology, len(turn.messages) - 1))

    def _llm_label(self, at: int) -> str:
        return chain_label(self._llms[at].name, at)

    def _fall_back(self, turn: Turn, to: int, exc: ProviderError) -> None:
        switch = Fallback(
            "llm", self._llm_label(self._llm_at), self._llm_label(to), exc.message, self._now()
        )
        log.warning(
            "call %s: llm %s failed (%s); now %s",
            self._config.call_id,
            switch.from_provider,
            exc.message,
            switch.to_provider,
        )
        self._llm_at = to
        turn.timeline.fallbacks.append(switch.as_dict())
        self._on_fallback(switch)

    async def _stream(
        self,
        ctx: TTSContext,
        turn: Turn,
        llm: LLMProvider,
        messages: list[Message],
        message: Message,
        index: int,
        chunker: TextChunker,
    ) -> list[ToolCall]:
        timeline = turn.timeline
        first_token_s = self._config.fallback.first_token_timeout_s
        parts: list[str] = []
        calls: list[ToolCall] = []
        started = False  # the model produced text or tool calls
        stream = llm.stream(messages=messages, tools=self._config.tools)
        turn.llm_requests += 1
        try:
            while True:
                wait = LLM_STALL_S if started else first_token_s
                try:
                    async with asyncio.timeout(wait):
                        chunk = await anext(stream)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    what = "no response" if started else "no first token"
                    raise ProviderError(llm.name, f"{what} within {wait:g} s") from None
                if isinstance(chunk, LLMUsage):
                    self._usage.llm_prompt_tokens += chunk.prompt_tokens
                    self._usage.llm_completion_tokens += chunk.completion_tokens
                    turn.llm_tokens += chunk.prompt_tokens + chunk.completion_tokens
                    continue
                started = True
                if timeline.llm_first_token_ms is None:
                    timeline.llm_first_token_ms = self._now()
                if isinstance(chunk, TextDelta):
                    parts.append(chunk.text)
                    message.content = "".join(parts)
                    for text in chunker.push(chunk.text):
                        await self._push(ctx, turn, Piece(text, index))
                elif isinstance(chunk, ToolCallsRequested):
                    calls.extend(chunk.calls)
                    message.tool_calls = list(calls)
        finally:
            await _aclose(stream)
        for text in chunker.flush():
            await self._push(ctx, turn, Piece(text, index))
        message.content = "".join(parts).strip()
        message.tool_calls = calls
        return calls

    async def _run_tools(
        self, ctx: TTSContext, turn: Turn, calls: list[ToolCall], tg: asyncio.TaskGroup
    ) -> None:
        runner = self._tools
        index = len(turn.messages) - 1
        turn.timeline.tool_calls += len(calls)
        tasks = [tg.create_task(runner.run(c, turn_index=turn.index)) for c in calls]
        try:
            fillers = [t for c in calls if (t := runner.tool(c.name)) is not None and t.filler]
            if fillers:
                _, pending = await asyncio.wait(tasks, timeout=fillers[0].filler_after_s)
                if pending:
                    await self._push(ctx, turn, Piece(fillers[0].filler, index))
            await asyncio.wait(tasks)
        finally:
            for task in tasks:
                task.cancel()
        outcomes: list[ToolOutcome] = [t.result() for t in tasks]
        for outcome in outcomes:
            turn.tool_records.append(outcome.record)
            turn.messages.append(
                Message(
                    "tool", outcome.result, tool_call_id=outcome.call.id, name=outcome.call.name
                )
            )
            turn.end_call = turn.end_call or outcome.end_call
            turn.transfer_to = turn.transfer_to or outcome.transfer_to
