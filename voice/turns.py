"""End-of-user-turn detection.

Inputs, all stamped with the engine clock (ms since call start):

* VAD speech start/end (:meth:`TurnDetector.speech_started` / :meth:`speech_ended`),
* STT finals, with Deepgram's ``speech_final`` flag (:meth:`final`),
* STT ``UTTERANCE_END`` (:meth:`utterance_end`).

The turn is over at :meth:`TurnDetector.deadline`, which exists only when there is final
text and the caller is not speaking. It is measured from the end of the caller's voice
(VAD end, or the final's arrival when VAD saw nothing) plus a wait:

* ``min_wait_ms`` when the STT provider also judged the utterance over
  (``speech_final`` or ``UTTERANCE_END`` after the last final),
* ``max_wait_ms`` when the transcript sounds unfinished — no sentence-final punctuation,
  and it ends with a conjunction ("and", "but", "so", "or", "because"), a filler ("um",
  "uh") or a digit string shorter than a phone number — whatever the provider says,
* halfway between the two otherwise.

If VAD still hears "speech" (noise) but the provider said ``speech_final``, the deadline is
the final's arrival plus ``max_wait_ms``, so a noisy line cannot hold the turn forever.

With an end-of-turn model (``turn.end_of_turn = "smart_turn"``, voice/smart_turn.py) the
model is asked about the caller's audio when they go quiet (:meth:`model_asked`), and its
answer (:meth:`model_said`) decides the wait where the transcript has no cue: ``min_wait_ms``
when it says finished (even before the provider's end of utterance), ``max_wait_ms`` when
it says unfinished. While the question is open the turn is treated as unfinished (the
model answers, or gives up, within its timeout); no answer leaves the rules above. The
caller speaking again makes the answer stale.

Empty transcripts never make a turn; :meth:`take` hands the text over exactly once, so a
turn cannot be answered twice. :meth:`restore` puts text back in front (a reply that was
cancelled before the caller heard anything is merged into the next one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voice.config import TurnConfig

CONJUNCTIONS = frozenset({"and", "but", "so", "or", "because", "then", "if", "with", "to"})
FILLERS = frozenset({"um", "uh", "er", "erm", "hmm", "like"})
_WORD = re.compile(r"[\w'-]+")


def text_words(text: str) -> list[str]:
    """Lower-cased words, as turn-taking compares them (apostrophes and hyphens kept)."""
    return _WORD.findall(text.lower())


_DIGITS_TAIL = re.compile(r"(\d[\d\s-]*)$")
# digit strings at least this long read as complete (a phone number, a card number)
COMPLETE_DIGITS = 10


def sounds_unfinished(text: str) -> bool:
    """Transcript cues that the caller is mid-sentence.

    Sentence-final punctuation from the STT provider counts as finished. Otherwise a
    trailing conjunction or filler, or a trailing run of 3 to 9 digits (a number being
    dictated, shorter than a phone number), counts as unfinished.
    """
    stripped = text.strip()
    if not stripped or stripped[-1] in ".?!":
        return False
    tail_digits = _DIGITS_TAIL.search(stripped)
    if tail_digits is not None:
        digits = re.sub(r"\D", "", tail_digits.group(1))
        if 3 <= len(digits) < COMPLETE_DIGITS:
            return True
    words = text_words(stripped)
    return bool(words) and (words[-1] in CONJUNCTIONS or words[-1] in FILLERS)


@dataclass(slots=True)
class UserTurn:
    """What the caller said, with the marks the timeline needs."""

    text: str
    speech_start_ms: float | None
    speech_end_ms: float | None
    stt_final_ms: float | None


class TurnDetector:
    __slots__ = (
        "_config",
        "_endpointed",
        "_final_ms",
        "_model_asked",
        "_model_said",
        "_parts",
        "_speaking",
        "_speech_end_ms",
        "_speech_start_ms",
    )

    def __init__(self, config: TurnConfig) -> None:
        self._config = config
        self._parts: list[str] = []
        self._speaking = False
        self._speech_start_ms: float | None = None
        self._speech_end_ms: float | None = None
        self._final_ms: float | None = None
        self._endpointed = False
        self._model_asked: int | None = None  # the open question to the model
        self._model_said: bool | None = None  # its answer about the current silence

    @property
    def pending_text(self) -> str:
        return " ".join(self._parts)

    @property
    def speaking(self) -> bool:
        return self._speaking

    def speech_started(self, at_ms: float) -> None:
        self._speaking = True
        self._endpointed = False
        self._forget_model()
        if self._speech_start_ms is None:
            self._speech_start_ms = at_ms

    def speech_resumed(self) -> None:
        """The caller spoke again within one VAD speech: an end of utterance no longer
        holds."""
        self._endpointed = False
        self._forget_model()

    def model_asked(self, question: int) -> None:
        """The end-of-turn model was asked about the audio so far (``question`` numbers it)."""
        self._model_asked = question
        self._model_said = None

    def model_said(self, question: int, complete: bool | None) -> None:
        """The model's answer (``None``: none in time); stale answers are ignored."""
        if question == self._model_asked:
            self._model_asked = None
            self._model_said = complete

    @property
    def model_pending(self) -> bool:
        return self._model_asked is not None

    def _forget_model(self) -> None:
        self._model_asked = None
        self._model_said = None

    def speech_ended(self, at_ms: float) -> None:
        self._speaking = False
        self._speech_end_ms = at_ms

    def final(self, text: str, *, speech_final: bool, at_ms: float) -> None:
        text = text.strip()
        if text:
            self._parts.append(text)
            self._final_ms = at_ms
            self._endpointed = speech_final
        elif speech_final and self._parts:
            self._endpointed = True

    def utterance_end(self, at_ms: float) -> None:
        if self._parts:
            self._endpointed = True

    def deadline(self) -> float | None:
        """Clock time (ms) at which the turn is over if nothing else arrives, or None."""
        if not self._parts or self._final_ms is None:
            return None
        cfg = self._config
        unfinished = sounds_unfinished(self.pending_text)
        if self._speaking:
            if not self._endpointed:
                return None
            return self._final_ms + cfg.max_wait_ms
        if unfinished or self._model_asked is not None or self._model_said is False:
            wait: float = cfg.max_wait_ms
        elif self._endpointed or self._model_said:
            wait = cfg.min_wait_ms
        else:
            wait = (cfg.min_wait_ms + cfg.max_wait_ms) / 2
        voice_end = self._speech_end_ms
        if voice_end is None or voice_end < (self._speech_start_ms or 0.0):
            voice_end = self._final_ms
        return max(voice_end + wait, self._final_ms)

    def ready(self, now_ms: float) -> bool:
        deadline = self.deadline()
        return deadline is not None and now_ms >= deadline

    def peek(self) -> UserTurn:
        """The pending turn as :meth:`take` would give it now, left in place."""
        return UserTurn(
            text=self.pending_text,
            speech_start_ms=self._speech_start_ms,
            speech_end_ms=self._speech_end_ms,
            stt_final_ms=self._final_ms,
        )

    def take(self) -> UserTurn:
        """The pending turn, once; resets the detector for the next one."""
        turn = self.peek()
        self._parts = []
        self._speech_start_ms = None if not self._speaking else self._speech_start_ms
        self._speech_end_ms = None
        self._final_ms = None
        self._endpointed = False
        self._forget_model()
        return turn

    def restore(self, turn: UserTurn) -> None:
        """Put a taken turn's text back in front of anything said since."""
        if turn.text:
            self._parts.insert(0, turn.text)
        if turn.speech_start_ms is not None and (
            self._speech_start_ms is None or turn.speech_start_ms < self._speech_start_ms
        ):
            self._speech_start_ms = turn.speech_start_ms
        if self._final_ms is None:
            self._final_ms = turn.stt_final_ms
        if self._speech_end_ms is None:
            self._speech_end_ms = turn.speech_end_ms
