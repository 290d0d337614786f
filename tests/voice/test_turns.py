from __future__ import annotations

import pytest

from voice.config import TurnConfig
from voice.turns import TurnDetector, sounds_unfinished

CFG = TurnConfig(min_wait_ms=200, max_wait_ms=1000)


@pytest.mark.parametrize(
    ("text", "unfinished"),
    [
        ("I want to book a table", False),
        ("I want to book a table and", True),
        ("I want to book a table, but", True),
        ("so um", True),
        ("Let me think. Uh", True),
        ("my number is 555 12", True),
        ("my number is 555-123-4567", False),
        ("my account is 4411", True),
        ("I was born in 1984.", False),
        ("Is it 3?", False),
        ("Hello.", False),
        ("Android", False),
        ("", False),
    ],
)
def test_transcript_cues(text: str, unfinished: bool) -> None:
    assert sounds_unfinished(text) is unfinished


def test_no_turn_without_text() -> None:
    d = TurnDetector(CFG)
    d.speech_started(0)
    d.speech_ended(500)
    d.final("", speech_final=True, at_ms=600)
    d.utterance_end(700)
    assert d.deadline() is None
    assert not d.ready(10_000)


def test_speech_final_waits_the_minimum() -> None:
    d = TurnDetector(CFG)
    d.speech_started(0)
    d.final("What time", speech_final=False, at_ms=450)
    assert d.deadline() is None  # VAD still hears the caller
    d.final("is it?", speech_final=True, at_ms=550)
    d.speech_ended(500)
    assert d.deadline() == 700
    assert not d.ready(699) and d.ready(700)


def test_without_an_endpoint_signal_waits_halfway_and_utterance_end_shortens_it() -> None:
    d = TurnDetector(CFG)
    d.speech_started(0)
    d.speech_ended(500)
    d.final("What time is it", speech_final=False, at_ms=600)
    assert d.deadline() == 500 + 600
    d.utterance_end(900)
    assert d.deadline() == 700


def test_unfinished_transcript_waits_the_maximum_even_with_speech_final() -> None:
    d = TurnDetector(CFG)
    d.speech_started(0)
    d.speech_ended(500)
    d.final("I'd like a pizza and", speech_final=True, at_ms=600)
    assert d.deadline() == 1500
    d.speech_started(1200)
    assert d.deadline() is None
    d.speech_ended(1800)
    d.final("a salad", speech_final=True, at_ms=1900)
    assert d.deadline() == 2000
    turn = d.take()
    assert turn.text == "I'd like a pizza and a salad"
    assert d.take().text == ""
    assert (turn.speech_start_ms, turn.speech_end_ms, turn.stt_final_ms) == (0, 1800, 1900)


def test_noisy_line_cannot_hold_the_turn_forever() -> None:
    d = TurnDetector(CFG)
    d.speech_started(0)
    d.final("Hello", speech_final=True, at_ms=600)
    assert d.deadline() == 1600


def test_take_hands_over_once_and_restore_puts_text_back_in_front() -> None:
    d = TurnDetector(CFG)
    d.speech_started(0)
    d.speech_ended(400)
    d.final("I need a table", speech_final=True, at_ms=450)
    first = d.take()
    assert d.take().text == "" and d.deadline() is None
    d.speech_started(900)
    d.speech_ended(1300)
    d.final("for two", speech_final=True, at_ms=1350)
    d.restore(first)
    merged = d.take()
    assert merged.text == "I need a table for two"
    assert merged.speech_start_ms == 0


# -- the end-of-turn model (turn.end_of_turn = "smart_turn") ------------------------------


def finished_words(d: TurnDetector, *, speech_final: bool) -> None:
    d.speech_started(0)
    d.speech_ended(500)
    d.final("I'd like to book a", speech_final=speech_final, at_ms=550)


def test_while_the_model_is_asked_the_turn_waits_as_if_unfinished() -> None:
    d = TurnDetector(CFG)
    finished_words(d, speech_final=True)
    assert d.deadline() == 700  # the rules alone: the provider's end of utterance
    d.model_asked(1)
    assert d.model_pending and d.deadline() == 500 + 1000


def test_the_model_saying_unfinished_waits_max_wait_whatever_the_provider_says() -> None:
    d = TurnDetector(CFG)
    finished_words(d, speech_final=True)
    d.model_asked(1)
    d.model_said(1, False)
    assert not d.model_pending and d.deadline() == 500 + 1000


def test_the_model_saying_finished_waits_the_minimum_before_the_providers_endpoint() -> None:
    d = TurnDetector(CFG)
    finished_words(d, speech_final=False)
    assert d.deadline() == 500 + 600  # the rules alone: halfway
    d.model_asked(1)
    d.model_said(1, True)
    assert d.deadline() == 700


def test_the_transcript_cue_still_waits_when_the_model_says_finished() -> None:
    d = TurnDetector(CFG)
    d.speech_started(0)
    d.speech_ended(500)
    d.final("one more thing and", speech_final=True, at_ms=550)
    d.model_asked(1)
    d.model_said(1, True)
    assert d.deadline() == 1500


def test_no_answer_in_time_leaves_the_rules() -> None:
    d = TurnDetector(CFG)
    finished_words(d, speech_final=True)
    d.model_asked(1)
    d.model_said(1, None)
    assert d.deadline() == 700


def test_a_stale_answer_is_ignored() -> None:
    d = TurnDetector(CFG)
    finished_words(d, speech_final=True)
    d.model_asked(1)
    d.speech_resumed()  # the caller went on: the question is moot
    d.model_said(1, False)
    assert not d.model_pending and d.deadline() == 500 + 600  # the rules: halfway
    d.model_asked(2)
    d.model_said(1, True)  # an older question's answer
    assert d.model_pending
    d.model_said(2, True)
    assert d.deadline() == 700


def test_taking_the_turn_forgets_the_answer() -> None:
    d = TurnDetector(CFG)
    finished_words(d, speech_final=True)
    d.model_asked(1)
    d.model_said(1, False)
    d.take()
    d.speech_started(2000)
    d.speech_ended(2500)
    d.final("Thanks.", speech_final=True, at_ms=2550)
    assert d.deadline() == 2700
