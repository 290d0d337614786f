"""The call's state machine: a synchronous reducer over a typed inbox.

:meth:`Machine.step` takes one :data:`Event` and the engine clock (ms since the call
started) and returns the :data:`Command` list the shell (:class:`voice.conversation.
Conversation`) carries out. It does no I/O, awaits nothing and reads no clock, so every
turn-taking rule is tested by feeding events with chosen times (tests/voice/test_machine.py).
:meth:`Machine.deadline` says when the machine next wants a :class:`TimerDue`.

Phases and transitions (``phase``)::

    GREETING  --start, first_message set--> SPEAKING (greeting turn)
    LISTENING --turn detector ready------> THINKING  (StartTurn reply)
    LISTENING --idle.timeout_s-----------> SPEAKING  (idle prompt; after max_prompts the
                                                      goodbye, then End silence-timeout)
    LISTENING --interim only, caller silent max_wait--> FinalizeStt
    THINKING  --TurnAudible--------------> SPEAKING
    THINKING/SPEAKING --barge-in---------> LISTENING (Interrupt: cancel, clear if audible)
    THINKING/SPEAKING --TurnFinished-----> LISTENING (or End: end_call, transfer, phrase)
    any       --max duration-------------> CLOSING   (Interrupt, then the closing line,
                                                      then End max-duration)

A turn, once started, stays "in flight" until its :class:`TurnFinished` arrives, even
after an interrupt: the next reply never starts before the last one is settled, because
settling may hand the caller's words back (:attr:`TurnFinished.restore`).

Barge-in: while an interruptible turn is thinking or speaking, the caller's current speech
(VAD) lasting ``interruption.min_speech_ms`` — and, if ``min_words`` > 0, that many STT
words that are not acknowledgements — interrupts. Speech whose transcript so far is only
acknowledgements ("mhm") never interrupts, and an acknowledgement that began over the bot
is not answered even if its final arrives after the bot stopped. With ``min_words`` = 0,
speech with no transcript yet interrupts only after ``transcript_wait_ms`` more: streaming
STT's first interim comes later than ``min_speech_ms``, and until it does nobody can tell
an "mhm" from "wait, stop".

What does not pass through here, on purpose: audio frames (the shell runs VAD and sends
only its transitions, plus :class:`Voiced` while a barge-in is possible), mark echoes and
playback (owned by the turn's :class:`voice.speaking.Speaker`), keypad digits (they go to
the running ``collect_digits`` tool), and exits that are failures (provider errors, the
caller hanging up): those end the call's task group directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from voice.config import CallConfig
from voice.control import (
    MAX_LINES,
    AppendSystem,
    ControlAction,
    Hangup,
    Inject,
    Mute,
    Say,
    Transfer,
)
from voice.events import EndReason, TurnKind
from voice.turns import TurnDetector, UserTurn, text_words


class Phase(StrEnum):
    GREETING = "greeting"  # before start: TTS not connected yet
    LISTENING = "listening"
    THINKING = "thinking"  # a turn runs, nothing audible yet
    SPEAKING = "speaking"
    CLOSING = "closing"  # the closing line (idle goodbye, max duration) is in flight
    ENDED = "ended"


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Start:
    """The TTS is connected: the call can speak."""


@dataclass(frozen=True, slots=True)
class VoiceStarted:
    at_ms: float  # when the speech began (audio clock mapped to the engine clock)


@dataclass(frozen=True, slots=True)
class VoiceEnded:
    at_ms: float  # the last voiced audio


@dataclass(frozen=True, slots=True)
class Voiced:
    """The caller is still speaking (sent per frame only while :attr:`Machine.
    barge_in_possible`)."""

    speech_ms: float


@dataclass(frozen=True, slots=True)
class Interim:
    text: str


@dataclass(frozen=True, slots=True)
class Final:
    text: str
    speech_final: bool = False


@dataclass(frozen=True, slots=True)
class UtteranceEnd:
    pass


@dataclass(frozen=True, slots=True)
class SttActivity:
    """The provider heard speech start (its own VAD)."""


@dataclass(frozen=True, slots=True)
class TurnAudible:
    index: int


@dataclass(frozen=True, slots=True)
class TurnFinished:
    """A turn's task ended (played out, interrupted or failed) and was settled."""

    index: int
    interrupted: bool = False
    end_call: bool = False
    transfer_to: str = ""
    spoken: str = ""  # what the caller heard of it
    restore: UserTurn | None = None  # nothing was heard or done: the caller's words again


