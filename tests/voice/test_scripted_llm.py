"""The scripted responder: streams, calls end_call on goodbye, acknowledges tool results."""

from __future__ import annotations

import pytest

from voice.config import LLMConfig, ToolConfig, ToolKind
from voice.providers.base import (
    LLMChunk,
    LLMUsage,
    Message,
    ProviderError,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
)
from voice.providers.registry import build_llm

END_CALL = ToolConfig(name="end_call", description="Hang up.", kind=ToolKind.END_CALL)
LOOKUP = ToolConfig(name="lookup_order", description="Find an order.", kind=ToolKind.HTTP)


async def collect(
    model: str = "", *, messages: list[Message], tools: tuple[ToolConfig, ...] = ()
) -> list[LLMChunk]:
    llm = build_llm(LLMConfig(provider="scripted", model=model))
    return [chunk async for chunk in llm.stream(messages=messages, tools=tools)]


def text_of(chunks: list[LLMChunk]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


def history(*user: str) -> list[Message]:
    return [Message("system", "You are a helpful agent.")] + [Message("user", u) for u in user]


async def test_streams_a_reply_in_many_deltas_then_usage() -> None:
    chunks = await collect(messages=history("The parcel never arrived at my house"))

    deltas = [c for c in chunks if isinstance(c, TextDelta)]
    assert len(deltas) > 5
    assert (
        text_of(chunks) == 'You said "The parcel never arrived at my house". How else can I help?'
    )
    assert isinstance(chunks[-1], LLMUsage)
    assert chunks[-1].completion_tokens == len(deltas)
    assert chunks[-1].prompt_tokens == 5 + 7  # words, not tokens: system + user
    assert not any(isinstance(c, ToolCallsRequested) for c in chunks)


@pytest.mark.parametrize(
    "said", ["Okay, goodbye!", "bye", "No, that's all thanks", "That\u2019s all"]
)
async def test_goodbye_says_farewell_then_requests_end_call(said: str) -> None:
    chunks = await collect(messages=history("hello", said), tools=(LOOKUP, END_CALL))

    assert "Goodbye" in text_of(chunks)
    requested = [c for c in chunks if isinstance(c, ToolCallsRequested)]
    assert len(requested) == 1
    (call,) = requested[0].calls
    assert (call.name, call.arguments) == ("end_call", "{}")
    # the farewell comes before the tool request, usage last
    assert chunks.index(requested[0]) == len(chunks) - 2


async def test_goodbye_without_end_call_tool_only_says_farewell() -> None:
    chunks = await collect(messages=history("goodbye"), tools=(LOOKUP,))

    assert "Goodbye" in text_of(chunks)
    assert not any(isinstance(c, ToolCallsRequested) for c in chunks)


async def test_acknowledges_a_tool_result() -> None:
    call = ToolCall(id="call_1", name="lookup_order", arguments='{"id": "42"}')
    messages = [
        *history("Where is order 42?"),
        Message("assistant", tool_calls=[call]),
        Message("tool", content="Shipped on Monday", tool_call_id="call_1"),
    ]

    chunks = await collect(messages=messages, tools=(LOOKUP,))

    assert text_of(chunks) == "The lookup_order step returned: Shipped on Monday. Anything else?"
    assert not any(isinstance(c, ToolCallsRequested) for c in chunks)


async def test_greets_and_offers_help() -> None:
    assert text_of(await collect(messages=history())) == "Hello! How can I help you today?"
    assert "How can I help" in text_of(await collect(messages=history("Hi there")))
    assert "happy to help" in text_of(await collect(messages=history("I have a problem")))


async def test_scripted_rules_come_before_built_ins() -> None:
    model = "delay_ms=1; opening hours => We are open nine to five.; price => Ten dollars."

    hours = await collect(model, messages=history("Hello, what are your opening hours?"))
    price = await collect(model, messages=history("What's the PRICE?"))
    other = await collect(model, messages=history("Tell me about prices"))

    assert text_of(hours) == "We are open nine to five."
    assert text_of(price) == "Ten dollars."
    assert text_of(other).startswith("You said")  # whole words only


async def test_max_tokens_caps_the_reply_words() -> None:
    llm = build_llm(LLMConfig(provider="scripted", max_tokens=3))
    chunks = [c async for c in llm.stream(messages=history("hello"), tools=())]

    assert text_of(chunks) == "Hello! How can "


@pytest.mark.parametrize("model", ["nonsense", "delay_ms=soon", "=> reply"])
def test_a_bad_script_is_a_provider_error(model: str) -> None:
    with pytest.raises(ProviderError, match="scripted"):
        build_llm(LLMConfig(provider="scripted", model=model))
