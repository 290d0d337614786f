"""An offline, deterministic responder for demos and tests. Not a language model.

It answers the last message from a small rule table, first match wins:

1. a tool result (the last message has role ``tool``): acknowledge it;
2. a goodbye ("bye", "goodbye", "that's all", "hang up"): a short farewell, then, if an
   ``end_call`` tool is offered, ask for it (``ToolCallsRequested``);
3. the rules scripted in ``config.model`` (below);
4. a greeting, or no user message yet: offer help;
5. a request for help: ask what is needed;
6. anything else: repeat it back (``You said "...". How else can I help?``).

The reply still streams, one word (with its trailing space) per ``TextDelta``, so the
engine's chunker and TTS see the shape of a real stream. ``LLMUsage`` counts words, not
tokens: prompt = words in every message, completion = words in the reply.
``config.max_tokens`` caps the reply's words.

Scripting through ``config.model`` (``""`` or ``"scripted"`` mean the built-in rules only):
items separated by ``;``, each either an option ``delay_ms=N`` (pause between deltas,
default 0) or a rule ``keyword => reply`` that fires when the keyword appears as a whole
word or phrase in the last user message, case-insensitively. For example::

    delay_ms=30; hours => We are open nine to five.; price => It costs ten dollars.

Semicolons and ``=>`` cannot appear inside a rule; that is the whole grammar.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

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

NAME = "scripted"

GREETING = "Hello! How can I help you today?"
HELP = "Of course, I'm happy to help. What do you need?"
FAREWELL = "Thanks for calling. Goodbye!"

_GOODBYE = re.compile(r"\b(good ?bye|bye|that'?s all|that is all|hang up)\b")
_GREETING = re.compile(r"\b(hello|hi|hey|good (morning|afternoon|evening))\b")
_HELP = re.compile(r"\b(help|question|problem|assist|support)\b")
_WORDS = re.compile(r"\S+\s*")
_MAX_ECHO_CHARS = 200


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: re.Pattern[str]
    reply: str


def _normalize(text: str) -> str:
    return " ".join(text.lower().replace("\u2019", "'").split())


def _parse_script(model: str) -> tuple[float, tuple[_Rule, ...]]:
    if model.strip() in ("", NAME):
        return 0.0, ()
    delay_s = 0.0
    rules: list[_Rule] = []
    for item in (part.strip() for part in model.split(";")):
        if not item or item == NAME:
            continue
        if "=>" in item:
            keyword, _, reply = (s.strip() for s in item.partition("=>"))
            if not keyword or not reply:
                raise ProviderError(NAME, f"empty keyword or reply in rule {item!r}")
            pattern = re.compile(rf"\b{re.escape(_normalize(keyword))}\b")
            rules.append(_Rule(pattern, reply))
        elif item.startswith("delay_ms="):
            try:
                delay_s = int(item.removeprefix("delay_ms=")) / 1000
            except ValueError:
                raise ProviderError(NAME, f"delay_ms must be an integer: {item!r}") from None
        else:
            raise ProviderError(NAME, f"cannot read script item {item!r} (see scripted_llm)")
    return delay_s, tuple(rules)


def _words(text: str) -> int:
    return len(text.split())


async def stream_words(
    reply: str,
    calls: list[ToolCall],
    *,
    prompt_tokens: int,
    max_words: int,
    delay_s: float = 0.0,
) -> AsyncIterator[LLMChunk]:
    """A canned reply streamed the way a model streams one: a word (with its trailing
    space) per ``TextDelta``, at most ``max_words``, ``delay_s`` apart; then the tool
    calls, if any; then ``LLMUsage`` in words, last, as a model's usage arrives last. The
    front desk streams its replies through this too."""
    words = _WORDS.findall(reply)[:max_words]
    for i, word in enumerate(words):
        if i and delay_s:
            await asyncio.sleep(delay_s)
        yield TextDelta(word)
    if calls:
        yield ToolCallsRequested(calls)
    yield LLMUsage(prompt_tokens=prompt_tokens, completion_tokens=len(words))


class ScriptedLLM:
    name = NAME

    def __init__(self, config: LLMConfig) -> None:
        self._delay_s, self._rules = _parse_script(config.model)
        self._max_words = max(1, config.max_tokens)

    async def stream(
        self, *, messages: Sequence[Message], tools: Sequence[ToolConfig]
    ) -> AsyncIterator[LLMChunk]:
        reply, calls = self._respond(messages, tools)
        async for chunk in stream_words(
            reply,
            calls,
            prompt_tokens=sum(
                _words(m.content) + sum(_words(c.arguments) for c in m.tool_calls) for m in messages
            ),
            max_words=self._max_words,
            delay_s=self._delay_s,
        ):
            yield chunk

    async def aclose(self) -> None:
        """Nothing to release: the script runs in memory."""

    def _respond(
        self, messages: Sequence[Message], tools: Sequence[ToolConfig]
    ) -> tuple[str, list[ToolCall]]:
        last = messages[-1] if messages else None
        if last is not None and last.role == "tool":
            return self._acknowledge(last, messages), []
        said = next((m.content for m in reversed(messages) if m.role == "user"), "")
        heard = _normalize(said)
        if _GOODBYE.search(heard):
            end_call = next((t for t in tools if t.kind is ToolKind.END_CALL), None)
            if end_call is None:
                return FAREWELL, []
            call = ToolCall(id=f"scripted-{len(messages)}", name=end_call.name, arguments="{}")
            return FAREWELL, [call]
        for rule in self._rules:
            if rule.pattern.search(heard):
                return rule.reply, []
        if not heard or _GREETING.search(heard):
            return GREETING, []
        if _HELP.search(heard):
            return HELP, []
        echo = " ".join(said.split())[:_MAX_ECHO_CHARS]
        return f'You said "{echo}". How else can I help?', []

    @staticmethod
    def _acknowledge(result: Message, messages: Sequence[Message]) -> str:
        name = result.name or next(
            (
                c.name
                for m in messages
                for c in m.tool_calls
                if c.id == result.tool_call_id and result.tool_call_id
            ),
            "tool",
        )
        answer = " ".join(result.content.split())[:_MAX_ECHO_CHARS]
        if not answer:
            return f"Done, the {name} step is complete. Anything else?"
        return f"The {name} step returned: {answer}. Anything else?"