@dataclass(frozen=True, slots=True)
class TimerDue:
    pass


@dataclass(frozen=True, slots=True)
class ProviderSwitched:
    """A provider died mid-call and the next in its chain took over (the turn in flight,
    if any, was lost with it): say something rather than leave the caller in silence."""

    stage: str


@dataclass(frozen=True, slots=True)
class ProvidersDown:
    """Every option of a stage failed: the call ends, with a goodbye if TTS still works."""

    detail: str
    can_speak: bool = True


Event = (
    Start
    | VoiceStarted
    | VoiceEnded
    | Voiced
    | Interim
    | Final
    | UtteranceEnd
    | SttActivity
    | TurnAudible
    | TurnFinished
    | TimerDue
    | ProviderSwitched
    | ProvidersDown
    | ControlAction  # voice.control: a supervisor's say / inject / mute / transfer / end
)

# ----------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class StartTurn:
    index: int
    kind: TurnKind
    interruptible: bool
    text: str = ""  # a fixed line; "" for a reply (the LLM speaks)
    user: UserTurn | None = None


@dataclass(frozen=True, slots=True)
class Interrupt:
    """Cancel the turn in flight; ``barged_in`` when the caller caused it."""

    index: int
    at_ms: float
    barged_in: bool
    clear: bool  # audio was sent: tell the carrier to drop what it buffered


@dataclass(frozen=True, slots=True)
class FinalizeStt:
    pass


@dataclass(frozen=True, slots=True)
class FlushUser:
    """Words the caller said that will never get a reply: to the transcript."""

    user: UserTurn


@dataclass(frozen=True, slots=True)
class End:
    reason: EndReason
    detail: str = ""
    transfer_to: str = ""


Command = StartTurn | Interrupt | FinalizeStt | FlushUser | End | AppendSystem


# ----------------------------------------------------------------------------- the machine


@dataclass(slots=True)
class _Live:
    """What the machine knows of the turn in flight (its owner is the Speaker)."""

    index: int
    kind: TurnKind
    interruptible: bool
    audible: bool = False
    interrupted: bool = False


