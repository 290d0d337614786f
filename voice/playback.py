"""What the caller has actually heard of one assistant turn.

Text chunks are pushed to one TTS context in order. A TTS provider may yield an empty
audio chunk (``b""``) to say "the audio of one pushed text ends here"; the engine then
sends a carrier mark there. Providers that cannot tell get one mark at the end of the
reply, covering all its text. Each mark therefore covers a *span*: some text chunks and
the audio bytes synthesized for them.

The carrier echoes a mark once the audio before it has played. On barge-in, the heard
text is the text of every span whose mark was echoed, plus a proportional share of the
span being played: the time since the previous echo (or since the first audio was sent)
over the span's audio duration, cut back to whole words. A span still being synthesized
is measured against the larger of its audio so far and a nominal speaking rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NOMINAL_CHARS_PER_S = 15.0  # ~150 words a minute


@dataclass(slots=True)
class Piece:
    """A chunk of text pushed to TTS, and which reply message (LLM round) it came from."""

    text: str
    message: int


@dataclass(slots=True)
class _Span:
    pieces: list[Piece]
    audio_bytes: int
    mark: str
    echoed_at_ms: float | None = None


@dataclass(slots=True)
class Heard:
    pieces: list[Piece]
    complete: bool  # the whole turn was heard


def _word_prefix(text: str, fraction: float) -> str:
    """The words of ``text`` that fit wholly within its first ``fraction``."""
    if fraction <= 0:
        return ""
    if fraction >= 1:
        return text
    limit = int(len(text) * fraction)
    if limit < len(text) and not text[limit].isspace():
        cut = text.rfind(" ", 0, limit + 1)
        limit = cut if cut > 0 else 0
    return text[:limit].rstrip()


@dataclass(slots=True)
class Playback:
    """Bookkeeping for one turn: pieces pushed, audio received, marks sent and echoed."""

    mark_prefix: str
    bytes_per_ms: float
    queued: list[Piece] = field(default_factory=list)  # pushed, audio not closed yet
    spans: list[_Span] = field(default_factory=list)
    open_bytes: int = 0
    first_audio_sent_ms: float | None = None
    audio_done: bool = False

    def pushed(self, piece: Piece) -> None:
        self.queued.append(piece)

    def audio(self, n_bytes: int) -> None:
        self.open_bytes += n_bytes

    def boundary(self) -> str | None:
        """The provider ended one pushed text's audio: the mark to send, if any audio."""
        if not self.queued and self.open_bytes == 0:
            return None
        pieces = self.queued[:1]
        del self.queued[:1]
        return self._close(pieces)

    def end(self) -> str | None:
        """Audio for the turn is over: a final mark for whatever is not yet covered."""
        self.audio_done = True
        if not self.queued and self.open_bytes == 0:
            return None
        pieces = list(self.queued)
        self.queued.clear()
        return self._close(pieces)

    def _close(self, pieces: list[Piece]) -> str:
        mark = f"{self.mark_prefix}{len(self.spans)}"
        self.spans.append(_Span(pieces, self.open_bytes, mark))
        self.open_bytes = 0
        return mark

    def echoed(self, name: str, now_ms: float) -> bool:
        """Record an echoed mark; True when it is this turn's final mark."""
        for span in self.spans:
            if span.mark == name:
                if span.echoed_at_ms is None:
                    span.echoed_at_ms = now_ms
                return self.finished
        return False

    @property
    def finished(self) -> bool:
        return (
            self.audio_done
            and not self.queued
            and all(s.echoed_at_ms is not None for s in self.spans)
        )

    def unplayed_ms(self, now_ms: float) -> float:
        """Audio sent but not yet confirmed played, as a bound for waiting on marks."""
        start = self.first_audio_sent_ms if self.first_audio_sent_ms is not None else now_ms
        total = sum(s.audio_bytes for s in self.spans) / self.bytes_per_ms
        return max(0.0, start + total - now_ms)

    def heard(self, now_ms: float) -> Heard:
        pieces: list[Piece] = []
        if self.first_audio_sent_ms is None:
            return Heard(pieces, complete=False)
        start = self.first_audio_sent_ms
        for span in self.spans:
            if span.echoed_at_ms is not None:
                pieces.extend(span.pieces)
                start = span.echoed_at_ms
                continue
            duration = span.audio_bytes / self.bytes_per_ms
            self._partial(pieces, span.pieces, now_ms - start, duration)
            return Heard(pieces, complete=False)
        if self.queued:
            text_ms = sum(len(p.text) for p in self.queued) / NOMINAL_CHARS_PER_S * 1000
            duration = max(self.open_bytes / self.bytes_per_ms, text_ms)
            self._partial(pieces, self.queued, now_ms - start, duration)
            return Heard(pieces, complete=False)
        return Heard(pieces, complete=self.audio_done)

    @staticmethod
    def _partial(out: list[Piece], span: list[Piece], played_ms: float, duration_ms: float) -> None:
        if duration_ms <= 0 or played_ms <= 0:
            return
        total = sum(len(p.text) for p in span) + max(0, len(span) - 1)
        budget = int(total * min(1.0, played_ms / duration_ms))
        for piece in span:
            if budget >= len(piece.text):
                out.append(piece)
                budget -= len(piece.text) + 1
                continue
            prefix = _word_prefix(piece.text, budget / len(piece.text))
            if prefix:
                out.append(Piece(prefix, piece.message))
            return
