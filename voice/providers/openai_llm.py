"""Chat completions from OpenAI or any OpenAI-compatible server, via the official SDK.

Streams one reply: a :class:`TextDelta` per content delta, one
:class:`ToolCallsRequested` when the model finishes asking for tools (arguments
accumulated across deltas by index), and :class:`LLMUsage` from the final usage chunk.
Closing the consumer (cancel or ``aclose``) closes the HTTP response at once, which drops
the connection, so the server stops generating.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import openai

from voice.config import LLMConfig, ToolConfig
from voice.netguard import Resolver, guarded_httpx2_transport, refusal_in, system_resolve
from voice.providers.base import (
    LLMChunk,
    LLMUsage,
    Message,
    ProviderError,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
)
from voice.providers.registry import Kind, spec
from voice.tls import httpx2_tls

SPEC = spec(Kind.LLM, "openai")
DEFAULT_BASE_URL = SPEC.default_base_url


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


class OpenAILLM:
    name = "openai"

    def __init__(
        self,
        config: LLMConfig,
        *,
        max_retries: int = 1,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        resolver: Resolver = system_resolve,
    ) -> None:
        self.config = config
        self._resolver = resolver
        # Built lazily so a provider object costs nothing until its first turn; reused
        # across turns so the connection (and its TLS session) is kept warm.
        self._client: openai.AsyncOpenAI | None = None
        self._max_retries = max_retries
        # the SDK vendors its own httpx fork (httpx2): use its Timeout
        self._timeout = openai.Timeout(read_timeout_s, connect=connect_timeout_s)

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            # A tenant's base_url reaches only public addresses (plus the allowed
            # networks), checked after DNS on every connection: voice/netguard.py.
            transport = (
                guarded_httpx2_transport(
                    self.config.allowed_networks, verify=httpx2_tls(), resolver=self._resolver
                )
                if self.config.tenant_url
                else None
            )
            self._client = openai.AsyncOpenAI(
                base_url=self.config.base_url or DEFAULT_BASE_URL,
                # OpenAI-compatible local servers (Ollama, vLLM) accept any key, but the
                # SDK refuses to start without one
                api_key=self.config.api_key or "none",
                max_retries=self._max_retries,
                timeout=self._timeout,
                # the default client would load the CA bundle on every call (voice/tls.py)
                http_client=openai.DefaultAsyncHttpxClient(
                    verify=httpx2_tls(), transport=transport, trust_env=transport is None
                ),
            )
        return self._client

    async def aclose(self) -> None:
        """Release the pooled connection (the call is over)."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def stream(
        self, *, messages: Sequence[Message], tools: Sequence[ToolConfig]
    ) -> AsyncIterator[LLMChunk]:
        request: dict[str, Any] = {
            "model": self.config.model or SPEC.default_model,
            "messages": [m.to_openai() for m in messages],
            "temperature": self.config.temperature,
            token_limit_field(self.config.base_url): self.config.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            request["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters or {"type": "object", "properties": {}},
                    },
                }
                for t in tools
            ]
        try:
            # The SDK's own low-level ``post`` (auth, retries, timeouts and error types as
            # ``chat.completions.create``), with the request already in wire shape and each
            # SSE chunk left as the parsed JSON: ``create`` would walk the whole history
            # through its type-driven request transform and build a pydantic model per
            # chunk, together more CPU than the rest of a turn start (docs/benchmarks.md,
            # "Density").
            response = await self._get_client().post(
                "/chat/completions",
                cast_to=object,
                body=request,
                options={"security": {"bearer_auth": True}},
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
        except openai.APIStatusError as exc:
            raise ProviderError(self.name, _status_message(exc)) from exc
        except openai.APIError as exc:
            refusal = refusal_in(exc)
            if refusal is not None:
                raise ProviderError(self.name, f"base URL refused: {refusal}") from exc
            raise ProviderError(self.name, f"request failed: {exc}") from exc

        calls: dict[int, _PartialCall] = {}
        finished = False
        try:
            async for chunk in response:
                if not isinstance(chunk, dict):
                    continue
                usage = chunk.get("usage")
                if usage is not None:
                    yield LLMUsage(
                        prompt_tokens=usage["prompt_tokens"],
                        completion_tokens=usage["completion_tokens"],
                    )
                choices = chunk.get("choices")
                if not choices:
                    continue
                choice = choices[0]
                delta = choice.get("delta") or {}
                content = delta.get("content")
                if content:
                    yield TextDelta(content)
                for tc in delta.get("tool_calls") or ():
                    # some compatible servers leave out ``index``: a new id starts a call
                    index = tc.get("index")
                    tc_id = tc.get("id")
                    if index is None:
                        index = len(calls) if tc_id or not calls else max(calls)
                    partial = calls.setdefault(index, _PartialCall())
                    if tc_id:
                        partial.id = tc_id
                    function = tc.get("function")
                    if function is not None:
                        if function.get("name"):
                            partial.name += function["name"]
                        if function.get("arguments"):
                            partial.arguments += function["arguments"]
                if choice.get("finish_reason") is not None:
                    finished = True
                    if calls:
                        yield ToolCallsRequested(
                            [
                                ToolCall(
                                    id=c.id or f"call_{i}",
                                    name=c.name,
                                    arguments=c.arguments or "{}",
                                )
                                for i, c in sorted(calls.items())
                            ]
                        )
                        calls = {}
        except openai.APIError as exc:
            raise ProviderError(self.name, f"stream failed: {exc}") from exc
        except (KeyError, TypeError, AttributeError) as exc:
            raise ProviderError(self.name, f"malformed stream chunk: {exc!r}") from exc
        finally:
            await response.close()
        if not finished:
            raise ProviderError(self.name, "stream ended before the reply was finished")


def token_limit_field(base_url: str) -> str:
    """OpenAI itself wants ``max_completion_tokens`` (its reasoning models reject
    ``max_tokens``); OpenAI-compatible servers (Ollama, vLLM, Groq, ...) know ``max_tokens``.
    """
    host = urlsplit(base_url or DEFAULT_BASE_URL).hostname or ""
    return "max_completion_tokens" if host == "api.openai.com" else "max_tokens"


def _status_message(exc: openai.APIStatusError) -> str:
    status = exc.status_code
    hint = {
        401: "authentication failed: check the API key",
        403: "permission denied",
        404: "not found: check the model name and base URL",
        429: "rate limited or out of quota",
    }.get(status, "server error" if status >= 500 else "request rejected")
    return f"{hint} (HTTP {status}): {exc.message}"