class Machine:
    """All turn-taking state of one call. See the module docstring."""

    __slots__ = (
        "_acks",
        "_closing",
        "_closing_detail",
        "_closing_line",
        "_config",
        "_detector",
        "_end",
        "_idle_since_ms",
        "_interim_since_ms",
        "_lines",
        "_max_at_ms",
        "_muted",
        "_overlap_final",
        "_overlap_interim",
        "_prompts",
        "_speech_ms",
        "_spoke_over_bot",
        "_turn",
        "_turn_count",
        "_voice_end_ms",
        "phase",
    )

    def __init__(self, config: CallConfig) -> None:
        self._config = config
        self._detector = TurnDetector(config.turn)
        self._acks = frozenset(
            w for a in config.interruption.acknowledgements for w in text_words(a)
        )
        self.phase = Phase.GREETING
        self._turn: _Live | None = None
        self._turn_count = 0
        self._idle_since_ms = 0.0
        self._prompts = 0
        self._overlap_final = ""
        self._overlap_interim = ""
        self._spoke_over_bot = False  # the caller's current speech began over the bot
        self._interim_since_ms: float | None = None  # interim text not yet final
        self._voice_end_ms = 0.0
        self._speech_ms = 0.0
        self._max_at_ms = config.max_duration_s * 1000
        # the closing line's reason once the call is winding down
        self._closing: EndReason | None = None
        self._closing_detail = ""
        self._closing_line = ""
        # control (voice.control): lines a supervisor asked the agent to say; muted replies
        self._lines: list[str] = []
        self._muted = False

    # -- queries ------------------------------------------------------------------

    @property
    def barge_in_possible(self) -> bool:
        """Whether :class:`Voiced` events can change anything now."""
        turn = self._turn
        return (
            turn is not None
            and turn.interruptible
            and not turn.interrupted
            and self._config.interruption.enabled
        )

    @property
    def turns(self) -> int:
        return self._turn_count

    def deadline(self) -> float | None:
        """When (engine ms) the machine wants a :class:`TimerDue`, or None."""
        if self.phase in (Phase.GREETING, Phase.ENDED):
            return None
        candidates = [self._max_at_ms] if self._closing is None else []
        if self._turn is None and self._closing is None:
            candidates += [
                d
                for d in (self._detector.deadline(), self._idle_at(), self._finalize_at())
                if d is not None
            ]
        return min(candidates) if candidates else None

    def take_pending(self) -> UserTurn:
        """The caller's words not yet answered (the call is over)."""
        return self._detector.take()

    # -- the reducer --------------------------------------------------------------

    def step(self, event: Event, now: float) -> list[Command]:
        if self.phase is Phase.ENDED:
            return []
        out: list[Command] = []
        match event:
            case Start():
                self._touch(now)
                self.phase = Phase.LISTENING
                cfg = self._config
                if cfg.first_message:
                    kind, interruptible = TurnKind.GREETING, cfg.first_message_interruptible
                    out.append(self._start(kind, interruptible, text=cfg.first_message))
            case VoiceStarted(at_ms=at):
                self._detector.speech_started(at)
                self._spoke_over_bot = self._over_bot()
                self._touch(now)
            case VoiceEnded(at_ms=at):
                self._detector.speech_ended(at)
                self._voice_end_ms = at
                self._speech_ms = 0.0
                self._touch(now)
            case Voiced(speech_ms=ms):
                self._speech_ms = ms
                self._maybe_interrupt(now, out)
            case Interim(text=text):
                self._overlap_interim = text
                if text.strip():
                    self._touch(now)
                    if self._interim_since_ms is None:
                        self._interim_since_ms = now
                self._maybe_interrupt(now, out)
            case Final(text=text, speech_final=speech_final):
                self._on_final(text.strip(), speech_final, now)
                self._maybe_interrupt(now, out)
            case UtteranceEnd():
                self._detector.utterance_end(now)
                self._maybe_interrupt(now, out)
            case SttActivity():
                self._touch(now)
                self._maybe_interrupt(now, out)
            case TurnAudible(index=index):
                turn = self._turn
                if turn is not None and turn.index == index and not turn.interrupted:
                    turn.audible = True
                    if self.phase is Phase.THINKING:
                        self.phase = Phase.SPEAKING
            case TurnFinished():
                self._on_turn_finished(event, now, out)
            case TimerDue():
                pass
            case ProviderSwitched():
                if (
                    self._turn is None
                    and self._closing is None
                    and self.phase is not Phase.GREETING
                ):
                    line = self._config.fallback.apology
                    if line:
                        out.append(self._start(TurnKind.APOLOGY, True, text=line))
            case ProvidersDown(detail=detail, can_speak=can_speak):
                self._fail(detail, can_speak, now, out)
            case Say() | Inject() | Mute() | Transfer() | Hangup():
                self._control(event, now, out)
        if not out or not isinstance(out[-1], End):
            self._due(now, out)
        if out and isinstance(out[-1], End):
            self.phase = Phase.ENDED
        return out

    # -- caller side --------------------------------------------------------------

    def _touch(self, now: float) -> None:
        """Something happened: the idle timer starts again."""
        self._idle_since_ms = now

    def _over_bot(self) -> bool:
        turn = self._turn
        return turn is not None and not turn.interrupted

    def _only_acknowledgements(self, text: str) -> bool:
        words = text_words(text)
        return bool(words) and all(w in self._acks for w in words)

    def _on_final(self, text: str, speech_final: bool, now: float) -> None:
        self._overlap_interim = ""
        self._interim_since_ms = None
        if text:
            self._touch(now)
            self._overlap_final = f"{self._overlap_final} {text}".strip()
        over_bot = self._over_bot() or self._spoke_over_bot
        if text and over_bot and self._only_acknowledgements(text):
            return  # a backchannel over the bot is not a turn
        self._detector.final(text, speech_final=speech_final, at_ms=now)

    def _barge_in_due(self) -> bool:
        if not self.barge_in_possible:
            return False
        cfg = self._config.interruption
        speech_ms = self._speech_ms
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

    def _maybe_interrupt(self, now: float, out: list[Command]) -> None:
        if self._barge_in_due():
            turn = self._turn
            assert turn is not None
            out.append(self._interrupt(turn, now, barged_in=True))
            self.phase = Phase.LISTENING

    def _interrupt(self, turn: _Live, now: float, *, barged_in: bool) -> Interrupt:
        turn.interrupted = True
        return Interrupt(turn.index, now, barged_in=barged_in, clear=turn.audible)

    # -- bot side -----------------------------------------------------------------

    def _start(
        self,
        kind: TurnKind,
        interruptible: bool,
        *,
        text: str = "",
        user: UserTurn | None = None,
    ) -> StartTurn:
        index = self._turn_count
        self._turn_count += 1
        self._turn = _Live(index, kind, interruptible)
        self._overlap_final = ""
        self._overlap_interim = ""
        if self._closing is None:
            self.phase = Phase.THINKING
        return StartTurn(index, kind, interruptible, text=text, user=user)

    def _on_turn_finished(self, event: TurnFinished, now: float, out: list[Command]) -> None:
        turn = self._turn
        if turn is None or turn.index != event.index:
            return
        self._turn = None
        self._touch(now)
        if event.restore is not None:
            self._detector.restore(event.restore)
        if self._closing is not None:
            if turn.kind is TurnKind.CLOSING:
                out.append(End(self._closing, self._closing_detail))
            else:  # the turn cut off by the max duration or a failure: now the closing line
                self._close(self._closing, self._closing_line, out)
            return
        self.phase = Phase.LISTENING
        if turn.kind is not TurnKind.REPLY or event.interrupted:
            return
        if event.transfer_to:
            out.append(End(EndReason.TRANSFERRED, transfer_to=event.transfer_to))
        elif event.end_call:
            out.append(End(EndReason.ASSISTANT_HANGUP, "end_call tool"))
        else:
            phrase = self._end_phrase(event.spoken)
            if phrase:
                out.append(End(EndReason.ASSISTANT_HANGUP, f"end-call phrase {phrase!r}"))

    def _end_phrase(self, said: str) -> str:
        spoken = " ".join(text_words(said))
        for phrase in self._config.end_call_phrases:
            words = " ".join(text_words(phrase))
            if words and re.search(rf"\b{re.escape(words)}\b", spoken):
                return phrase
        return ""

    def _close(self, reason: EndReason, line: str, out: list[Command]) -> None:
        """Say the closing line (if any), then end with ``reason``."""
        self._closing = reason
        self.phase = Phase.CLOSING
        pending = self._detector.take()
        if pending.text:
            out.append(FlushUser(pending))
        if line:
            out.append(self._start(TurnKind.CLOSING, False, text=line))
        else:
            out.append(End(reason, self._closing_detail))

    def _fail(self, detail: str, can_speak: bool, now: float, out: list[Command]) -> None:
        """Providers are gone: the goodbye (if it can still be said), then the end."""
        if self._closing is not None:
            if not can_speak:  # even the closing line cannot be said
                out.append(End(self._closing, self._closing_detail))
            return
        self._closing_detail = detail
        self._closing_line = self._config.fallback.goodbye if can_speak else ""
        turn = self._turn
        if turn is not None and self.phase is not Phase.GREETING:
            self._closing = EndReason.PROVIDER_ERROR
            self.phase = Phase.CLOSING
            if not turn.interrupted:
                out.append(self._interrupt(turn, now, barged_in=False))
            return  # the goodbye follows its TurnFinished
        self._close(EndReason.PROVIDER_ERROR, self._closing_line, out)

    # -- timers -------------------------------------------------------------------

    def _idle_at(self) -> float | None:
        if self._detector.speaking:
            return None
        return self._idle_since_ms + self._config.idle.timeout_s * 1000

    def _finalize_at(self) -> float | None:
        if self._interim_since_ms is None or self._detector.speaking:
            return None
        return max(self._voice_end_ms, self._interim_since_ms) + self._config.turn.max_wait_ms

    def _due(self, now: float, out: list[Command]) -> None:
        """Whatever is due at ``now``: max duration, a user turn, an idle prompt, finalize."""
        if self.phase is Phase.GREETING or self._closing is not None:
            return
        if now >= self._max_at_ms:
            self._closing = EndReason.MAX_DURATION
            self._closing_line = self._config.max_duration_message
            turn = self._turn
            if turn is not None:
                if not turn.interrupted:
                    out.append(self._interrupt(turn, now, barged_in=False))
                self.phase = Phase.CLOSING
                return  # the closing line follows its TurnFinished
            self._close(EndReason.MAX_DURATION, self._config.max_duration_message, out)
            return
        if self._turn is not None:
            return
        if self._lines:  # a supervisor's line, before anything the agent would say; heard whole
            out.append(self._start(TurnKind.OPERATOR, False, text=self._lines.pop(0)))
            return
        if self._muted:
            return
        cfg = self._config
        while self._detector.ready(now):
            user = self._detector.take()
            if user.text:
                self._prompts = 0
                out.append(self._start(TurnKind.REPLY, True, user=user))
                return
        idle_at = self._idle_at()
        if idle_at is not None and now >= idle_at and not self._detector.pending_text:
            if self._prompts >= cfg.idle.max_prompts:
                self._close(EndReason.SILENCE_TIMEOUT, cfg.idle.goodbye, out)
            else:
                self._prompts += 1
                out.append(self._start(TurnKind.IDLE_PROMPT, True, text=cfg.idle.prompt))
            return
        finalize_at = self._finalize_at()
        if finalize_at is not None and now >= finalize_at:
            # the caller stopped but the provider still holds only interim text
            self._interim_since_ms = None
            out.append(FinalizeStt())

    # -- control (voice.control) ----------------------------------------------------

    def _control(self, action: ControlAction, now: float, out: list[Command]) -> None:
        """A supervisor's action. Lines and unmuting take effect in :meth:`_due`, which
        runs after this step; the rest here."""
        match action:
            case Say(text=text):
                if self._closing is None and len(self._lines) < MAX_LINES:
                    self._lines.append(text)
            case Inject(text=text):
                out.append(AppendSystem(text))
            case Mute(muted=muted):
                self._muted = muted
                turn = self._turn
                if muted and turn is not None and turn.kind is TurnKind.REPLY:
                    if not turn.interrupted:
                        out.append(self._interrupt(turn, now, barged_in=False))
                    if self._closing is None:
                        self.phase = Phase.LISTENING
            case Transfer(to=to):
                out.append(End(EndReason.TRANSFERRED, "transferred by an operator", to))
            case Hangup(detail=detail):
                out.append(End(EndReason.OPERATOR_ENDED, detail or "ended by an operator"))
