from __future__ import annotations

from voice.events import Role, TurnKind, TurnTimeline
from voice.playback import Piece, Playback
from voice.providers.base import Message, ToolCall
from voice.turn_state import INTERRUPTED_TOOL_RESULT, Turn, settle
from voice.turns import UserTurn


def make_turn(user: str | None = "Hi") -> Turn:
    playback = Playback(mark_prefix="t1-", bytes_per_ms=8.0)
    user_turn = UserTurn(user, 100.0, 900.0, 950.0) if user else None
    return Turn(
        1, TurnKind.REPLY, TurnTimeline(1, TurnKind.REPLY), playback, True, 1000.0, user_turn
    )


def test_complete_turn_keeps_spoken_text_and_tool_messages() -> None:
    turn = make_turn()
    call = ToolCall("c1", "lookup", "{}")
    turn.messages = [
        Message("assistant", "Let me look.", tool_calls=[call]),
        Message("tool", '{"ok":true}', tool_call_id="c1", name="lookup"),
        Message("assistant", "Found it."),
    ]
    for piece in (Piece("Let me look.", 0), Piece("One moment.", 0), Piece("Found it.", 2)):
        turn.playback.pushed(piece)
        turn.playback.audio(800)
        turn.playback.boundary()
    turn.playback.end()
    turn.playback.first_audio_sent_ms = 1100.0
    settled = settle(turn, 5000.0)
    assert [(m.role, m.content) for m in settled.history] == [
        ("user", "Hi"),
        ("assistant", "Let me look. One moment."),
        ("tool", '{"ok":true}'),
        ("assistant", "Found it."),
    ]
    assert settled.history[1].tool_calls == [call]
    assert [(e.role, e.text, e.interrupted) for e in settled.transcript] == [
        (Role.USER, "Hi", False),
        (Role.ASSISTANT, "Let me look. One moment. Found it.", False),
    ]


def test_interrupted_tool_round_gets_a_cancelled_result_so_history_stays_valid() -> None:
    turn = make_turn()
    call = ToolCall("c1", "lookup", "{}")
    turn.messages = [Message("assistant", "Let me look that up for you.", tool_calls=[call])]
    turn.playback.pushed(Piece("Let me look that up for you.", 0))
    turn.playback.audio(8000)  # 1 s of audio for 28 characters
    turn.playback.boundary()
    turn.playback.first_audio_sent_ms = 1000.0
    turn.interrupt(1500.0)
    turn.barged_in = True
    settled = settle(turn, 1600.0)
    assistant, tool = settled.history[1:]
    assert assistant.content == "Let me look"
    assert assistant.tool_calls == [call]
    assert (tool.role, tool.tool_call_id, tool.content) == ("tool", "c1", INTERRUPTED_TOOL_RESULT)
    assert settled.transcript[-1].interrupted and settled.transcript[-1].text == "Let me look"


def test_barge_in_before_any_audio_gives_the_words_back() -> None:
    turn = make_turn("I need a table")
    turn.messages = [Message("assistant", "")]
    turn.interrupt(1200.0)
    turn.barged_in = True
    settled = settle(turn, 1200.0)
    assert settled.restore_user
    assert settled.history == [] and settled.transcript == []


def test_barge_in_after_a_tool_ran_keeps_the_turn_in_history() -> None:
    turn = make_turn("Book it")
    call = ToolCall("c1", "book", "{}")
    turn.messages = [Message("assistant", "", tool_calls=[call])]
    turn.interrupt(1200.0)
    turn.barged_in = True
    settled = settle(turn, 1200.0)
    assert not settled.restore_user
    assert [(m.role, m.content) for m in settled.history] == [
        ("user", "Book it"),
        ("assistant", ""),
        ("tool", INTERRUPTED_TOOL_RESULT),
    ]
