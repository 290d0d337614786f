"""A fake OpenAI-compatible chat completions server (``POST /v1/chat/completions``).

Streams Server-Sent Events in OpenAI's exact shape (``chat.completion.chunk`` objects,
tool-call deltas by index, a final usage chunk with empty ``choices`` when
``stream_options.include_usage`` is set, ``data: [DONE]``) and answers non-streaming
requests with a ``chat.completion`` object. Checks ``Authorization: Bearer KEY``.

Scripting::

    fake = FakeOpenAI(api_key="sk-test")
    fake.responder = lambda messages, tools: "Hi there."          # or a FakeReply
    fake.responder = lambda m, t: FakeReply(tool_calls=[FakeToolCall("lookup", {"q": 1})])
    fake.ttft_s, fake.token_delay_s = 0.3, 0.02                    # latencies
    fake.fail_next(500)                                            # next request: HTTP 500
    fake.fail_mid_stream, fake.fail_after_chunks = "disconnect", 3 # "error", "truncate"
    async with fake as url:                                        # http://127.0.0.1:P/v1
        ...
    fake.requests[-1]["messages"], fake.disconnects, fake.client_disconnected (Event)

Structured outputs (``response_format``): ``{"type": "json_schema", "json_schema": {"name",
"schema", "strict"}}`` (or ``json_object`` / ``text``) is checked as the real API checks
its shape (a 400 naming the ``param`` otherwise); the reply's text is the message content,
so a responder returns the JSON to send. ``fake.structured_responder(messages,
response_format)`` answers requests that carry a ``json_schema`` (default: the plain
responder); ``FakeReply(refusal="...")`` answers with a refusal instead of content.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from tests.fakes._base import FakeServer
from voice.config import LLMConfig


@dataclass
class FakeToolCall:
    name: str
    arguments: str | dict[str, Any] = field(default_factory=dict)
    id: str = ""

    @property
    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass
class FakeReply:
    text: str = ""
    tool_calls: list[FakeToolCall] = field(default_factory=list)
    # None: "tool_calls" when there are tool calls, else "stop"
    finish_reason: str | None = None
    # structured outputs: the model declined (content is then null)
    refusal: str | None = None


ReplyLike = str | FakeReply
Responder = Callable[[list[dict[str, Any]], list[dict[str, Any]]], ReplyLike | Awaitable[ReplyLike]]
StructuredResponder = Callable[[list[dict[str, Any]], dict[str, Any]], ReplyLike]
_SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _response_format_error(value: Any) -> str | None:
    """What the real API says about a malformed ``response_format`` (None: fine)."""
    if not isinstance(value, dict) or value.get("type") not in (
        "text",
        "json_object",
        "json_schema",
    ):
        return "Invalid value for 'response_format.type'."
    if value["type"] != "json_schema":
        return None
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        return "Missing required parameter: 'response_format.json_schema.name'."
    if not _SCHEMA_NAME.match(spec["name"]):
        return "Invalid 'response_format.json_schema.name': must match ^[a-zA-Z0-9_-]{1,64}$."
    if "schema" in spec and not isinstance(spec["schema"], dict):
        return "Invalid type for 'response_format.json_schema.schema': expected an object."
    schema = spec.get("schema") or {}
    if spec.get("strict") and schema.get("type") == "object":
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return (
                "Invalid schema for response_format '" + spec["name"] + "': In context=(), "
                "'additionalProperties' is required to be supplied and to be false."
            )
        if sorted(schema.get("required") or []) != sorted(props):
            return (
                "Invalid schema for response_format '" + spec["name"] + "': In context=(), "
                "'required' is required to be supplied and to be an array including every "
                "key in properties."
            )
    return None


def echo_responder(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ReplyLike:
    """Default: repeat the caller's last words; acknowledge a tool result."""
    for message in reversed(messages):
        if message.get("role") == "tool":
            return f"The tool returned {message.get('content') or 'nothing'}."
        if message.get("role") == "user":
            text = str(message.get("content") or "").strip()
            return f"You said: {text}" if text else "I didn't catch that."
    return "Hello! How can I help you today?"


_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided: {key}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again in 20ms.",
    ),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def _error_body(status: int, key: str = "") -> dict[str, Any]:
    kind, code, message = _ERRORS.get(status, ("server_error", None, "Injected failure."))
    masked = f"{key[:3]}****{key[-4:]}" if key else "****"
    return {
        "error": {"message": message.format(key=masked), "type": kind, "param": None, "code": code}
    }


def _tokens(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text) or ([text] if text else [])


