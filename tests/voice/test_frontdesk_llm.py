"""The scripted front desk: hours, booking through collect_digits, transfer, goodbye."""

from __future__ import annotations

import json

import pytest

from voice.config import LLMConfig, ToolConfig, ToolKind
from voice.providers import frontdesk_llm as desk
from voice.providers.base import (
    LLMChunk,
    LLMUsage,
    Message,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
)
from voice.providers.registry import build_llm

END_CALL = ToolConfig(name="end_call", description="Hang up.", kind=ToolKind.END_CALL)
TRANSFER = ToolConfig(
    name="transfer", description="A person.", kind=ToolKind.TRANSFER_CALL, transfer_to="+1555"
)
DATE = ToolConfig(name="collect_date", description="Date.", kind=ToolKind.COLLECT_DIGITS)
ALL_TOOLS = (END_CALL, TRANSFER, DATE)


async def collect(
    messages: list[Message], tools: tuple[ToolConfig, ...] = ALL_TOOLS, max_tokens: int = 512
) -> list[LLMChunk]:
    llm = build_llm(LLMConfig(provider="frontdesk", max_tokens=max_tokens))
    chunks = [chunk async for chunk in llm.stream(messages=messages, tools=tools)]
    await llm.aclose()
    return chunks


def text_of(chunks: list[LLMChunk]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


def requested(chunks: list[LLMChunk]) -> list[str]:
    return [call.name for c in chunks if isinstance(c, ToolCallsRequested) for call in c.calls]


def history(*user: str) -> list[Message]:
    return [Message("system", "You are a front desk.")] + [Message("user", u) for u in user]


@pytest.mark.parametrize(
    "said",
    ["What are your opening hours?", "When are you open?", "what time do you close on friday"],
)
async def test_answers_opening_hours(said: str) -> None:
    chunks = await collect(history(said))

    assert text_of(chunks) == desk.HOURS
    assert requested(chunks) == []


async def test_streams_word_by_word_and_counts_words() -> None:
    chunks = await collect(history("Hello there."))

    deltas = [c for c in chunks if isinstance(c, TextDelta)]
    assert len(deltas) == len(desk.HELLO.split())
    assert text_of(chunks) == desk.HELLO
    assert chunks[-1] == LLMUsage(prompt_tokens=5 + 2, completion_tokens=len(deltas))


async def test_max_tokens_caps_the_words() -> None:
    chunks = await collect(history("hello"), max_tokens=3)

    assert text_of(chunks) == "Hi there! I "


@pytest.mark.parametrize("said", ["Thank you, goodbye.", "bye", "No thanks, that's all"])
async def test_goodbye_says_farewell_and_ends_the_call(said: str) -> None:
    chunks = await collect(history("hello", said))

    assert text_of(chunks) == desk.FAREWELL
    assert requested(chunks) == ["end_call"]


@pytest.mark.parametrize(
    "said", ["Can I speak to a person please?", "Put me through to the manager", "a human"]
)
async def test_a_person_means_a_transfer(said: str) -> None:
    chunks = await collect(history(said))

    assert text_of(chunks) == desk.TRANSFER
    assert requested(chunks) == ["transfer"]


async def test_booking_asks_for_the_date_on_the_keypad() -> None:
    chunks = await collect(history("I would like to book an appointment."))

    assert text_of(chunks) == desk.ASK_DATE
    assert requested(chunks) == ["collect_date"]


def after_digits(result: str) -> list[Message]:
    messages = history("book an appointment")
    call = ToolCall(id="frontdesk-2", name="collect_date", arguments="{}")
    messages.append(Message("assistant", desk.ASK_DATE, tool_calls=[call]))
    messages.append(Message("tool", result, tool_call_id=call.id, name=call.name))
    return messages


@pytest.mark.parametrize(
    ("digits", "date"),
    [("1203", "December the third"), ("0229", "February the twenty-ninth")],
)
async def test_the_digits_come_back_as_a_date_in_words(digits: str, date: str) -> None:
    chunks = await collect(after_digits(json.dumps({"digits": digits})))

    assert text_of(chunks) == f"Thank you. You're booked for {date} at ten a.m. Anything else?"
    assert digits not in text_of(chunks)
    assert requested(chunks) == []


@pytest.mark.parametrize("digits", ["1332", "0230", "12", "12345"])
async def test_digits_that_are_not_a_date_are_refused(digits: str) -> None:
    chunks = await collect(after_digits(json.dumps({"digits": digits})))

    assert text_of(chunks) == desk.BAD_DATE


async def test_no_digits_entered() -> None:
    result = json.dumps({"digits": "", "error": "no digits entered"})

    assert text_of(await collect(after_digits(result))) == desk.NO_DIGITS


async def test_without_the_tools_it_says_what_it_cannot_do() -> None:
    assert text_of(await collect(history("book a table"), tools=())) == desk.NO_BOOKING
    assert text_of(await collect(history("speak to someone"), tools=())) == desk.NO_TRANSFER
    bye = await collect(history("goodbye"), tools=())
    assert (text_of(bye), requested(bye)) == (desk.FAREWELL, [])


@pytest.mark.parametrize("said", ["what are you open the dollar sign", "oh where"])
async def test_does_not_echo_what_it_did_not_understand(said: str) -> None:
    # the first is still about opening; the second gets the menu, not "You said ..."
    text = text_of(await collect(history(said)))

    assert "You said" not in text
    assert text in (desk.HOURS, desk.MENU)


async def test_thanks_and_nothing_heard() -> None:
    assert text_of(await collect(history("thank you"))) == desk.WELCOME
    assert text_of(await collect([Message("system", "x")])) == desk.INTRO
