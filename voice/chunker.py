"""Split streaming LLM text into speakable chunks as tokens arrive.

Rules, applied left to right over the text of one reply:

* A *sentence boundary* is a run of ``.``, ``!``, ``?`` or ``…``, optionally followed by
  closing quotes/brackets, then whitespace. A period does not end a sentence after a known
  abbreviation ("Dr.", "e.g.") or a single letter ("J. Smith"); "3.5" and "1,000" never
  split because the punctuation is not followed by whitespace.
* A *clause boundary* is ``,`` ``;`` ``:`` or a dash, then whitespace.
* The first chunk ends at the first clause or sentence boundary once it is at least
  ``first_min_chars`` long, so speech can start early. Later chunks end at sentence
  boundaries once at least ``min_chars`` long, or at a clause boundary once longer than
  ``max_chars`` (a run-on sentence should not hold audio back).
* :meth:`TextChunker.flush` returns the remainder at the end of the reply.

A boundary is decided only once the character after it has arrived, and every decision
depends only on the text, never on how it was split into tokens. Hence the invariants the
tests check: chunks are never empty, chunking does not depend on tokenization, and
``normalize(" ".join(chunks)) == normalize(text)`` where :func:`normalize` collapses every
whitespace run to one space and strips the ends (chunks themselves are stripped).
"""

from __future__ import annotations

ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ave", "rd", "blvd",
        "vs", "etc", "e.g", "i.e", "inc", "ltd", "co", "corp", "no", "approx", "dept",
        "fig", "est", "min", "max", "u.s", "a.m", "p.m", "jan", "feb", "mar", "apr",
        "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    }
)  # fmt: skip
SENTENCE_END = ".!?\u2026"
OPENERS = "(\"'\u201c\u2018"
CLAUSE_END = ",;:\u2014\u2013"  # em and en dashes
CLOSERS = "\"')]}\u201d\u2019\u00bb"


def normalize(text: str) -> str:
    return " ".join(text.split())


def _is_abbreviation(text: str, dot: int) -> bool:
    """Whether the period at ``dot`` closes an abbreviation or an initial."""
    start = dot
    while start > 0 and not text[start - 1].isspace() and text[start - 1] not in OPENERS:
        start -= 1
    word = text[start:dot].lower()
    if len(word) == 1 and word.isalpha():
        return True
    return word in ABBREVIATIONS


class TextChunker:
    """Stateful splitter for one reply. Feed deltas with :meth:`push`, end with :meth:`flush`."""

    __slots__ = ("_buf", "_emitted", "_first_min", "_max", "_min", "_pos")

    def __init__(self, *, first_min_chars: int = 12, min_chars: int = 20, max_chars: int = 200):
        self._first_min = first_min_chars
        self._min = min_chars
        self._max = max_chars
        self._buf = ""
        self._pos = 0  # scan position in _buf: everything before it holds no boundary
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        self._buf += delta
        return self._split()

    def flush(self) -> list[str]:
        out = self._split()
        rest = self._buf.strip()
        self._buf = ""
        self._pos = 0
        if rest:
            self._emitted += 1
            out.append(rest)
        return out

    def _split(self) -> list[str]:
        out: list[str] = []
        while True:
            cut = self._next_cut()
            if cut is None:
                return out
            chunk = self._buf[:cut].strip()
            self._buf = self._buf[cut:]
            self._pos = 0
            if chunk:
                self._emitted += 1
                out.append(chunk)

    def _next_cut(self) -> int | None:
        """End index of the next chunk in ``_buf``, or None if it cannot be decided yet."""
        text = self._buf
        n = len(text)
        i = self._pos
        while i < n:
            ch = text[i]
            kind = "s" if ch in SENTENCE_END else "c" if ch in CLAUSE_END else ""
            if not kind:
                i += 1
                continue
            j = i + 1
            while j < n and (
                text[j] in SENTENCE_END or text[j] in CLAUSE_END or text[j] in CLOSERS
            ):
                if text[j] in SENTENCE_END:
                    kind = "s"
                j += 1
            if j >= n:
                # the boundary depends on the next character: wait for it
                self._pos = i
                return None
            if not text[j].isspace():
                i = j
                continue
            if kind == "s" and text[i:j].rstrip(CLOSERS) == "." and _is_abbreviation(text, i):
                i = j
                continue
            length = len(text[:j].strip())
            if self._emitted == 0:
                if length >= self._first_min:
                    return j
            elif (kind == "s" and length >= self._min) or (kind == "c" and length > self._max):
                return j
            i = j
        self._pos = n
        return None
