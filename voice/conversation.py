"""The conversation: one phone call, from greeting to hang-up. The shell around
:class:`voice.machine.Machine`.

Tasks (all in ONE :class:`asyncio.TaskGroup` per call)::

    stt/tts   one holder each: connect (side by side), publish, close at the end
    audio     caller audio -> decode -> VAD -> (convert) -> STT session; VAD transitions
              (and, while a barge-in is possible, the speech length) to the inbox
    stt       STT events -> inbox
    shell     inbox -> ``machine.step`` -> commands carried out; sleeps until the machine's
              next deadline when the inbox is quiet
    turn      one per assistant turn (``Speaker.speak``: LLM/tools -> TTS -> carrier, its
              pump and tool tasks in a task group of its own), settled when it ends
    hangup    the caller's hang-up

Every rule about *when* (end of turn, barge-in, idle prompts, max duration, when to hang
up) lives in :mod:`voice.machine`, a reducer with no I/O; this module only turns the
world into its events and its commands into I/O. The machine's inbox is a bounded queue;
caller audio waits in its own bounded queue (``audio_queue_frames``) and, when full, the
oldest frame is dropped and counted (``CallEnded.dropped_frames``): a stalled loop should
catch up on the newest speech, not replay stale audio.

Barge-in: the machine's :class:`~voice.machine.Interrupt` cancels the turn's task (LLM
stream closed, TTS context cancelled) and sends ``clear`` if audio went out. The turn keeps
what the caller heard (:mod:`voice.playback`) in both history and transcript. A reply
cancelled before any audio was sent (and before any tool ran, whose effects the history
must keep) gives the user's words back to the turn detector, so what they said next is
answered together with it, once.

Ending: the machine's :class:`~voice.machine.End`, a provider failure or the caller
hanging up raises out of a task; the task group then cancels everything else, and the
shutdown that follows is bounded by ``SHUTDOWN_TIMEOUT_S``. Then the carrier is told to
hang up (or transfer) unless the caller hung up, the turn in flight is settled with what
was heard, unanswered caller words go to the transcript, and ``run()`` returns the
:class:`~voice.events.CallEnded` it also emitted. Provider failures end the call with
``PROVIDER_ERROR`` and the error text; anything else unexpected with ``ERROR``.

End of turn by model (``turn.end_of_turn = "smart_turn"``): the audio task keeps the
caller's audio of the current turn (at the VAD's rate, from the first speech after a
silence longer than ``max_wait_ms``, the last ``smart_turn.WINDOW_S`` seconds). The
machine's :class:`~voice.machine.AskEndOfTurn` snapshots it and a task asks the process's
shared model off the event loop; the answer, or ``None`` after the model's timeout, goes to
the inbox as :class:`~voice.machine.EndOfTurnSaid`. A model that cannot be loaded answers
``None`` at once: the rules decide.

Timeline marks (ms since the call started, engine clock): user speech start/end come from
VAD (mapped from audio time), ``stt_final`` from the last final of the turn, ``end_of_turn``
when the machine starts the turn, ``llm_request`` / ``llm_first_token`` around the first
LLM round, ``tts_first_text`` at the first push, ``tts_first_audio`` at the first audio
byte, ``first_audio_sent`` after the first ``send_audio`` returned, ``playback_finished``
at the echo of the turn's final mark, ``interrupted_at`` at barge-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import numpy as np

from voice import silero, smart_turn
from voice.audio import Converter
from voice.config import AudioFormat, CallConfig, Encoding, EndOfTurn, TTSConfig, VadKind
from voice.control import AppendSystem, ControlAction
from voice.events import (
    CallEnded,
    EndReason,
    Fallback,
    Sink,
    TranscriptEntry,
    TurnTimeline,
    Usage,
    chain_label,
)
from voice.events import Role as _Role
from voice.linecache import LineCache
from voice.machine import (
    AskEndOfTurn,
    Command,
    Discard,
    End,
    EndOfTurnSaid,
    Event,
    Final,
    FinalizeStt,
    FlushUser,
    Interim,
    Interrupt,
    Machine,
    Pause,
    Phase,
    ProvidersDown,
    ProviderSwitched,
    Quiet,
    Resume,
    Start,
    StartTurn,
    SttActivity,
    TimerDue,
    TurnAudible,
    TurnFinished,
    UtteranceEnd,
    Voiced,
    VoiceEnded,
    VoiceStarted,
)
from voice.netguard import guarded_async_client
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
from voice.speaking import CARRIER_TIMEOUT_S, Speaker
from voice.tls import httpx_tls
from voice.tools import DigitCollector, ToolRunner
from voice.transport import CarrierOutput
from voice.turn_state import Turn, settle
from voice.turns import UserTurn
from voice.vad import SUPPORTED_RATES, VadEventKind, VoiceActivity

log = logging.getLogger(__name__)
R = TypeVar("R")

CONNECT_TIMEOUT_S = 10.0
# From the moment the call is decided over to run() returning: the task group's children
# each stop within PROVIDER_CLOSE_S (or CARRIER_TIMEOUT_S), then the carrier is told.
SHUTDOWN_TIMEOUT_S = 5.0
PROVIDER_CLOSE_S = 2.5
INBOX_SIZE = 256
# VAD speech ends (clock ms) -> where the sound really stopped, for the timeline; a turn
# takes the last one or two, so a few are plenty.
_AUDIBLE_ENDS_KEPT = 8
# the end-of-turn model hears this much before the turn's first speech
_MODEL_PREROLL_MS = 200
FAILURES = frozenset({EndReason.ERROR, EndReason.PROVIDER_ERROR})


class CallOver(Exception):
    """Raised by a task that has decided the call is over."""

    def __init__(self, reason: EndReason, detail: str = "", transfer_to: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail
        self.transfer_to = transfer_to


class Conversation:
    """Runs one call. Input methods are sync and never block; ``run()`` drives the call.

    ``clock`` (seconds) stamps the timeline and must be the clock the event loop waits
    on; the default is the running loop's own (``loop.time``), which lets tests run a call
    on a virtual clock. ``audio_queue_frames`` bounds the caller-audio queue (100 Twilio
    frames = 2 s).
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
        stt_fallbacks: Sequence[STTProvider] = (),
        llm_fallbacks: Sequence[LLMProvider] = (),
        tts_fallbacks: Sequence[TTSProvider] = (),
        clock: Callable[[], float] | None = None,
        audio_queue_frames: int = 100,
        lines: LineCache | None = None,
    ) -> None:
        self._config = config
        self._lines = lines
        # each stage: the primary, then its fallbacks in order
        self._stts: list[STTProvider] = [stt, *stt_fallbacks]
        self._llms: list[LLMProvider] = [llm, *llm_fallbacks]
        self._ttss: list[TTSProvider] = [tts, *tts_fallbacks]
        self._tts_at = 0  # the TTS in use
        self._fallbacks: list[Fallback] = []
        self._output = output
        self._sink = sink
        self._clock = clock
        self._t0 = 0.0
        self._audio: asyncio.Queue[bytes] = asyncio.Queue(maxsize=audio_queue_frames)
        # The shell drains this at once; the bound only guards against a stuck shell.
        self._inbox: asyncio.Queue[Event] = asyncio.Queue(maxsize=INBOX_SIZE)
        self._hung_up = asyncio.Event()
        self._gone: CallOver | None = None  # why the carrier side ended, once it has
        self._digits = DigitCollector()
        self._machine = Machine(config)
        self._history: list[Message] = []
        self._usage = Usage()
        self._end: CallOver | None = None
        self._running = False
        self._closed = False
        self._dropped_frames = 0
        # set by run() once the providers are connected
        self._tg: asyncio.TaskGroup
        self._deadline: asyncio.Timeout
        self._speaker: Speaker | None = None
        self._session: STTSession | None = None  # None while none is connected
        self._stt_format: AudioFormat | None = None
        self._tts_failed = asyncio.Event()
        self._tts_error: ProviderError | None = None
        self._stt_settled = asyncio.Event()  # a session is up, or none can be
        self._turns: dict[int, tuple[Turn, asyncio.Task[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._straggler_timer: asyncio.TimerHandle | None = None
        self._mark_seq = 0
        self._audible_ends: dict[float, float] = {}
        # the end-of-turn model (loaded by the audio task) and the turn's audio it hears
        self._smart_turn: smart_turn.SmartTurn | None = None
        self._turn_audio = bytearray()
        self._vad_rate = 16000

    # ------------------------------------------------------------------ inputs (sync)

    def feed_audio(self, payload: bytes) -> None:
        """Caller audio in ``config.carrier_format``. Drops the oldest frame when full."""
        if self._closed:
            return
        if self._audio.full():
            self._audio.get_nowait()
            self._dropped_frames += 1
            if self._dropped_frames % 50 == 1:
                log.warning("call %s: audio queue full, dropping frames", self._config.call_id)
        self._audio.put_nowait(payload)

    def feed_dtmf(self, digit: str) -> None:
        """A keypad digit. Only ``collect_digits`` uses them; they are never logged."""
        if not self._digits.feed(digit):
            log.debug("call %s: keypad digit ignored (no collection active)", self._config.call_id)

    def mark_played(self, name: str) -> None:
        """The carrier played the audio before mark ``name``."""
        if self._speaker is not None:
            self._speaker.mark_echoed(name, self._now())

    def caller_hung_up(self) -> None:
        self._carrier_gone(CallOver(EndReason.CALLER_HANGUP))

    def carrier_failed(self, detail: str) -> None:
        """The carrier connection broke (say, a protocol error): the call ends as an error."""
        self._carrier_gone(CallOver(EndReason.ERROR, detail))

    def _carrier_gone(self, why: CallOver) -> None:
        if self._gone is None:
            self._gone = why
            self._hung_up.set()

    def control(self, action: ControlAction) -> bool:
        """A supervisor's action (:mod:`voice.control`), for the machine's inbox. False when
        the call is over or its inbox is full (the action was not taken)."""
        if self._closed or not self._running:
            return False
        try:
            self._inbox.put_nowait(action)
        except asyncio.QueueFull:
            return False
        return True

    @property
    def phase(self) -> Phase:
        return self._machine.phase

    @property
    def history(self) -> tuple[Message, ...]:
        """The messages the LLM sees (settled turns), for live views. Read-only copy."""
        return tuple(self._history)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> CallEnded:
        if self._running:
            raise RuntimeError("Conversation.run() can only be called once")
        self._running = True
        if self._clock is None:
            self._clock = asyncio.get_running_loop().time
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
        async with (
            asyncio.timeout(None) as self._deadline,
            # tools are tenant URLs: public addresses only (plus the allowed networks),
            # checked after DNS on every connection and redirect (voice/netguard.py)
            guarded_async_client(self._config.allowed_networks, verify=httpx_tls()) as http,
        ):
            runner = ToolRunner(
                self._config,
                http=http,
                digits=self._digits,
                clock=self._now_s,
                emit=self._sink.emit,
            )
            self._speaker = Speaker(
                self._config,
                llms=self._llms,
                output=self._output,
                tools=runner,
                usage=self._usage,
                history=self._history,
                now=self._now,
                on_audible=self._audible,
                on_fallback=self._record_fallback,
                lines=self._lines,
            )
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                # STT and TTS connect side by side; the greeting waits only for TTS
                tts_up = asyncio.Event()
                self._spawn(self._guard(self._stt_supervisor()))
                self._spawn(self._guard(self._tts_supervisor(tts_up)))
                for llm in {id(llm): llm for llm in self._llms}.values():  # released at the end
                    self._spawn(self._guard(self._hold(llm)))
                self._spawn(self._guard(self._shell(tts_up)))
                self._spawn(self._guard(self._audio_loop()))
                self._spawn(self._guard(self._watch_hangup()))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task in the call's group, tracked so a stuck one can be cancelled again."""
        task = self._tg.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _ending(self) -> None:
        """The call is over. The task group cancels every child once and then waits for
        all of them; a child whose cleanup awaits again (an SDK stream's close) would hold
        the call for as long as that takes. So each gets ``PROVIDER_CLOSE_S``, then is
        cancelled again, until none is left: the shutdown bound holds for real."""
        if self._straggler_timer is None:
            loop = asyncio.get_running_loop()
            self._straggler_timer = loop.call_later(PROVIDER_CLOSE_S, self._cancel_stragglers)

    def _cancel_stragglers(self) -> None:
        stuck = [t for t in self._tasks if not t.done()]
        if not stuck:
            return
        log.warning(
            "call %s: %d task(s) still stopping after %g s; cancelling again",
            self._config.call_id,
            len(stuck),
            PROVIDER_CLOSE_S,
        )
        for task in stuck:
            task.cancel()
        loop = asyncio.get_running_loop()
        self._straggler_timer = loop.call_later(PROVIDER_CLOSE_S, self._cancel_stragglers)

    @contextlib.asynccontextmanager
    async def _opened(self, cm: AbstractAsyncContextManager[R], name: str) -> AsyncIterator[R]:
        """A provider's context, entered within ``CONNECT_TIMEOUT_S`` and closed within
        ``PROVIDER_CLOSE_S`` (then abandoned with a warning: the task group waits for every
        child, so one provider's hanging close would otherwise hold the whole call).

        The task that opens a provider's context also closes it, as SDKs built on anyio
        require."""
        stack = contextlib.AsyncExitStack()
        try:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    resource = await stack.enter_async_context(cm)
            except TimeoutError:
                raise ProviderError(name, f"no connection within {CONNECT_TIMEOUT_S:g} s") from None
            yield resource
        finally:
            try:
                async with asyncio.timeout(PROVIDER_CLOSE_S):
                    await stack.aclose()
            except TimeoutError:
                log.warning(
                    "call %s: %s did not close within %g s; abandoned",
                    self._config.call_id,
                    name,
                    PROVIDER_CLOSE_S,
                )
            except Exception as exc:
                log.debug("call %s: closing %s: %r", self._config.call_id, name, exc)

    async def _hold(self, llm: LLMProvider) -> None:
        """Release an LLM's connections when the call ends."""
        async with self._opened(contextlib.aclosing(llm), llm.name):
            await asyncio.Event().wait()  # cancelled when the call ends

    def _label(self, providers: Sequence[STTProvider | TTSProvider], at: int) -> str:
        return chain_label(providers[at].name, at)

    def _record_fallback(self, switch: Fallback) -> None:
        self._fallbacks.append(switch)

    def _switch(
        self, stage: str, providers: Sequence[STTProvider | TTSProvider], at: int, exc: Exception
    ) -> None:
        reason = exc.message if isinstance(exc, ProviderError) else repr(exc)
        switch = Fallback(
            stage, self._label(providers, at), self._label(providers, at + 1), reason, self._now()
        )
        log.warning(
            "call %s: %s %s failed (%s); now %s",
            self._config.call_id,
            stage,
            switch.from_provider,
            reason,
            switch.to_provider,
        )
        self._record_fallback(switch)

    async def _stt_supervisor(self) -> None:
        """The STT session: the primary, else the next in the chain, for the whole call.

        A session that fails to connect, errors or closes is replaced by the next one; when
        none is left the machine is told (the caller hears the goodbye, if TTS works)."""
        carrier = self._config.carrier_format
        for at, stt in enumerate(self._stts):
            fmt = stt.input_format(carrier)
            try:
                async with self._opened(stt.session(fmt), stt.name) as session:
                    self._stt_format, self._session = fmt, session
                    await self._stt_loop(stt, session)
            except ProviderError as exc:
                self._session = None
                if at + 1 < len(self._stts):
                    self._switch("stt", self._stts, at, exc)
                    await self._inbox.put(ProviderSwitched("stt"))
                    continue
                detail = f"speech-to-text unavailable: {exc}"
                log.warning("call %s: %s", self._config.call_id, detail)
                self._stt_settled.set()
                await self._inbox.put(ProvidersDown(detail, can_speak=True))
        await asyncio.Event().wait()  # the machine ends the call

    async def _tts_supervisor(self, ready: asyncio.Event) -> None:
        """The TTS connection: the primary, else the next in the chain. A turn whose TTS
        failed sets ``_tts_failed``; the next connection then takes over. With none left
        the call ends: there is no voice left to say goodbye with."""
        carrier = self._config.carrier_format
        for at, tts in enumerate(self._ttss):
            try:
                async with self._opened(tts.connect(carrier), tts.name) as connection:
                    self._tts_at = at
                    assert self._speaker is not None
                    self._speaker.use_tts(connection, tts.name, self._tts_config(at))
                    if ready.is_set():  # a replacement mid-call
                        await self._inbox.put(ProviderSwitched("tts"))
                    ready.set()
                    self._tts_failed.clear()
                    await self._tts_failed.wait()
                    raise self._tts_error or ProviderError(tts.name, "failed mid-call")
            except ProviderError as exc:
                if at + 1 < len(self._ttss):
                    self._switch("tts", self._ttss, at, exc)
                    continue
                raise

    def _tts_config(self, at: int) -> TTSConfig:
        configs = (self._config.tts, *self._config.tts_fallbacks)
        return configs[at] if at < len(configs) else TTSConfig(self._ttss[at].name)

    def _tts_replaceable(self, exc: ProviderError) -> bool:
        """A turn failed because of its TTS, and there is another to switch to."""
        current = self._ttss[self._tts_at]
        return exc.provider == current.name and self._tts_at + 1 < len(self._ttss)

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
            self._ending()
            raise
        except asyncio.CancelledError:  # the task group (or whoever runs the call) stops it
            self._ending()
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
            log.warning(
                "call %s: %s provider %s failed: %s",
                self._config.call_id,
                self._stage(exc.provider),
                exc.provider,
                exc.message,
            )
            return CallOver(EndReason.PROVIDER_ERROR, str(exc))
        if isinstance(exc, TimeoutError):
            return CallOver(EndReason.ERROR, f"shutdown took over {SHUTDOWN_TIMEOUT_S:g} s")
        log.exception("call %s: engine error", self._config.call_id, exc_info=exc)
        return CallOver(EndReason.ERROR, f"{type(exc).__name__}: {exc}")

    def _stage(self, provider: str) -> str:
        chains: tuple[tuple[Sequence[Any], str], ...] = (
            (self._stts, "stt"),
            (self._llms, "llm"),
            (self._ttss, "tts"),
        )
        for chain, stage in chains:
            if any(p.name == provider for p in chain):
                return stage
        return "unknown"

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
                elif self._gone is None:  # the carrier side is still there
                    await self._output.hangup()
        except Exception as exc:
            log.warning("call %s: carrier hang-up failed: %r", self._config.call_id, exc)
        self._flush_user(self._machine.take_pending())
        ended = CallEnded(
            reason=end.reason,
            detail=end.detail,
            duration_ms=round(self._now(), 3),
            usage=self._usage,
            transfer_to=end.transfer_to,
            dropped_frames=self._dropped_frames,
            fallbacks=[f.as_dict() for f in self._fallbacks],
        )
        level = logging.WARNING if end.reason in FAILURES else logging.INFO
        log.log(
            level,
            "call %s ended: reason=%s detail=%r duration_ms=%d",
            self._config.call_id,
            end.reason,
            end.detail,
            ended.duration_ms,
        )
        self._sink.emit(ended)
        return ended

    def _flush_user(self, pending: UserTurn) -> None:
        """Words the caller said that will never get a reply still belong in the transcript."""
        if pending.text:
            at = pending.stt_final_ms or self._now()
            start = pending.speech_start_ms or at
            turn_index = self._machine.turns
            self._sink.emit(TranscriptEntry(_Role.USER, pending.text, turn_index, start, at))

    def _now(self) -> float:
        assert self._clock is not None
        return (self._clock() - self._t0) * 1000.0

    def _now_s(self) -> float:
        return self._now() / 1000.0

    # ------------------------------------------------------------------ caller side

    async def _audio_loop(self) -> None:
        # Caller audio waits in its queue (bounded) until the first STT session is up or
        # known to be unavailable; while a replacement connects, frames skip the STT.
        await self._ready(self._stt_settled)
        carrier = self._config.carrier_format
        turn_cfg = self._config.turn
        model = turn_cfg.end_of_turn == EndOfTurn.SMART_TURN
        use_silero = turn_cfg.vad == VadKind.SILERO
        rates = silero.RATES if use_silero else SUPPORTED_RATES
        vad_rate = carrier.sample_rate if carrier.sample_rate in rates else 16000
        self._vad_rate = vad_rate
        to_vad = Converter(carrier, AudioFormat(Encoding.PCM16, vad_rate))
        # the models are the process's, loaded once, off the event loop
        session = await asyncio.to_thread(silero.shared_model) if use_silero else None
        vad = VoiceActivity(vad_rate, silero=session)
        if model:
            self._smart_turn = await smart_turn.load()
        machine = self._machine
        fmt: AudioFormat | None = None
        to_stt = Converter(carrier, carrier)
        # quiet within a speech: preemptive replies start there, and the model is asked
        quiet_after = turn_cfg.preemptive_after_ms if turn_cfg.preemptive or model else None
        quiet = False
        keep = vad_rate * 2 * smart_turn.WINDOW_S  # bytes of turn audio the model hears
        voice_end = -float(turn_cfg.max_wait_ms)  # audio ms of the last end of speech
        while True:
            payload = await self._audio.get()
            pcm = to_vad.convert(payload)
            events = vad.process(pcm)
            if model:
                self._turn_audio += pcm
                if len(self._turn_audio) > 2 * keep:
                    del self._turn_audio[:-keep]
            if events:
                now = self._now()
                for event in events:
                    at = now - (vad.processed_ms - event.at_ms)
                    if event.kind is VadEventKind.SPEECH_START:
                        if model and event.at_ms - voice_end > turn_cfg.max_wait_ms:
                            # a new turn: the model hears it from its first speech on
                            since = vad.processed_ms - event.at_ms + _MODEL_PREROLL_MS
                            start = int(since * vad_rate / 1000) * 2
                            del self._turn_audio[: max(0, len(self._turn_audio) - start)]
                        await self._inbox.put(VoiceStarted(at))
                    else:
                        voice_end = event.at_ms
                        if event.audible_end_ms is not None:
                            heard = now - (vad.processed_ms - event.audible_end_ms)
                            self._audible_ends[at] = heard
                            while len(self._audible_ends) > _AUDIBLE_ENDS_KEPT:
                                del self._audible_ends[next(iter(self._audible_ends))]
                        await self._inbox.put(VoiceEnded(at))
            if vad.speaking and machine.barge_in_possible:
                await self._inbox.put(Voiced(vad.speech_ms()))
            if quiet_after is not None and vad.speaking:
                # preemptive replies: the caller paused (or spoke on) within the speech
                now_quiet = vad.quiet_ms() >= quiet_after
                if now_quiet != quiet:
                    quiet = now_quiet
                    await self._inbox.put(Quiet(quiet))
            elif quiet:
                quiet = False
            session = self._session
            if session is None or self._stt_format is None:
                continue
            if fmt != self._stt_format:
                fmt = self._stt_format
                to_stt = Converter(carrier, fmt)
            audio = to_stt.convert(payload)
            self._usage.stt_seconds += len(audio) / fmt.bytes_for_ms(1000)
            try:
                await session.send_audio(audio)
            except ProviderError as exc:  # its events() fails too: the supervisor switches
                log.debug("call %s: STT send failed: %s", self._config.call_id, exc)

    async def _stt_loop(self, stt: STTProvider, session: STTSession) -> None:
        self._stt_settled.set()
        async for event in session.events():
            if event.kind is STTEventKind.INTERIM:
                await self._inbox.put(Interim(event.text))
            elif event.kind is STTEventKind.FINAL:
                await self._inbox.put(Final(event.text, event.speech_final))
            elif event.kind is STTEventKind.UTTERANCE_END:
                await self._inbox.put(UtteranceEnd())
            else:
                await self._inbox.put(SttActivity())
        raise ProviderError(stt.name, "the speech-to-text session closed mid-call")

    async def _watch_hangup(self) -> None:
        await self._hung_up.wait()
        assert self._gone is not None
        raise self._gone

    # ------------------------------------------------------------------ the shell

    async def _shell(self, tts_up: asyncio.Event) -> None:
        greeting = self._config.first_message
        speaker = self._speaker
        assert speaker is not None
        if not (greeting and speaker.has_line(greeting)):
            await self._ready(tts_up)  # a cached greeting starts before the TTS is up
        machine = self._machine
        event: Event = Start()
        while True:
            await self._execute(machine.step(event, self._now()))
            deadline = machine.deadline()
            timeout = None if deadline is None else max(0.0, (deadline - self._now()) / 1000)
            try:
                async with asyncio.timeout(timeout):
                    event = await self._inbox.get()
            except TimeoutError:
                event = TimerDue()

    async def _execute(self, commands: list[Command]) -> None:
        for command in commands:
            match command:
                case StartTurn():
                    self._start_turn(command)
                case Interrupt():
                    await self._interrupt(command)
                case Pause():
                    await self._pause(command)
                case Resume():
                    await self._resume(command)
                case Discard(index=index):
                    self._discard(index)
                case FinalizeStt():
                    await self._finalize_stt()
                case AskEndOfTurn(question=question):
                    self._ask_end_of_turn(question)
                case FlushUser(user=user):
                    self._flush_user(user)
                case AppendSystem(text=text):
                    self._history.append(Message(role="system", content=text))
                case End(reason=reason, detail=detail, transfer_to=to):
                    raise CallOver(reason, detail, to)

    def _start_turn(self, command: StartTurn) -> None:
        assert self._speaker is not None
        now = self._now()
        timeline = TurnTimeline(turn_index=command.index, kind=command.kind)
        user = command.user
        if user is not None:
            timeline.user_speech_start_ms = user.speech_start_ms
            timeline.user_speech_end_ms = user.speech_end_ms
            if user.speech_end_ms is not None:
                timeline.user_audio_end_ms = self._audible_ends.get(user.speech_end_ms)
            timeline.stt_final_ms = user.stt_final_ms
            timeline.end_of_turn_ms = now
        self._mark_seq += 1
        bytes_per_ms = self._config.carrier_format.bytes_for_ms(1000) / 1000
        carrier = self._config.carrier_format
        playback = Playback(
            mark_prefix=f"t{self._mark_seq}-",
            bytes_per_ms=bytes_per_ms,
            sample_bytes=carrier.bytes_per_sample * carrier.channels,
        )
        turn = Turn(
            command.index, command.kind, timeline, playback, command.interruptible, now, user=user
        )
        if command.held:
            playback.hold(now)
            timeline.end_of_turn_ms = None  # stamped when the turn is confirmed
        else:
            turn.confirmed.set()
        speaker = self._speaker
        if command.text:
            speaking = speaker.say(turn, command.text)
        else:
            speaking = speaker.speak(turn, speaker.reply())
        task = self._spawn(self._run_turn(turn, speaking))
        task.add_done_callback(functools.partial(self._turn_done, turn, speaking))
        self._turns[turn.index] = (turn, task)

    async def _run_turn(self, turn: Turn, speaking: Coroutine[Any, Any, None]) -> None:
        """Speak one turn to its end (or its interruption); ``_turn_done`` settles it.

        A turn whose LLM chain is exhausted, or whose TTS failed while another TTS is left,
        does not end the call from here: it is settled with what was heard and the machine
        decides (the goodbye; the apology in the new voice). Any other failure ends the
        call through the task group."""
        try:
            await speaking
        except ProviderError as exc:
            if not self._tts_replaceable(exc):
                raise
            self._tts_error = exc
            self._tts_failed.set()  # the supervisor connects the next TTS

    def _turn_done(
        self, turn: Turn, speaking: Coroutine[Any, Any, None], _task: asyncio.Task[None]
    ) -> None:
        """Settle a finished turn, however it finished: a done callback, so a turn task
        cancelled before it ever ran is settled (and reported to the machine) too."""
        speaking.close()  # no-op once run; never leave it un-awaited
        self._turns.pop(turn.index, None)
        if turn.discarded or not turn.confirmed.is_set():
            # a preemptive reply nobody heard (the machine still holds the caller's
            # words): only its cost remains
            self._usage.discarded_llm_requests += turn.llm_requests
            self._usage.discarded_llm_tokens += turn.llm_tokens
            with contextlib.suppress(asyncio.QueueFull):
                self._inbox.put_nowait(TurnFinished(turn.index, interrupted=True))
                if turn.failure:
                    self._inbox.put_nowait(ProvidersDown(turn.failure, can_speak=True))
            return
        settled = settle(turn, self._now())
        self._history.extend(settled.history)
        for record in turn.tool_records:
            self._sink.emit(record)
        for entry in settled.transcript:
            self._sink.emit(entry)
        self._sink.emit(turn.timeline)
        finished = TurnFinished(
            turn.index,
            interrupted=turn.interrupted,
            end_call=turn.end_call,
            transfer_to=turn.transfer_to,
            spoken=" ".join(m.content for m in turn.messages if m.role == "assistant"),
            restore=turn.user if settled.restore_user else None,
        )
        with contextlib.suppress(asyncio.QueueFull):  # only when the call is over
            self._inbox.put_nowait(finished)
            if turn.failure:
                self._inbox.put_nowait(ProvidersDown(turn.failure, can_speak=True))

    def _audible(self, turn: Turn) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._inbox.put_nowait(TurnAudible(turn.index))

    async def _interrupt(self, command: Interrupt) -> None:
        entry = self._turns.get(command.index)
        if entry is None:
            return
        turn, task = entry
        assert self._speaker is not None
        self._speaker.interrupt(turn, command.at_ms, barged_in=command.barged_in)
        task.cancel()
        # a cleanup that awaits again after the cancel must not hold the next reply
        loop = asyncio.get_running_loop()
        loop.call_later(PROVIDER_CLOSE_S, _cancel_if_running, task)
        log.debug("call %s: turn %d interrupted", self._config.call_id, turn.index)
        if command.clear:
            await self._clear()

    async def _pause(self, command: Pause) -> None:
        entry = self._turns.get(command.index)
        if entry is None:
            return
        assert self._speaker is not None
        self._speaker.pause(entry[0], command.at_ms)
        if command.clear:
            await self._clear()

    async def _resume(self, command: Resume) -> None:
        entry = self._turns.get(command.index)
        if entry is None:
            return
        turn = entry[0]
        user = command.user
        if user is not None:  # a preemptive reply, now confirmed: the turn's real marks
            turn.user = user
            timeline = turn.timeline
            timeline.user_speech_start_ms = user.speech_start_ms
            timeline.user_speech_end_ms = user.speech_end_ms
            timeline.stt_final_ms = user.stt_final_ms
            timeline.end_of_turn_ms = self._now()
        assert self._speaker is not None
        try:
            async with asyncio.timeout(CARRIER_TIMEOUT_S):
                await self._speaker.resume(turn)
        except TimeoutError:
            log.warning("call %s: resuming turn %d timed out", self._config.call_id, turn.index)

    def _discard(self, index: int) -> None:
        entry = self._turns.get(index)
        if entry is None:
            return
        turn, task = entry
        turn.discarded = True
        task.cancel()
        asyncio.get_running_loop().call_later(PROVIDER_CLOSE_S, _cancel_if_running, task)
        log.debug("call %s: preemptive reply %d discarded", self._config.call_id, index)

    async def _clear(self) -> None:
        try:
            async with asyncio.timeout(CARRIER_TIMEOUT_S):
                await self._output.send_clear()
        except TimeoutError:
            log.warning("call %s: carrier clear timed out", self._config.call_id)

    def _ask_end_of_turn(self, question: int) -> None:
        model = self._smart_turn
        if model is None or not self._turn_audio:
            with contextlib.suppress(asyncio.QueueFull):
                self._inbox.put_nowait(EndOfTurnSaid(question, None))
            return
        keep = self._vad_rate * 2 * smart_turn.WINDOW_S
        audio = np.frombuffer(bytes(self._turn_audio[-keep:]), dtype="<i2")
        self._spawn(self._end_of_turn(model, question, audio))

    async def _end_of_turn(
        self, model: smart_turn.SmartTurn, question: int, audio: np.ndarray
    ) -> None:
        complete = await model.complete(audio, self._vad_rate)  # bounded by its timeout
        await self._inbox.put(EndOfTurnSaid(question, complete))

    async def _finalize_stt(self) -> None:
        session = self._session
        if session is None:
            return
        try:
            async with asyncio.timeout(CARRIER_TIMEOUT_S):
                await session.finalize()
        except (TimeoutError, ProviderError):
            log.warning("call %s: STT finalize timed out", self._config.call_id)


def _cancel_if_running(task: asyncio.Task[None]) -> None:
    if not task.done():
        task.cancel()


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out
