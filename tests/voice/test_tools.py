from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from tests.voice.harness import make_config, until
from tests.voice.tool_server import tool_server
from voice.config import ToolConfig, ToolKind
from voice.events import Event, SecureCapture
from voice.providers.base import ToolCall
from voice.tools import DigitCollector, ToolOutcome, ToolRunner, sign


def http_tool(name: str, base_url: str, **kw: Any) -> ToolConfig:
    return ToolConfig(name, f"the {name} tool", ToolKind.HTTP, url=f"{base_url}/{name}", **kw)


async def run_tool(
    tools: tuple[ToolConfig, ...],
    call: ToolCall,
    digits: DigitCollector | None = None,
    events: list[Event] | None = None,
) -> ToolOutcome:
    async with httpx.AsyncClient() as http:
        runner = ToolRunner(
            make_config(tools=tools),
            http=http,
            digits=digits or DigitCollector(),
            clock=time.monotonic,
            emit=events.append if events is not None else None,
        )
        return await runner.run(call, turn_index=3)


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    # printf '%s' '1700000000.{}' | openssl dgst -sha256 -hmac secret
    expected = "b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
    assert sign("secret", "1700000000", "{}") == f"v1={expected}"


async def test_http_tool_posts_signed_json_and_returns_the_reply() -> None:
    async with tool_server() as server:
        tool = http_tool("weather", server.base_url, headers=(("X-Tenant", "acme"),))
        outcome = await run_tool((tool,), ToolCall("c1", "weather", '{"city": "Oslo"}'))
    assert server.bad_signatures == 0
    assert server.requests == [
        {"path": "/weather", "tool": "weather", "arguments": {"city": "Oslo"}, "call_id": "call-1"}
    ]
    assert json.loads(outcome.result) == {"city": "Oslo", "forecast": "sunny", "celsius": 21}
    assert outcome.record.ok and outcome.record.turn_index == 3
    assert outcome.record.arguments == {"city": "Oslo"}


async def test_http_tool_failures_become_plain_errors_for_the_llm() -> None:
    async with tool_server() as server:
        tools = (
            http_tool("fail", server.base_url),
            http_tool("notjson", server.base_url),
            http_tool("slow", server.base_url, timeout_s=0.2),
        )
        failed = await run_tool(tools, ToolCall("a", "fail", "{}"))
        notjson = await run_tool(tools, ToolCall("b", "notjson", "{}"))
        slow = await run_tool(tools, ToolCall("c", "slow", "{}"))
    assert failed.result == "Error: the fail tool failed with HTTP status 500."
    assert notjson.result == "Error: the notjson tool returned a response that is not JSON."
    assert slow.result == "Error: the slow tool did not answer within 0.2 seconds."
    assert not (failed.record.ok or notjson.record.ok or slow.record.ok)


async def test_wrong_secret_is_rejected_by_the_tenant() -> None:
    async with tool_server(secret="other") as server:
        outcome = await run_tool(
            (http_tool("weather", server.base_url),), ToolCall("a", "weather", "{}")
        )
    assert server.bad_signatures == 1
    assert "HTTP status 401" in outcome.result


async def test_unreachable_unknown_and_malformed_calls() -> None:
    dead = ToolConfig("dead", "", ToolKind.HTTP, url="http://127.0.0.1:9/x", timeout_s=1.0)
    unreachable = await run_tool((dead,), ToolCall("a", "dead", "{}"))
    unknown = await run_tool((dead,), ToolCall("b", "nope", "{}"))
    malformed = await run_tool((dead,), ToolCall("c", "dead", "{not json"))
    assert unreachable.result.startswith("Error: the dead tool could not be reached")
    assert unknown.result == "Error: no tool named 'nope'."
    assert malformed.result.startswith("Error: invalid tool arguments")


async def test_transfer_uses_the_argument_or_the_configured_number() -> None:
    tool = ToolConfig("transfer", "", ToolKind.TRANSFER_CALL, transfer_to="+15550001111")
    default = await run_tool((tool,), ToolCall("a", "transfer", "{}"))
    named = await run_tool((tool,), ToolCall("b", "transfer", '{"to": "+15559990000"}'))
    assert default.transfer_to == "+15550001111"
    assert named.transfer_to == "+15559990000"
    nowhere = ToolConfig("transfer", "", ToolKind.TRANSFER_CALL)
    assert (await run_tool((nowhere,), ToolCall("c", "transfer", "{}"))).transfer_to == ""


