from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from voice.chunker import TextChunker, normalize


def chunk(tokens: list[str], **kw: int) -> list[str]:
    chunker = TextChunker(**kw)
    out: list[str] = []
    for token in tokens:
        out.extend(chunker.push(token))
    return out + chunker.flush()


def split_at(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


WORDS = st.sampled_from(
    ["Hello", "there", "Dr.", "Smith", "3.5", "1,000", "e.g.", "J.", "ok", "and", "the", "U.S."]
)
PUNCT = st.sampled_from(["", "", "", ",", ".", "!", "?", ";", ":", "...", '."', "?)", " -"])
SPACE = st.sampled_from([" ", " ", "  ", "\n", "\t "])
TEXT = st.lists(st.tuples(WORDS, PUNCT, SPACE), max_size=40).map(
    lambda parts: "".join(w + p + s for w, p, s in parts)
) | st.text(alphabet=st.sampled_from(list("ab .,!?;:\n3\"')")), max_size=200)


@given(TEXT, st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_chunks_cover_the_text_and_do_not_depend_on_tokenization(
    text: str, cuts: list[int]
) -> None:
    whole = chunk([text])
    tokens = chunk(split_at(text, cuts))
    by_char = chunk(list(text))
    assert whole == tokens == by_char
    assert all(c and c == c.strip() for c in whole)
    assert normalize(" ".join(whole)) == normalize(text)


def test_first_chunk_is_early_and_later_ones_are_sentences() -> None:
    text = "Sure, I can help with that. Your order shipped today, and it should arrive soon. Bye."
    assert chunk(list(text)) == [
        "Sure, I can help with that.",
        "Your order shipped today, and it should arrive soon.",
        "Bye.",  # the remainder, at flush
    ]
    assert chunk(["Well, let me think about that for you."], first_min_chars=5) == [
        "Well,",
        "let me think about that for you.",
    ]


def test_no_split_on_abbreviations_decimals_or_numbers() -> None:
    text = "Dr. Smith said the dose is 3.5 mg, about 1,000 units, e.g. twice a day. J. Doe agrees."
    assert chunk(list(text)) == [
        "Dr. Smith said the dose is 3.5 mg,",
        "about 1,000 units, e.g. twice a day.",
        "J. Doe agrees.",
    ]


def test_chunks_wait_for_the_character_after_a_boundary() -> None:
    chunker = TextChunker()
    assert chunker.push("It costs 3.") == []
    assert chunker.push("5 dollars. ") == ["It costs 3.5 dollars."]
    assert chunker.flush() == []


def test_run_on_sentences_split_at_a_clause_once_too_long() -> None:
    text = "This is the first one. " + "word " * 50 + ", and then more words here."
    chunks = chunk([text], max_chars=100)
    assert chunks[0] == "This is the first one."
    assert chunks[1].endswith("word word ,")
    assert chunks[2] == "and then more words here."


def test_flush_returns_the_remainder_and_whitespace_only_gives_nothing() -> None:
    assert chunk(["no punctuation at all"]) == ["no punctuation at all"]
    assert chunk(["   ", "\n"]) == []
