"""The conversation: one phone call, from greeting to hang-up.

Tasks (all in ONE :class:`asyncio.TaskGroup` per call)::

    stt/tts   one holder each: connect (side by side), publish, close at the end
    audio     inbox -> decode -> VAD -> (convert) -> STT session; barge-in check per frame
    stt       STT events -> turn detector, barge-in check, usage
    main      greeting; then forever: wait for a user turn (or idle) -> reply
    speak     one per assistant turn (voice.speaking): LLM/tools -> chunker -> TTS context
    pump      one per assistant turn: TTS audio -> carrier, marks
    tools     one per tool call while it runs
    timers    max duration; caller hang-up watcher

``speak``, ``pump`` and ``tools`` are started by their parent but live in the call's task
group, and their parent cancels them when it stops early.

State machine, as seen by ``main``::

    LISTENING --turn detector deadline--> THINKING (LLM/tools, no audio yet)
    LISTENING --interim text, no final, caller silent for max_wait--> STT finalize()
    THINKING  --first audio sent-------> SPEAKING
    SPEAKING  --final mark echoed------> LISTENING (idle timer starts)
    THINKING/SPEAKING --barge-in-------> LISTENING (reply cancelled, `clear` sent)
    LISTENING --idle.timeout_s---------> idle prompt (x max_prompts) -> goodbye -> hang-up

Barge-in: while an interruptible turn is thinking or speaking, the caller's current speech
(VAD) lasting ``interruption.min_speech_ms`` — and, if ``min_words`` > 0, that many STT
words that are not acknowledgements — cancels the turn's task (LLM stream closed, TTS
context cancelled) and sends ``clear``. Speech whose transcript so far is only
acknowledgements ("mhm") never interrupts, and an acknowledgement that began over the
bot is not answered even if its final arrives after the bot stopped. With ``min_words`` = 0,
speech with no transcript yet interrupts only after ``transcript_wait_ms`` more: streaming
STT's first interim comes later than ``min_speech_ms``, and until it does nobody can tell
an "mhm" from "wait, stop". The turn keeps
what the caller heard (:mod:`voice.playback`) in both history and transcript. A reply
cancelled before any audio was sent (and before any tool ran, whose effects the history
must keep) gives the user's words back to the turn detector, so what they said next is
answered together with it, once.

Ending: a task that decides the call is over raises :class:`CallOver`; the task group then
cancels everything else, and every exit path (including provider errors and a caller who
hangs up mid-sentence) is bounded by ``SHUTDOWN_TIMEOUT_S``. Then the carrier is told to
hang up (or transfer) unless the caller hung up, the turn in flight is settled with what
was heard, unanswered caller words go to the transcript, and ``run()`` returns the
:class:`~voice.events.CallEnded` it also emitted. Provider failures end the call with
``PROVIDER_ERROR`` and the error text; anything else unexpected with ``ERROR``.

Timeline marks (ms since the call started, engine clock): user speech start/end come from
VAD (mapped from audio time), ``stt_final`` from the last final of the turn, ``end_of_turn``
when main takes the turn, ``llm_request`` / ``llm_first_token`` around the first LLM
round, ``tts_first_text`` at the first push, ``tts_first_audio`` at the first audio byte,
``first_audio_sent`` after the first ``send_audio`` returned, ``playback_finished`` at the
echo of the turn's final mark, ``interrupted_at`` at barge-in.

Input overflow policy: caller audio waits in a bounded queue (``audio_queue_frames``).
When it is full the oldest frame is dropped (and counted): a stalled loop should catch up
on the newest speech, not replay stale audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx

from voice.audio import Converter
from voice.config import AudioFormat, CallConfig, Encoding
from voice.events import CallEnded, EndReason, Sink, TranscriptEntry, TurnKind, TurnTimeline, Usage
from voice.events import Role as _Role
from voice.playback import Playback
from voice.providers.base import (
    LLMProvider,
    Message,
    ProviderError,
    STTEventKind,
    STTProvider,
    STTSession,
    TTSProvider,
)
from voice.speaking import CARRIER_TIMEOUT_S, Produce, Speaker
from voice.tls import httpx_tls
from voice.tools import DigitCollector, ToolRunner
from voice.transport import CarrierOutput
from voice.turn_state import Turn, settle
from voice.turns import TurnDetector, UserTurn, text_words
from voice.vad import SUPPORTED_RATES, VadEventKind, VoiceActivity

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 5.0


class CallOver(Exception):
    """Raised by a task that has decided the call is over."""

    def __init__(self, reason: EndReason, detail: str = "", transfer_to: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail
        self.transfer_to = transfer_to


class Conversation:
    """Runs one call. Input methods are sync and never block; ``run()`` drives the call.

    ``clock`` (monotonic seconds) stamps the timeline; waits use the event loop's own
    clock, so a custom clock must advance with real time. ``audio_queue_frames`` bounds
    the caller-audio queue (100 Twilio frames = 2 s).
    """

    def __init__(
        self,
        config: CallConfig,
        *,
        stt: STTProvider,
        llm: LLMProvider,
        tts: TTSProvider,
        output: CarrierOutput,
        sink: Sink,
        clock: Callable[[], float] = time.monotonic,
        audio_queue_frames: int = 100,
    ) -> None:
        self._config = config
        self._stt = stt
        self._llm = llm
        self._tts = tts
        self._output = output
        self._sink = sink
        self._clock = clock
        self._t0 = clock()
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=audio_queue_frames)
        self._hung_up = asyncio.Event()
        self._wake = asyncio.Event()
        self._digits = DigitCollector()
        self._turns = TurnDetector(config.turn)
        self._acks = frozenset(
            w for a in config.interruption.acknowledgements for w in text_words(a)
        )
        self._history: list[Message] = []
        self._usage = Usage()
        self._turn: Turn | None = None
        self._turn_count = 0
        self._idle_since_ms = 0.0
        self._overlap_final = ""
        self._overlap_interim = ""
        self._spoke_over_bot = False  # the caller's current speech began over the bot
        self._interim_since_ms: float | None = None  # interim text not yet final
        self._voice_end_ms = 0.0
        self._vad: VoiceActivity | None = None
        self._end: CallOver | None = None
        self._running = False
        self._closed = False
        # set by run() once the providers are connected
        self._tg: asyncio.TaskGroup
        self._deadline: asyncio.Timeout
        self._speaker: Speaker | None = None
        self._session: STTSession
        self._resources: dict[str, Any] = {}
        self._mark_seq = 0
        self.dropped_frames = 0

    # ------------------------------------------------------------------ inputs (sync)

    def feed_audio(self, payload: bytes) -> None:
        """Caller audio in ``config.carrier_format``. Drops the oldest frame when full."""
        if self._closed:
            return
        if self._inbox.full():
            self._inbox.get_nowait()
            self.dropped_frames += 1
            if self.dropped_frames % 50 == 1:
                log.warning("call %s: audio queue full, dropping frames", self._config.call_id)
        self._inbox.put_nowait(payload)

    def feed_dtmf(self, digit: str) -> None:
        """A keypad digit. Only ``collect_digits`` uses them; they are never logged."""
        if not self._digits.feed(digit):
            log.debug("call %s: keypad digit ignored (no collection active)", self._config.call_id)

    def mark_played(self, name: str) -> None:
        turn = self._turn
        if turn is None or turn.interrupted:
            return
        now = self._now()
        if turn.playback.echoed(name, now) and not turn.playback_done.is_set():
            turn.timeline.playback_finished_ms = now
            turn.playback_done.set()

    def caller_hung_up(self) -> None:
        self._hung_up.set()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> CallEnded:
        if self._running:
            raise RuntimeError("Conversation.run() can only be called once")
        self._running = True
        self._t0 = self._clock()
        try:
            await self._run_call()
        except asyncio.CancelledError:
            self._note_end(CallOver(EndReason.ERROR, "engine cancelled"))
            await self._finish()
            raise
        except Exception as exc:  # an ExceptionGroup from the task group, or a setup error
            self._note_end(exc)
        return await self._finish()

    async def _run_call(self) -> None:
        carrier = self._config.carrier_format
        stt_format = self._stt.input_format(carrier)
        async with (
            asyncio.timeout(None) as self._deadline,
            httpx.AsyncClient(verify=httpx_tls()) as http,
        ):
            runner = ToolRunner(self._config, http=http, digits=self._digits, clock=self._clock)
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                # STT and TTS connect side by side; the greeting waits only for TTS
                stt_up, tts_up = asyncio.Event(), asyncio.Event()
                session_cm = self._stt.session(stt_format)
                tg.create_task(self._guard(self._hold("stt", self._stt.name, session_cm, stt_up)))
                tts_cm = self._tts.connect(carrier)
                tg.create_task(self._guard(self._hold("tts", self._tts.name, tts_cm, tts_up)))
                main = tg.create_task(self._guard(self._main(tts_up, runner)))
                tg.create_task(self._guard(self._audio_loop(stt_up, stt_format)))
                tg.create_task(self._guard(self._stt_loop(stt_up)))
                tg.create_task(self._guard(self._watch_hangup()))
                tg.create_task(self._guard(self._max_duration(main)))

    async def _hold(
        self, key: str, name: str, cm: AbstractAsyncContextManager[Any], ready: asyncio.Event
    ) -> None:
        """Connect a provider, publish it, and hold it open until the call ends.

        The task that opens a provider's context also closes it, as SDKs built on anyio
        require; closing is bounded by the shutdown deadline.
        """
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    resource = await stack.enter_async_context(cm)
            except TimeoutError:
                raise ProviderError(name, f"no connection within {CONNECT_TIMEOUT_S:g} s") from None
            self._resources[key] = resource
            ready.set()
            await asyncio.Event().wait()  # cancelled when the call ends

    async def _ready(self, event: asyncio.Event) -> None:
        # the holder raises ProviderError on its own timeout; this bound is a backstop
        async with asyncio.timeout(CONNECT_TIMEOUT_S + 1):
            await event.wait()

    async def _guard(self, coro: Coroutine[Any, Any, None]) -> None:
        """Record the first reason the call ends and bound the shutdown that follows."""
        try:
            await coro
        except Exception as exc:
            self._note_end(exc)
            self._deadline.reschedule(asyncio.get_running_loop().time() + SHUTDOWN_TIMEOUT_S)
            raise

    def _classify(self, exc: BaseException) -> CallOver:
        if isinstance(exc, BaseExceptionGroup):
            leaves = list(_leaves(exc))
            for kind in (CallOver, ProviderError):
                for leaf in leaves:
                    if isinstance(leaf, kind):
                        return self._classify(leaf)
            return self._classify(leaves[0]) if leaves else CallOver(EndReason.ERROR)
        if isinstance(exc, CallOver):
            return exc
        if isinstance(exc, ProviderError):
            return CallOver(EndReason.PROVIDER_ERROR, str(exc))
        if isinstance(exc, TimeoutError):
            return CallOver(EndReason.ERROR, f"shutdown took over {SHUTDOWN_TIMEOUT_S:g} s")
        log.exception("call %s: engine error", self._config.call_id, exc_info=exc)
        return CallOver(EndReason.ERROR, f"{type(exc).__name__}: {exc}")

    def _note_end(self, exc: BaseException) -> None:
        """The first reason wins; what fails while the call is shutting down is only noise."""
        if self._end is None:
            self._end = self._classify(exc)
        elif not isinstance(exc, CallOver):
            log.debug("call %s: during shutdown: %r", self._config.call_id, exc)

    async def _finish(self) -> CallEnded:
        self._closed = True
        end = self._end or CallOver(EndReason.ERROR, "call ended without a reason")
        try:
            async with asyncio.timeout(CARRIER_TIMEOUT_S):
                if end.reason is EndReason.TRANSFERRED:
                    await self._output.transfer(end.transfer_to)
                elif end.reason is not EndReason.CALLER_HANGUP:
                    await self._output.hangup()
        except Exception as exc:
            log.warning("call %s: carrier hang-up failed: %r", self._config.call_id, exc)
        self._flush_pending_user()
        ended = CallEnded(
            reason=end.reason,
            detail=end.detail,
            duration_ms=round(self._now(), 3),
            usage=self._usage,
            transfer_to=end.transfer_to,
        )
        log.info("call %s ended: %s", self._config.call_id, end.reason)
        self._sink.emit(ended)
        return ended

    def _flush_pending_user(self) -> None:
        """Words the caller said that will never get a reply still belong in the transcript."""
        pending = self._turns.take()
        if pending.text:
            at = pending.stt_final_ms or self._now()
            start = pending.speech_start_ms or at
            entry = TranscriptEntry(_Role.USER, pending.text, self._turn_count, start, at)
            self._sink.emit(entry)

    def _now(self) -> float:
        return (self._clock() - self._t0) * 1000.0

    # ------------------------------------------------------------------ caller side

    async def _audio_loop(self, stt_up: asyncio.Event, stt_format: AudioFormat) -> None:
        await self._ready(stt_up)
        session = self._session = self._resources["stt"]
        carrier = self._config.carrier_format
        to_stt = Converter(carrier, stt_format)
        vad_rate = carrier.sample_rate if carrier.sample_rate in SUPPORTED_RATES else 16000
        to_vad = Converter(carrier, AudioFormat(Encoding.PCM16, vad_rate))
        vad = self._vad = VoiceActivity(vad_rate)
        stt_bytes_per_s = stt_format.bytes_for_ms(1000)
        while True:
            payload = await self._inbox.get()
            events = vad.process(to_vad.convert(payload))
            if events:
                now = self._now()
                for event in events:
                    at = now - (vad.processed_ms - event.at_ms)
                    if event.kind is VadEventKind.SPEECH_START:
                        self._turns.speech_started(at)
                        self._spoke_over_bot = self._over_bot()
                    else:
                        self._turns.speech_ended(at)
                        self._voice_end_ms = at
                    self._idle_since_ms = now
                self._wake.set()
            if vad.speaking:
                await self._maybe_interrupt()
            audio = to_stt.convert(payload)
            self._usage.stt_seconds += len(audio) / stt_bytes_per_s
            await session.send_audio(audio)

    async def _stt_loop(self, stt_up: asyncio.Event) -> None:
        await self._ready(stt_up)
        session: STTSession = self._resources["stt"]
        async for event in session.events():
            now = self._now()
            if event.kind is STTEventKind.INTERIM:
                self._overlap_interim = event.text
                if event.text.strip():
                    self._idle_since_ms = now
                    if self._interim_since_ms is None:
                        self._interim_since_ms = now
            elif event.kind is STTEventKind.FINAL:
                self._overlap_interim = ""
                self._interim_since_ms = None
                text = event.text.strip()
                if text:
                    self._idle_since_ms = now
                    self._overlap_final = f"{self._overlap_final} {text}".strip()
                over_bot = self._over_bot() or self._spoke_over_bot
                if text and over_bot and self._only_acknowledgements(text):
                    log.debug("call %s: acknowledgement over the bot ignored", self._config.call_id)
                else:
                    self._turns.final(text, speech_final=event.speech_final, at_ms=now)
            elif event.kind is STTEventKind.UTTERANCE_END:
                self._turns.utterance_end(now)
            else:
                self._idle_since_ms = now
            self._wake.set()
            await self._maybe_interrupt()
        raise ProviderError(self._stt.name, "the speech-to-text session closed mid-call")

    def _over_bot(self) -> bool:
        turn = self._turn
        return turn is not None and not turn.interrupted

    def _only_acknowledgements(self, text: str) -> bool:
        words = text_words(text)
        return bool(words) and all(w in self._acks for w in words)

    def _barge_in_due(self) -> bool:
        turn = self._turn
        cfg = self._config.interruption
        if turn is None or turn.interrupted or not turn.interruptible or not cfg.enabled:
            return False
        speech_ms = 0.0 if self._vad is None else self._vad.speech_ms()
        if speech_ms < cfg.min_speech_ms:
            return False
        words = text_words(f"{self._overlap_final} {self._overlap_interim}")
        if words and all(w in self._acks for w in words):
            return False
        if cfg.min_words > 0:
            return sum(w not in self._acks for w in words) >= cfg.min_words
        # no transcript yet: give the STT time to show whether this is an acknowledgement
        return (
            bool(words) or not self._acks or speech_ms >= cfg.min_speech_ms + cfg.transcript_wait_ms
        )

    async def _maybe_interrupt(self) -> None:
        if not self._barge_in_due():
            return
        turn = self._turn
        assert turn is not None and turn.task is not None
        turn.interrupt(self._now())
        turn.barged_in = True
        turn.task.cancel()
        log.debug("call %s: barge-in on turn %d", self._config.call_id, turn.index)
        if turn.audible:
            await self._clear()

    async def _clear(self) -> None:
        try:
            async with asyncio.timeout(CARRIER_TIMEOUT_S):
                await self._output.send_clear()
        except TimeoutError:
            log.warning("call %s: carrier clear timed out", self._config.call_id)

    async def _watch_hangup(self) -> None:
        await self._hung_up.wait()
        raise CallOver(EndReason.CALLER_HANGUP)

    async def _max_duration(self, main: asyncio.Task[None]) -> None:
        await asyncio.sleep(self._config.max_duration_s)
        audible = self._turn is not None and self._turn.audible
        main.cancel()
        await asyncio.wait({main}, timeout=SHUTDOWN_TIMEOUT_S)
        if audible:
            await self._clear()
        self._flush_pending_user()
        if self._config.max_duration_message and self._speaker is not None:
            turn = self._new_turn(TurnKind.CLOSING, interruptible=False)
            await self._run_turn(
                turn, self._speaker.fixed_line(self._config.max_duration_message, turn)
            )
        raise CallOver(EndReason.MAX_DURATION)

    # ------------------------------------------------------------------ bot side

    async def _main(self, tts_up: asyncio.Event, runner: ToolRunner) -> None:
        await self._ready(tts_up)
        speaker = self._speaker = Speaker(
            self._config,
            llm=self._llm,
            tts_name=self._tts.name,
            connection=self._resources["tts"],
            output=self._output,
            sink=self._sink,
            tools=runner,
            task_group=self._tg,
            usage=self._usage,
            history=self._history,
            now=self._now,
        )
        cfg = self._config
        if cfg.first_message:
            turn = self._new_turn(TurnKind.GREETING, interruptible=cfg.first_message_interruptible)
            await self._run_turn(turn, speaker.fixed_line(cfg.first_message, turn))
        self._idle_since_ms = self._now()
        prompts = 0
        while True:
            user = await self._await_user_turn()
            if user is None:
                if prompts >= cfg.idle.max_prompts:
                    turn = self._new_turn(TurnKind.CLOSING, interruptible=False)
                    await self._run_turn(turn, speaker.fixed_line(cfg.idle.goodbye, turn))
                    raise CallOver(EndReason.SILENCE_TIMEOUT)
                prompts += 1
                turn = self._new_turn(TurnKind.IDLE_PROMPT, interruptible=True)
                await self._run_turn(turn, speaker.fixed_line(cfg.idle.prompt, turn))
                continue
            prompts = 0
            turn = self._new_turn(TurnKind.REPLY, interruptible=True, user=user)
            await self._run_turn(turn, speaker.reply())
            if turn.interrupted:
                continue
            if turn.transfer_to:
                raise CallOver(EndReason.TRANSFERRED, transfer_to=turn.transfer_to)
            if turn.end_call:
                raise CallOver(EndReason.ASSISTANT_HANGUP, "end_call tool")
            phrase = self._end_phrase(turn)
            if phrase:
                raise CallOver(EndReason.ASSISTANT_HANGUP, f"end-call phrase {phrase!r}")

    def _end_phrase(self, turn: Turn) -> str:
        said = " ".join(m.content for m in turn.messages if m.role == "assistant")
        spoken = " ".join(text_words(said))
        for phrase in self._config.end_call_phrases:
            words = " ".join(text_words(phrase))
            if words and re.search(rf"\b{re.escape(words)}\b", spoken):
                return phrase
        return ""

    async def _await_user_turn(self) -> UserTurn | None:
        """The caller's next turn, or None once they have been silent for idle.timeout_s."""
        idle_ms = self._config.idle.timeout_s * 1000
        while True:
            now = self._now()
            if self._turns.ready(now):
                turn = self._turns.take()
                if turn.text:
                    return turn
            idle_at = None if self._turns.speaking else self._idle_since_ms + idle_ms
            if idle_at is not None and now >= idle_at and not self._turns.pending_text:
                return None
            finalize_at = self._finalize_at()
            if finalize_at is not None and now >= finalize_at:
                # the caller stopped but the provider still holds only interim text
                self._interim_since_ms = None
                await self._finalize_stt()
                continue
            deadlines = (self._turns.deadline(), idle_at, finalize_at)
            candidates = [d for d in deadlines if d is not None]
            timeout = max(0.0, (min(candidates) - now) / 1000) if candidates else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _finalize_at(self) -> float | None:
        if self._interim_since_ms is None or self._turns.speaking:
            return None
        return max(self._voice_end_ms, self._interim_since_ms) + self._config.turn.max_wait_ms

    async def _finalize_stt(self) -> None:
        try:
            async with asyncio.timeout(CARRIER_TIMEOUT_S):
                await self._session.finalize()
        except TimeoutError:
            log.warning("call %s: STT finalize timed out", self._config.call_id)

    def _new_turn(
        self, kind: TurnKind, *, interruptible: bool, user: UserTurn | None = None
    ) -> Turn:
        index = self._turn_count
        self._turn_count += 1
        now = self._now()
        timeline = TurnTimeline(turn_index=index, kind=kind)
        if user is not None:
            timeline.user_speech_start_ms = user.speech_start_ms
            timeline.user_speech_end_ms = user.speech_end_ms
            timeline.stt_final_ms = user.stt_final_ms
            timeline.end_of_turn_ms = now
        self._mark_seq += 1
        bytes_per_ms = self._config.carrier_format.bytes_for_ms(1000) / 1000
        playback = Playback(mark_prefix=f"t{self._mark_seq}-", bytes_per_ms=bytes_per_ms)
        return Turn(index, kind, timeline, playback, interruptible, now, user=user)

    async def _run_turn(self, turn: Turn, produce: Produce) -> None:
        """Speak one turn to its end (or its interruption), then settle it."""
        self._overlap_final = ""
        self._overlap_interim = ""
        self._turn = turn
        assert self._speaker is not None, "turns start once TTS is connected"
        task = turn.task = self._tg.create_task(self._speaker.speak(turn, produce))
        try:
            await asyncio.wait({task})
        finally:
            if not task.done():
                task.cancel()
            if not task.done() or task.cancelled() or task.exception() is not None:
                turn.interrupt(self._now())
            self._turn = None
            self._settle(turn)
            self._idle_since_ms = self._now()

    def _settle(self, turn: Turn) -> None:
        settled = settle(turn, self._now())
        if settled.restore_user and turn.user is not None:
            self._turns.restore(turn.user)
        self._history.extend(settled.history)
        for entry in settled.transcript:
            self._sink.emit(entry)
        self._sink.emit(turn.timeline)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out