async def test_collect_digits_stops_at_terminator_and_redacts_the_record() -> None:
    tool = ToolConfig("pin", "", ToolKind.COLLECT_DIGITS, max_digits=8, digit_timeout_s=2.0)
    digits = DigitCollector()
    assert not digits.feed("9")  # nothing is collecting yet
    task = asyncio.create_task(run_tool((tool,), ToolCall("a", "pin", "{}"), digits))
    await until(lambda: digits.active)
    for d in "4321#7":
        digits.feed(d)
    outcome = await task
    assert json.loads(outcome.result) == {"digits": "4321"}
    assert "4321" not in outcome.record.result
    assert outcome.record.result == '{"digits": "[redacted: 4 digits]"}'


def secure_tool(url: str, **kw: Any) -> ToolConfig:
    return ToolConfig(
        "card", "", ToolKind.COLLECT_DIGITS, digit_timeout_s=2.0, secure=True, url=url, **kw
    )


async def _secure_run(tool: ToolConfig, keys: str) -> tuple[ToolOutcome, list[Event]]:
    digits, events = DigitCollector(), []
    task = asyncio.create_task(run_tool((tool,), ToolCall("a", "card", "{}"), digits, events))
    await until(lambda: digits.active)
    for d in keys:
        digits.feed(d)
    return await task, events


async def test_secure_digits_go_to_the_tenant_and_the_llm_gets_a_placeholder() -> None:
    async with tool_server() as server:
        outcome, events = await _secure_run(secure_tool(f"{server.base_url}/digits"), "4111142#")
    # the tenant's listener got them, signed
    assert server.bad_signatures == 0
    assert server.requests == [
        {
            "path": "/digits",
            "tool": "card",
            "call_id": "call-1",
            "arguments": {},
            "digits": "4111142",
        }
    ]
    # the LLM and the record see the same placeholder, with no digits in it
    assert outcome.result == outcome.record.result
    assert json.loads(outcome.result) == {
        "digits": "[secure: 7 digits entered]",
        "count": 7,
        "delivered": True,
        "valid": True,
    }
    assert outcome.record.ok
    # the capture window, opened then closed, in ms of the runner's clock
    assert [type(e) for e in events] == [SecureCapture, SecureCapture]
    opened, closed = events
    assert isinstance(opened, SecureCapture) and isinstance(closed, SecureCapture)
    assert opened.end_ms is None and opened.tool == "card" and opened.turn_index == 3
    assert closed.start_ms == opened.start_ms and closed.end_ms is not None
    assert closed.end_ms >= closed.start_ms
    assert "4111142" not in repr(events)


async def test_secure_digits_may_reveal_the_last_two_when_the_tenant_allows() -> None:
    async with tool_server() as server:
        tool = secure_tool(f"{server.base_url}/digits", reveal_last_digits=True)
        outcome, _ = await _secure_run(tool, "987654#")
        short, _ = await _secure_run(tool, "987#")
    assert json.loads(outcome.result)["last_two"] == "54"
    assert json.loads(outcome.result)["valid"] is False
    assert "last_two" not in json.loads(short.result)  # never most of a short code
    assert "987" not in short.result


async def test_secure_digits_the_tenant_refuses_are_not_delivered_and_never_shown() -> None:
    async with tool_server(secret="other") as server:
        outcome, _ = await _secure_run(secure_tool(f"{server.base_url}/digits"), "123456#")
    assert server.bad_signatures == 1
    result = json.loads(outcome.result)
    assert result["delivered"] is False and "error" in result and "valid" not in result
    assert not outcome.record.ok
    assert "123456" not in outcome.result


async def test_secure_digits_to_an_address_the_guard_refuses() -> None:
    tool = secure_tool("http://10.1.2.3/digits")  # private, not among the allowed networks
    outcome, _ = await _secure_run(tool, "5555#")
    assert json.loads(outcome.result)["delivered"] is False


async def test_collect_digits_stops_at_max_digits_or_silence() -> None:
    tool = ToolConfig("pin", "", ToolKind.COLLECT_DIGITS, max_digits=3, digit_timeout_s=0.2)
    digits = DigitCollector()
    task = asyncio.create_task(run_tool((tool,), ToolCall("a", "pin", "{}"), digits))
    await until(lambda: digits.active)
    for d in "12345":
        digits.feed(d)
    assert json.loads((await task).result) == {"digits": "123"}
    silent = await run_tool((tool,), ToolCall("b", "pin", "{}"), DigitCollector())
    assert not silent.record.ok and "no digits" in silent.result


async def test_end_call_is_a_request_not_an_action() -> None:
    tool = ToolConfig("end_call", "", ToolKind.END_CALL)
    outcome = await run_tool((tool,), ToolCall("a", "end_call", "{}"))
    assert outcome.end_call and outcome.record.ok
