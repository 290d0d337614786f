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

Pause and resume (barge-in mode ``pause_then_decide``, and preemptive replies, which are
held from the start): the turn keeps every byte of its audio. :meth:`Playback.pause`
fixes the position the caller heard up to (as above, from the marks and the time since),
forgets the marks still outstanding (a ``clear`` makes the carrier echo them at once, though
their audio never played) and holds whatever audio arrives next. :meth:`Playback.resume`
gives back, in order, the audio from that position on with fresh marks at the same
boundaries; the position the caller hears then advances from there.
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
    mark: str  # "" while not sent (held by a pause)
    echoed_at_ms: float | None = None
    start_byte: int = 0  # where its audio begins in the turn's audio

    @property
    def end_byte(self) -> int:
        return self.start_byte + self.audio_bytes


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
    sample_bytes: int = 1  # a resume starts on a whole sample
    total_bytes: int = 0
    log: bytearray = field(default_factory=bytearray)  # all the turn's audio, to resume
    paused_at_ms: float | None = None  # audio held since then (None: playing)
    held_from: int = 0  # the byte the caller heard up to when paused
    resumed_at_ms: float | None = None  # playback restarted at held_from then
    resumes: int = 0

    @property
    def paused(self) -> bool:
        return self.paused_at_ms is not None

    def pushed(self, piece: Piece) -> None:
        self.queued.append(piece)

    def audio(self, n_bytes: int, data: bytes = b"") -> None:
        """``n_bytes`` more audio; ``data`` is kept (as it must be, to resume)."""
        self.open_bytes += n_bytes
        self.total_bytes += n_bytes
        self.log += data

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

    def _close(self, pieces: list[Piece]) -> str | None:
        mark = f"{self.mark_prefix}{len(self.spans)}"
        start = self.total_bytes - self.open_bytes
        span = _Span(pieces, self.open_bytes, "" if self.paused else mark, start_byte=start)
        self.spans.append(span)
        self.open_bytes = 0
        return span.mark or None

    # -- pause and resume ----------------------------------------------------------

    def hold(self, now_ms: float) -> None:
        """Hold the audio from the start (a preemptive reply not yet confirmed)."""
        self.paused_at_ms = now_ms

    def pause(self, now_ms: float) -> None:
        """The caller stopped hearing the turn now (see the module docstring)."""
        if self.paused:
            return
        if self.first_audio_sent_ms is None:
            self.paused_at_ms = now_ms
            return
        position = self._position(now_ms)
        self.paused_at_ms = now_ms
        self.held_from = min(len(self.log), int(position) // self.sample_bytes * self.sample_bytes)
        for span in self.spans:
            if span.echoed_at_ms is not None:
                continue
            if span.end_byte <= self.held_from:
                span.echoed_at_ms = now_ms  # played out; its echo may come after the clear
            else:
                span.mark = ""  # its echo, if the clear brings one, means nothing

    def resume(self, now_ms: float) -> list[bytes | str]:
        """Audio (bytes) and marks (str) to send, in order, to play on from the pause."""
        if not self.paused:
            return []
        self.paused_at_ms = None
        self.resumes += 1
        if self.first_audio_sent_ms is not None:
            self.resumed_at_ms = now_ms
        out: list[bytes | str] = []
        at = self.held_from
        for i, span in enumerate(self.spans):
            if span.echoed_at_ms is not None or span.end_byte <= at:
                continue
            if span.end_byte > at:
                out.append(bytes(self.log[at : span.end_byte]))
                at = span.end_byte
            span.mark = f"{self.mark_prefix}{i}r{self.resumes}"
            out.append(span.mark)
        if at < len(self.log):
            out.append(bytes(self.log[at:]))
        return [item for item in out if item]

    def _position(self, now_ms: float) -> float:
        """Bytes of the turn's audio the caller has heard by ``now_ms`` (estimated)."""
        start_ms, start = self._origin()
        for span in self.spans:
            if span.echoed_at_ms is None:
                break
            if span.echoed_at_ms >= start_ms and span.end_byte >= start:
                start_ms, start = span.echoed_at_ms, span.end_byte
        return start + max(0.0, now_ms - start_ms) * self.bytes_per_ms

    def _origin(self) -> tuple[float, int]:
        """When, and from which byte, the audio last started playing."""
        if self.resumed_at_ms is not None:
            return self.resumed_at_ms, self.held_from
        assert self.first_audio_sent_ms is not None
        return self.first_audio_sent_ms, 0

    def echoed(self, name: str, now_ms: float) -> bool:
        """Record an echoed mark; True when it is this turn's final mark."""
        for span in self.spans:
            if name and span.mark == name:
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
        if self.first_audio_sent_ms is None:
            start_ms, start = now_ms, 0
        else:
            start_ms, start = self._origin()
        total = (sum(s.audio_bytes for s in self.spans) - start) / self.bytes_per_ms
        return max(0.0, start_ms + total - now_ms)

    def heard(self, now_ms: float) -> Heard:
        pieces: list[Piece] = []
        if self.first_audio_sent_ms is None:
            return Heard(pieces, complete=False)
        if self.paused_at_ms is not None:  # nothing was heard since the pause
            now_ms = min(now_ms, self.paused_at_ms)
        start_ms, start_byte = self._origin()
        at_byte = 0  # where the span or text looked at begins
        for span in self.spans:
            at_byte = span.end_byte
            if span.echoed_at_ms is not None:
                pieces.extend(span.pieces)
                if span.echoed_at_ms >= start_ms and span.end_byte >= start_byte:
                    start_ms, start_byte = span.echoed_at_ms, span.end_byte
                continue
            duration = span.audio_bytes / self.bytes_per_ms
            played = now_ms - start_ms + (start_byte - span.start_byte) / self.bytes_per_ms
            self._partial(pieces, span.pieces, played, duration)
            return Heard(pieces, complete=False)
        if self.queued:
            text_ms = sum(len(p.text) for p in self.queued) / NOMINAL_CHARS_PER_S * 1000
            duration = max(self.open_bytes / self.bytes_per_ms, text_ms)
            played = now_ms - start_ms + (start_byte - at_byte) / self.bytes_per_ms
            self._partial(pieces, self.queued, played, duration)
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
