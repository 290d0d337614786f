"""OpenAILLM driven through the openai SDK against the fake chat completions server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from tests.fakes import FakeOpenAI, FakeReply, FakeToolCall, stray_tasks
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
from voice.providers.openai_llm import OpenAILLM, token_limit_field
from voice.providers.registry import build_llm

KEY = "sk-test-key"
WAIT = 10

WEATHER = ToolConfig(
    name="get_weather",
    description="Current weather for a city",
    kind=ToolKind.HTTP,
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    url="http://tools.invalid/weather",
)
HANGUP = ToolConfig(name="end_call", description="End the call", kind=ToolKind.END_CALL)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI(api_key=KEY)
    async with server:
        yield server
    assert await stray_tasks() == []


@pytest.fixture
async def llm(fake: FakeOpenAI) -> AsyncIterator[OpenAILLM]:
    provider = make(fake.url)
    yield provider
    await provider.aclose()


def make(url: str, key: str = KEY, **kwargs: Any) -> OpenAILLM:
    config = LLMConfig(
        provider="openai",
        model="gpt-test",
        temperature=0.3,
        max_tokens=77,
        api_key=key,
        base_url=url,
    )
    return OpenAILLM(config, **kwargs)


def user(text: str) -> list[Message]:
    return [Message("system", "Be brief."), Message("user", text)]


async def run(
    llm: OpenAILLM, messages: Sequence[Message], tools: Sequence[ToolConfig] = ()
) -> list[LLMChunk]:
    async with asyncio.timeout(WAIT):
        return [chunk async for chunk in llm.stream(messages=messages, tools=tools)]


def text_of(chunks: list[LLMChunk]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


async def test_registry_builds_it() -> None:
    llm = build_llm(LLMConfig(provider="openai", api_key=KEY))
    assert isinstance(llm, OpenAILLM)
    await llm.aclose()


async def test_streams_text_deltas_and_usage(fake: FakeOpenAI, llm: OpenAILLM) -> None:
    chunks = await run(llm, user("what time is it"))

    deltas = [c for c in chunks if isinstance(c, TextDelta)]
    assert len(deltas) > 1  # streamed, not one blob
    assert text_of(chunks) == "You said: what time is it"
    usage = [c for c in chunks if isinstance(c, LLMUsage)]
    assert len(usage) == 1 and chunks[-1] is usage[0]
    assert usage[0].prompt_tokens > 0 and usage[0].completion_tokens > 0
    assert not any(isinstance(c, ToolCallsRequested) for c in chunks)

    request = fake.requests[0]
    assert request["model"] == "gpt-test"
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}
    assert request["max_tokens"] == 77
    assert request["temperature"] == 0.3
    assert request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "what time is it"},
    ]
    assert "tools" not in request
    assert fake.request_headers[0]["Authorization"] == f"Bearer {KEY}"
    assert fake.completed == 1


async def test_two_parallel_tool_calls_with_split_arguments(
    fake: FakeOpenAI, llm: OpenAILLM
) -> None:
    fake.argument_piece_chars = 3  # every argument string arrives in many deltas
    fake.responder = lambda messages, tools: FakeReply(
        text="One moment.",
        tool_calls=[
            FakeToolCall("get_weather", {"city": "Paris, France"}, id="call_a"),
            FakeToolCall("end_call", {}, id="call_b"),
        ],
    )
    chunks = await run(llm, user("weather in Paris then hang up"), [WEATHER, HANGUP])

    assert text_of(chunks) == "One moment."
    requested = [c for c in chunks if isinstance(c, ToolCallsRequested)]
    assert len(requested) == 1
    assert requested[0].calls == [
        ToolCall(id="call_a", name="get_weather", arguments='{"city": "Paris, France"}'),
        ToolCall(id="call_b", name="end_call", arguments="{}"),
    ]
    assert json.loads(requested[0].calls[0].arguments) == {"city": "Paris, France"}
    assert isinstance(chunks[-1], LLMUsage)

    assert fake.requests[0]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": WEATHER.parameters,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "end_call",
                "description": "End the call",
                "parameters": {"type": "object", "properties": {}},
            },
        },
    ]


async def test_tool_round_trip_history_is_sent_in_openai_shape(
    fake: FakeOpenAI, llm: OpenAILLM
) -> None:
    history = [
        *user("weather?"),
        Message(
            "assistant",
            tool_calls=[ToolCall(id="call_1", name="get_weather", arguments='{"city":"Oslo"}')],
        ),
        Message("tool", content='{"temp_c": 3}', tool_call_id="call_1", name="get_weather"),
    ]
    chunks = await run(llm, history, [WEATHER])
    assert text_of(chunks) == 'The tool returned {"temp_c": 3}.'
    sent = fake.requests[0]["messages"]
    assert sent[2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
            }
        ],
    }
    assert sent[3] == {"role": "tool", "content": '{"temp_c": 3}', "tool_call_id": "call_1"}


async def test_cancelling_the_consumer_closes_the_stream(fake: FakeOpenAI, llm: OpenAILLM) -> None:
    fake.pause_after_chunks = 3  # the server holds the rest of the reply
    got_text = asyncio.Event()

    async def consume() -> None:
        async for chunk in llm.stream(messages=user("tell me a long story"), tools=[]):
            if isinstance(chunk, TextDelta):
                got_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_text.wait(), WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the server sees the client hang up while it is still holding the reply
    await asyncio.wait_for(fake.client_disconnected.wait(), WAIT)
    assert fake.disconnects == 1
    assert fake.completed == 0


async def test_aclose_closes_the_stream(fake: FakeOpenAI, llm: OpenAILLM) -> None:
    fake.pause_after_chunks = 3
    stream = llm.stream(messages=user("tell me a long story"), tools=[])
    async with asyncio.timeout(WAIT):
        async for chunk in stream:
            if isinstance(chunk, TextDelta):
                break
    await stream.aclose()
    await asyncio.wait_for(fake.client_disconnected.wait(), WAIT)
    assert fake.completed == 0


async def test_wrong_key_is_an_auth_error(fake: FakeOpenAI) -> None:
    llm = make(fake.url, key="sk-wrong")
    with pytest.raises(ProviderError, match="authentication failed") as excinfo:
        await run(llm, user("hi"))
    assert excinfo.value.provider == "openai"
    assert "HTTP 401" in excinfo.value.message
    await llm.aclose()


async def test_server_error_after_retries_is_a_provider_error(fake: FakeOpenAI) -> None:
    llm = make(fake.url, max_retries=1)
    fake.fail_next(500, times=2)
    with pytest.raises(ProviderError, match="HTTP 500"):
        await run(llm, user("hi"))
    assert len(fake.requests) == 2  # the first try and one retry
    await llm.aclose()


async def test_a_transient_error_is_retried(fake: FakeOpenAI, llm: OpenAILLM) -> None:
    fake.fail_next(429)
    chunks = await run(llm, user("again"))
    assert text_of(chunks) == "You said: again"
    assert len(fake.requests) == 2


async def test_disconnect_mid_stream_is_a_provider_error(fake: FakeOpenAI, llm: OpenAILLM) -> None:
    fake.fail_mid_stream = "disconnect"
    fake.fail_after_chunks = 3
    received: list[LLMChunk] = []
    with pytest.raises(ProviderError, match="openai: stream failed"):
        async with asyncio.timeout(WAIT):
            async for chunk in llm.stream(messages=user("one two three four five"), tools=[]):
                received.append(chunk)
    assert text_of(received)  # some text came before the failure


async def test_error_event_mid_stream_is_a_provider_error(fake: FakeOpenAI, llm: OpenAILLM) -> None:
    fake.fail_mid_stream = "error"
    with pytest.raises(ProviderError, match="stream failed"):
        await run(llm, user("one two three four five"))


async def test_stream_ending_without_finish_is_a_provider_error(
    fake: FakeOpenAI, llm: OpenAILLM
) -> None:
    # the body ends cleanly, but without finish_reason or [DONE]
    fake.fail_mid_stream = "truncate"
    fake.fail_after_chunks = 3
    with pytest.raises(ProviderError, match="ended before the reply was finished"):
        await run(llm, user("one two three four five"))


async def test_unreachable_server_is_a_provider_error() -> None:
    llm = make("http://127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(ProviderError, match="request failed"):
        await run(llm, user("hi"))
    await llm.aclose()


@pytest.mark.parametrize(
    ("base_url", "field"),
    [
        ("", "max_completion_tokens"),
        ("https://api.openai.com/v1", "max_completion_tokens"),
        ("http://localhost:11434/v1", "max_tokens"),
        ("https://api.groq.com/openai/v1", "max_tokens"),
    ],
)
def test_token_limit_field(base_url: str, field: str) -> None:
    assert token_limit_field(base_url) == field
