"""The call's state machine: a synchronous reducer over a typed inbox.

:meth:`Machine.step` takes one :data:`Event` and the engine clock (ms since the call
started) and returns the :data:`Command` list the shell (:class:`voice.conversation.
Conversation`) carries out. It does no I/O, awaits nothing and reads no clock, so every
turn-taking rule is tested by feeding events with chosen times (tests/voice/test_machine.py).
:meth:`Machine.deadline` says when the machine next wants a :class:`TimerDue`.

Phases and transitions (``phase``)::

    GREETING  --start, first_message set--> SPEAKING (greeting turn)
    LISTENING --turn detector ready------> THINKING  (StartTurn reply)
    LISTENING --caller quiet, words final-> LISTENING (StartTurn held; Resume when the
                                                      detector is ready -> THINKING)
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

Barge-in (``interruption.mode``): while an interruptible turn is thinking or speaking,

* ``words``: the caller's current speech (VAD) lasting ``interruption.min_speech_ms`` —
  and, if ``min_words`` > 0, that many STT words that are not acknowledgements —
  interrupts. Speech whose transcript so far is only acknowledgements ("mhm") never
  interrupts, and an acknowledgement that began over the bot is not answered even if its
  final arrives after the bot stopped. With ``min_words`` = 0, speech with no transcript
  yet interrupts only after ``transcript_wait_ms`` more: streaming STT's first interim
  comes later than ``min_speech_ms``, and until it does nobody can tell an "mhm" from
  "wait, stop".
* ``pause_then_decide`` (the default): at the VAD's speech start the turn pauses
  (:class:`Pause`: its audio cleared but kept, its LLM stream left running) and the
  ``words`` rules decide, with twice the transcript wait, since the caller hears nothing
  meanwhile. Real words interrupt it (:class:`Interrupt`, no second clear); otherwise it
  plays on from where the caller stopped hearing it (:class:`Resume`) as soon as a final
  (an acknowledgement, or empty) arrives after the voice ended, or ``resume_wait_ms``
  after the voice ended at the latest.
* ``immediate``: speech lasting ``min_speech_ms`` interrupts, whatever it says.

Preemptive replies (``turn.preemptive``): when the caller goes quiet within a speech
(:class:`Quiet`, from the shell's VAD after ``preemptive_after_ms``) the STT is asked to
finalize, and its final counts as the provider's end of utterance. With final words
pending and the caller quiet, the reply starts *held* (``StartTurn.held``: LLM and TTS run,
no audio goes out, no tool runs). When the usual rules confirm the turn, the same words
:class:`Resume` it (now it plays); if the caller speaks again, or the words change, it is
dropped (:class:`Discard`), settled as if it never was (its index is reused) and the turn
is answered afresh.

End of turn by model (``turn.end_of_turn = "smart_turn"``): when the caller goes quiet
(:class:`Quiet`, or the VAD's end of speech if no quiet came first) while no reply is
playing, the machine asks (:class:`AskEndOfTurn`, numbered) and the shell runs the model
off the event loop and answers (:class:`EndOfTurnSaid`); the turn detector weighs the
answer (voice/turns.py). Once per pause: the model never runs per frame.

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

from voice.config import BargeInMode, CallConfig, EndOfTurn
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
class Quiet:
    """The caller went quiet (``on``) for ``turn.preemptive_after_ms``, or spoke again,
    within one VAD speech (sent only with preemptive replies on)."""

    on: bool


@dataclass(frozen=True, slots=True)
class EndOfTurnSaid:
    """The end-of-turn model's answer to :class:`AskEndOfTurn` ``question``: whether the
    caller sounds finished, or ``None`` when it did not answer in time (or failed)."""

    question: int
    complete: bool | None


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
    | Quiet
    | EndOfTurnSaid
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
    # a preemptive reply: prepare it (LLM, TTS) but hold its audio until Resume
    held: bool = False


@dataclass(frozen=True, slots=True)
class Interrupt:
    """Cancel the turn in flight; ``barged_in`` when the caller caused it."""

    index: int
    at_ms: float
    barged_in: bool
    clear: bool  # audio was sent: tell the carrier to drop what it buffered


@dataclass(frozen=True, slots=True)
class Pause:
    """Stop the turn's audio (``clear`` if some went out) but keep it and its LLM stream."""

    index: int
    at_ms: float
    clear: bool