class FakeOpenAI(FakeServer):
    path_prefix = "/v1"

    def __init__(
        self,
        *,
        api_key: str = "sk-test-openai-key",
        responder: Responder = echo_responder,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key
        self.responder: Responder = responder
        self.structured_responder: StructuredResponder | None = None
        self.ttft_s = 0.0
        self.token_delay_s = 0.0
        # tool-call arguments are streamed in pieces of this many characters
        self.argument_piece_chars = 7
        # statuses for the next requests, in order (see fail_next)
        self.failures: list[int] = []
        # "retry-after-ms" on 429/5xx answers (None: no header, the SDK backs off itself)
        self.retry_after_ms: int | None = 1
        # after ``fail_after_chunks`` chunks: drop the connection ("disconnect"), send an error
        # event ("error"), or end the body cleanly without finishing the reply ("truncate")
        self.fail_mid_stream: Literal["disconnect", "error", "truncate"] | None = None
        self.fail_after_chunks = 2
        # hold the stream after this many chunks until ``resume`` is set (or the client
        # hangs up): lets a test act mid-stream without timing anything
        self.pause_after_chunks: int | None = None
        self.resume = asyncio.Event()
        # records
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.completed = 0  # streams that reached [DONE]
        self.disconnects = 0  # streams the client abandoned before the end
        self.client_disconnected = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def llm_config(self, **overrides: Any) -> LLMConfig:
        """An LLMConfig that points the real provider at this fake."""
        fields = {
            "provider": "openai",
            "model": "gpt-fake",
            "api_key": self.api_key,
            "base_url": self.url,
        }
        return LLMConfig(**{**fields, **overrides})

    def fail_next(self, status: int, times: int = 1) -> None:
        self.failures.extend([status] * times)

    async def _start(self, host: str, port: int) -> int:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        address: tuple[str, int] = self._runner.addresses[0]
        return address[1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _error(self, status: int, key: str = "") -> web.Response:
        headers = {"x-request-id": f"req_{uuid.uuid4().hex}"}
        if self.retry_after_ms is not None and (status == 429 or status >= 500):
            headers["retry-after-ms"] = str(self.retry_after_ms)
        return web.json_response(_error_body(status, key), status=status, headers=headers)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.request_headers.append(dict(request.headers))
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or key != self.api_key:
            return self._error(401, key)
        try:
            body = await request.json()
        except ValueError:
            return self._error(400)
        self.requests.append(body)
        if self.failures:
            return self._error(self.failures.pop(0))
        if not body.get("model") or not isinstance(body.get("messages"), list):
            return self._error(400)
        response_format = body.get("response_format")
        if response_format is not None:
            problem = _response_format_error(response_format)
            if problem is not None:
                error = _error_body(400)
                error["error"].update(message=problem, param="response_format")
                return web.json_response(error, status=400)
        if (
            self.structured_responder is not None
            and isinstance(response_format, dict)
            and response_format.get("type") == "json_schema"
        ):
            reply = self.structured_responder(body["messages"], response_format)
        else:
            reply = self.responder(body["messages"], body.get("tools") or [])
        if inspect.isawaitable(reply):
            reply = await reply
        if isinstance(reply, str):
            reply = FakeReply(text=reply)
        if body.get("stream"):
            return await self._stream(request, body, reply)
        return web.json_response(self._completion(body, reply))

    # ------------------------------------------------------------------ shapes

    def _usage(self, body: dict[str, Any], reply: FakeReply) -> dict[str, int]:
        prompt = sum(len(_tokens(str(m.get("content") or ""))) + 4 for m in body["messages"])
        completion = len(_tokens(reply.text)) + sum(
            1 + len(c.arguments_json) // 4 for c in reply.tool_calls
        )
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _finish_reason(self, reply: FakeReply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    def _completion(self, body: dict[str, Any], reply: FakeReply) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if reply.refusal else (reply.text or None),
            "refusal": reply.refusal,
        }
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id or f"call_{uuid.uuid4().hex[:24]}",
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments_json},
                }
                for c in reply.tool_calls
            ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:29]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self._finish_reason(reply),
                }
            ],
            "usage": self._usage(body, reply),
        }

    def _deltas(self, reply: FakeReply) -> list[dict[str, Any]]:
        deltas: list[dict[str, Any]] = [
            {"role": "assistant", "content": "" if not reply.tool_calls else None}
        ]
        deltas += [{"content": token} for token in _tokens(reply.text)]
        n = max(self.argument_piece_chars, 1)
        for index, call in enumerate(reply.tool_calls):
            call_id = call.id or f"call_{uuid.uuid4().hex[:24]}"
            deltas.append(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ]
                }
            )
            args = call.arguments_json
            for i in range(0, len(args), n):
                deltas.append(
                    {"tool_calls": [{"index": index, "function": {"arguments": args[i : i + n]}}]}
                )
        return deltas

    async def _stream(
        self, request: web.Request, body: dict[str, Any], reply: FakeReply
    ) -> web.StreamResponse:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:29]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_fake",
        }
        chunks: list[dict[str, Any]] = []
        for delta in self._deltas(reply):
            chunks.append(
                {
                    **base,
                    "choices": [
                        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
                    ],
                }
            )
        chunks.append(
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {},
                        "logprobs": None,
                        "finish_reason": self._finish_reason(reply),
                    }
                ],
            }
        )
        if include_usage:
            for chunk in chunks:
                chunk["usage"] = None
            chunks.append({**base, "choices": [], "usage": self._usage(body, reply)})

        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "x-request-id": f"req_{uuid.uuid4().hex}",
            }
        )
        await response.prepare(request)
        try:
            await self._wait(request, self.ttft_s)
            for i, chunk in enumerate(chunks):
                if i == self.pause_after_chunks:
                    await self._wait(request, None)
                if self.fail_mid_stream is not None and i == self.fail_after_chunks:
                    if self.fail_mid_stream == "error":
                        error = _error_body(500)
                        await response.write(f"data: {json.dumps(error)}\n\n".encode())
                    if self.fail_mid_stream in ("error", "truncate"):
                        await response.write_eof()
                        return response
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if i and chunk["choices"]:
                    await self._wait(request, self.token_delay_s)
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            self.completed += 1
        except ConnectionResetError:
            self.disconnects += 1
            self.client_disconnected.set()
        return response

    async def _wait(self, request: web.Request, seconds: float | None) -> None:
        """Sleep (``None``: until :attr:`resume` is set), noticing a client that hangs up."""
        if seconds is not None and seconds <= 0:
            return
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            transport = request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("client disconnected")
            if deadline is None:
                if self.resume.is_set():
                    return
                left = 0.01
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
            await asyncio.sleep(min(left, 0.01))
