"""Supervisor control of a running call (voice.control) through the state machine: pure
steps with chosen times, like tests/voice/test_machine.py."""

from __future__ import annotations

import pytest

from tests.voice.test_machine import greeted, user_says
from voice.control import (
    MAX_LINES,
    AppendSystem,
    Hangup,
    Inject,
    Mute,
    Say,
    Transfer,
    control_from_plain,
    control_to_plain,
)
from voice.events import EndReason, TurnKind
from voice.machine import (
    End,
    Interrupt,
    Machine,
    Phase,
    StartTurn,
    TimerDue,
    TurnAudible,
    TurnFinished,
)


def reply_to(m: Machine, text: str, *, start: float, end: float) -> StartTurn:
    assert user_says(m, text, start=start, end=end) == []
    [reply] = m.step(TimerDue(), end + 200)
    assert isinstance(reply, StartTurn) and reply.kind is TurnKind.REPLY
    return reply


def test_say_speaks_at_once_when_nothing_is_said() -> None:
    m = greeted()
    [turn] = m.step(Say("A supervisor here."), 2000)
    assert isinstance(turn, StartTurn)
    assert (turn.kind, turn.text, turn.interruptible) == (
        TurnKind.OPERATOR,
        "A supervisor here.",
        False,
    )
    assert m.phase is Phase.THINKING


def test_say_waits_for_the_turn_in_flight_and_lines_keep_their_order() -> None:
    m = greeted()
    reply = reply_to(m, "hello there", start=1500, end=2000)
    assert m.step(Say("one"), 2200) == []
    assert m.step(Say("two"), 2300) == []
    [first] = m.step(TurnFinished(reply.index), 3000)
    assert isinstance(first, StartTurn) and first.text == "one"
    [second] = m.step(TurnFinished(first.index), 4000)
    assert isinstance(second, StartTurn) and second.text == "two"
    assert m.step(TurnFinished(second.index), 5000) == []


def test_lines_are_bounded() -> None:
    m = greeted()
    reply = reply_to(m, "hello there", start=1500, end=2000)
    for i in range(MAX_LINES + 5):
        m.step(Say(f"line {i}"), 2100 + i)
    said = []
    index = reply.index
    for t in range(3000, 3000 + 1000 * (MAX_LINES + 5), 1000):
        out = m.step(TurnFinished(index), t)
        if not out:
            break
        [turn] = out
        assert isinstance(turn, StartTurn)
        said.append(turn.text)
        index = turn.index
    assert said == [f"line {i}" for i in range(MAX_LINES)]


def test_inject_becomes_a_system_message_command() -> None:
    m = greeted()
    assert m.step(Inject("The caller is a VIP."), 2000) == [AppendSystem("The caller is a VIP.")]
    assert m.phase is Phase.LISTENING


def test_mute_cuts_the_reply_and_stops_replies_until_unmuted() -> None:
    m = greeted()
    reply = reply_to(m, "hello there", start=1500, end=2000)
    m.step(TurnAudible(reply.index), 2100)
    [cut] = m.step(Mute(True), 2200)
    assert isinstance(cut, Interrupt)
    assert (cut.index, cut.barged_in, cut.clear) == (reply.index, False, True)
    assert m.step(TurnFinished(reply.index, interrupted=True), 2300) == []
    # the caller speaks while the agent is muted: heard, not answered, no idle prompts
    assert user_says(m, "are you there", start=3000, end=3500) == []
    assert m.step(TimerDue(), 20_000) == []
    [answer] = m.step(Mute(False), 20_100)
    assert isinstance(answer, StartTurn) and answer.kind is TurnKind.REPLY
    assert answer.user is not None and answer.user.text == "are you there"


def test_a_muted_agent_still_says_a_supervisors_line() -> None:
    m = greeted()
    m.step(Mute(True), 1500)
    [turn] = m.step(Say("Please hold."), 1600)
    assert isinstance(turn, StartTurn) and turn.kind is TurnKind.OPERATOR


def test_transfer_and_end_end_the_call_now() -> None:
    m = greeted()
    [end] = m.step(Transfer("+15005550006"), 2000)
    assert end == End(EndReason.TRANSFERRED, "transferred by an operator", "+15005550006")
    assert m.phase is Phase.ENDED
    m = greeted()
    reply_to(m, "hello there", start=1500, end=2000)
    [end] = m.step(Hangup(""), 2300)
    assert isinstance(end, End) and end.reason is EndReason.OPERATOR_ENDED
    assert m.step(Say("too late"), 2200) == []


@pytest.mark.parametrize(
    ("action", "params", "expected"),
    [
        ("say", {"text": " Hi "}, Say("Hi")),
        ("inject", {"text": "Be brief."}, Inject("Be brief.")),
        ("mute_agent", {}, Mute(True)),
        ("unmute_agent", {}, Mute(False)),
        ("transfer", {"to": "+15005550006"}, Transfer("+15005550006")),
        ("end", {}, Hangup("")),
    ],
)
def test_actions_round_trip(action: str, params: dict[str, str], expected: object) -> None:
    built = control_from_plain(action, params)
    assert built == expected
    assert control_from_plain(*control_to_plain(built)) == built


@pytest.mark.parametrize(
    ("action", "params", "message"),
    [
        ("say", {}, "'text' is required"),
        ("say", {"text": "x" * 1001}, "longer than"),
        ("transfer", {"to": "nowhere"}, "phone number"),
        ("explode", {}, "unknown action"),
    ],
)
def test_bad_actions_say_why(action: str, params: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        control_from_plain(action, params)