@dataclass(frozen=True, slots=True)
class Resume:
    """Play the paused turn on from where the caller stopped hearing it; with ``user``,
    the held preemptive reply whose turn is now confirmed (its final words)."""

    index: int
    user: UserTurn | None = None


@dataclass(frozen=True, slots=True)
class Discard:
    """Drop a held preemptive reply: nothing of it reaches history or transcript."""

    index: int


@dataclass(frozen=True, slots=True)
class FinalizeStt:
    pass


@dataclass(frozen=True, slots=True)
class AskEndOfTurn:
    """Ask the end-of-turn model about the caller's audio so far; answer with
    :class:`EndOfTurnSaid` carrying the same ``question``, within the model's timeout."""

    question: int


@dataclass(frozen=True, slots=True)
class FlushUser:
    """Words the caller said that will never get a reply: to the transcript."""

    user: UserTurn


@dataclass(frozen=True, slots=True)
class End:
    reason: EndReason
    detail: str = ""
    transfer_to: str = ""


Command = (
    StartTurn
    | Interrupt
    | Pause
    | Resume
    | Discard
    | FinalizeStt
    | AskEndOfTurn
    | FlushUser
    | End
    | AppendSystem
)


# ----------------------------------------------------------------------------- the machine


@dataclass(slots=True)
class _Live:
    """What the machine knows of the turn in flight (its owner is the Speaker)."""

    index: int
    kind: TurnKind
    interruptible: bool
    audible: bool = False
    interrupted: bool = False
    paused: bool = False  # pause_then_decide: audio stopped, the decision pending
    held: tuple[str, ...] | None = None  # a preemptive reply's words, until confirmed
    discarded: bool = False


class Machine:
    """All turn-taking state of one call. See the module docstring."""

    __slots__ = (
        "_acks",
        "_asked",
        "_closing",
        "_closing_detail",
        "_closing_line",
        "_config",
        "_detector",
        "_end",
        "_failed_held",
        "_idle_since_ms",
        "_interim_since_ms",
        "_lines",
        "_max_at_ms",
        "_model",
        "_muted",
        "_overlap_final",
        "_overlap_interim",
        "_pause_final_ms",
        "_preempt_finalizing",
        "_prompts",
        "_questions",
        "_quiet",
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
        self._pause_final_ms: float | None = None  # the last final since the turn paused
        self._quiet = False  # quiet within a VAD speech (preemptive replies)
        self._preempt_finalizing = False  # FinalizeStt sent for a preemptive reply
        self._failed_held: tuple[str, ...] | None = None
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
        # the end-of-turn model: on, the questions asked, and one asked for this pause
        self._model = config.turn.end_of_turn == EndOfTurn.SMART_TURN
        self._questions = 0
        self._asked = False

    # -- queries ------------------------------------------------------------------

    @property
    def barge_in_possible(self) -> bool:
        """Whether :class:`Voiced` events can change anything now."""
        turn = self._turn
        return (
            turn is not None
            and turn.interruptible
            and not turn.interrupted
            and turn.held is None
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
        turn = self._turn
        if turn is None and self._closing is None:
            candidates += [
                d
                for d in (self._detector.deadline(), self._idle_at(), self._finalize_at())
                if d is not None
            ]
        elif turn is not None and not turn.interrupted and self._closing is None:
            if turn.held is not None and (at := self._detector.deadline()) is not None:
                candidates.append(at)
            if turn.paused and (at := self._resume_at()) is not None:
                candidates.append(at)
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
                self._quiet = False
                self._asked = False
                self._caller_went_on(out)
                self._maybe_pause(now, out)
            case VoiceEnded(at_ms=at):
                self._detector.speech_ended(at)
                self._voice_end_ms = at
                self._speech_ms = 0.0
                self._touch(now)
                self._maybe_ask(out)
            case Voiced(speech_ms=ms):
                self._speech_ms = ms
                self._maybe_pause(now, out)
                self._maybe_interrupt(now, out)
            case Quiet(on=on):
                self._quiet = on
                if not on:
                    # the caller went on: a finalize's end of utterance no longer holds
                    self._detector.speech_resumed()
                    self._asked = False
                    self._caller_went_on(out)
                else:
                    self._maybe_ask(out)
                    if self._preempt_due() and self._interim_since_ms is not None:
                        # the words so far, now, rather than after the provider's endpointing
                        self._interim_since_ms = None
                        self._preempt_finalizing = True
                        out.append(FinalizeStt())
            case EndOfTurnSaid(question=question, complete=complete):
                self._detector.model_said(question, complete)
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
        return turn is not None and not turn.interrupted and turn.held is None

    def _only_acknowledgements(self, text: str) -> bool:
        words = text_words(text)
        return bool(words) and all(w in self._acks for w in words)

    def _on_final(self, text: str, speech_final: bool, now: float) -> None:
        self._overlap_interim = ""
        self._interim_since_ms = None
        if self._turn is not None and self._turn.paused:
            self._pause_final_ms = now
        if self._preempt_finalizing:
            # finalized because the caller went quiet: the quiet stands for the provider's
            # endpointing, and the turn still ends only once the VAD hears silence
            self._preempt_finalizing = False
            speech_final = True
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
        if cfg.mode == BargeInMode.IMMEDIATE:
            return True
        words = text_words(f"{self._overlap_final} {self._overlap_interim}")
        if words and all(w in self._acks for w in words):
            return False
        if cfg.min_words > 0:
            return sum(w not in self._acks for w in words) >= cfg.min_words
        # no transcript yet: give the STT time to show whether this is an acknowledgement;
        # paused, the caller hears nothing meanwhile, so a cough fit may last twice as long
        wait = cfg.transcript_wait_ms
        if cfg.mode == BargeInMode.PAUSE_THEN_DECIDE:
            wait *= 2
        return bool(words) or not self._acks or speech_ms >= cfg.min_speech_ms + wait

    def _maybe_interrupt(self, now: float, out: list[Command]) -> None:
        if self._barge_in_due():
            turn = self._turn
            assert turn is not None
            out.append(self._interrupt(turn, now, barged_in=True))
            self.phase = Phase.LISTENING

    def _interrupt(self, turn: _Live, now: float, *, barged_in: bool) -> Interrupt:
        turn.interrupted = True
        # a paused turn's audio was cleared when it paused
        clear = turn.audible and not turn.paused
        return Interrupt(turn.index, now, barged_in=barged_in, clear=clear)

    def _stop(self, turn: _Live, now: float) -> Interrupt | Discard:
        """The call is ending: cut the turn in flight (a held reply is only dropped)."""
        if turn.held is not None:
            return self._discard(turn)
        return self._interrupt(turn, now, barged_in=False)

    def _maybe_pause(self, now: float, out: list[Command]) -> None:
        """pause_then_decide: the caller's speech over the bot stops its audio at once."""
        if self._config.interruption.mode != BargeInMode.PAUSE_THEN_DECIDE:
            return
        turn = self._turn
        if turn is None or turn.paused or not self.barge_in_possible:
            return
        if not self._detector.speaking:
            return
        turn.paused = True
        self._pause_final_ms = None
        out.append(Pause(turn.index, now, clear=turn.audible))

    def _resume_at(self) -> float | None:
        """When a paused turn plays on if nothing made the speech a real interruption."""
        if self._detector.speaking:
            return None
        return self._voice_end_ms + self._config.interruption.resume_wait_ms

    def _maybe_resume(self, now: float, out: list[Command]) -> None:
        turn = self._turn
        if turn is None or not turn.paused or turn.interrupted or self._detector.speaking:
            return
        at = self._resume_at()
        # an acknowledgement's (or a cough's empty) final after the voice ended settles it
        # before the wait is up
        final_ms = self._pause_final_ms
        if (final_ms is not None and final_ms >= self._voice_end_ms) or (
            at is not None and now >= at
        ):
            turn.paused = False
            out.append(Resume(turn.index))

    # -- the end-of-turn model -----------------------------------------------------

    def _maybe_ask(self, out: list[Command]) -> None:
        """The caller went quiet: ask the model, once per pause, unless a reply plays (a
        pause over the bot is barge-in's business, not the end of a turn)."""
        if not self._model or self._asked or self._closing is not None:
            return
        if self._turn is not None and self._turn.held is None:
            return
        self._asked = True
        self._questions += 1
        self._detector.model_asked(self._questions)
        out.append(AskEndOfTurn(self._questions))

    # -- preemptive replies -------------------------------------------------------

    def _preempt_due(self) -> bool:
        return (
            self._config.turn.preemptive
            and self._turn is None
            and self._closing is None
            and self.phase is Phase.LISTENING
        )

    def _caller_went_on(self, out: list[Command]) -> None:
        """The caller speaks again: a held preemptive reply was premature."""
        turn = self._turn
        if turn is not None and turn.held is not None and not turn.interrupted:
            out.append(self._discard(turn))

    def _discard(self, turn: _Live) -> Discard:
        turn.interrupted = turn.discarded = True
        return Discard(turn.index)

    def _maybe_prepare(self, out: list[Command]) -> None:
        """The caller is quiet with final words pending: prepare the reply, held."""
        detector = self._detector
        if not self._preempt_due() or not detector.pending_text:
            return
        if self._preempt_finalizing or self._interim_since_ms is not None:
            return  # newer words are on their way
        if tuple(text_words(detector.pending_text)) == self._failed_held:
            return
        if detector.speaking and not self._quiet:
            return
        user = detector.peek()
        out.append(self._start(TurnKind.REPLY, True, user=user, held=True))
        assert self._turn is not None
        self._turn.held = tuple(text_words(user.text))
        self.phase = Phase.LISTENING  # the caller's turn is not over yet

    def _settle_held(self, now: float, out: list[Command]) -> None:
        """The turn is confirmed: play the held reply if it answers these words."""
        turn = self._turn
        if turn is None or turn.held is None or turn.interrupted:
            return
        if tuple(text_words(self._detector.pending_text)) != turn.held:
            out.append(self._discard(turn))  # more words came: prepare them afresh
            return
        if not self._detector.ready(now):
            return
        turn.held = None
        self._prompts = 0
        self.phase = Phase.THINKING
        out.append(Resume(turn.index, user=self._detector.take()))

    # -- bot side -----------------------------------------------------------------

    def _start(
        self,
        kind: TurnKind,
        interruptible: bool,
        *,
        text: str = "",
        user: UserTurn | None = None,
        held: bool = False,
    ) -> StartTurn:
        index = self._turn_count
        self._turn_count += 1
        self._turn = _Live(index, kind, interruptible)
        self._overlap_final = ""
        self._overlap_interim = ""
        if self._closing is None:
            self.phase = Phase.THINKING
        return StartTurn(index, kind, interruptible, text=text, user=user, held=held)

    def _on_turn_finished(self, event: TurnFinished, now: float, out: list[Command]) -> None:
        turn = self._turn
        if turn is None or turn.index != event.index:
            return
        self._turn = None
        self._touch(now)
        if turn.discarded or turn.held is not None:
            # never heard of (a held reply ends unconfirmed only when it failed): its
            # index is the next turn's, and its words are still the detector's
            self._turn_count = turn.index
            if not turn.discarded:
                self._failed_held = turn.held  # not prepared again: answered when due
            if self._closing is None:
                self.phase = Phase.LISTENING
                return
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
                out.append(self._stop(turn, now))
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
                    out.append(self._stop(turn, now))
                self.phase = Phase.CLOSING
                return  # the closing line follows its TurnFinished
            self._close(EndReason.MAX_DURATION, self._config.max_duration_message, out)
            return
        if self._turn is not None:
            self._maybe_resume(now, out)
            self._settle_held(now, out)
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
            return
        self._maybe_prepare(out)

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
