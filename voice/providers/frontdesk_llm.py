"""A scripted front desk for the offline demo: deterministic, no model, shows the product.

It understands four things a caller of a small business asks, by keywords in the last
thing the caller said (first match wins, in this order):

1. goodbye ("bye", "that's all", "no thanks", "hang up"): a farewell, then the agent's
   ``end_call`` tool when it has one;
2. a person ("speak to someone", "a human", "the manager", "transfer me"): says so, then
   the agent's ``transfer_call`` tool (its default number);
3. a booking ("book", "appointment", "reservation", "schedule"): asks for the date on the
   keypad, then the agent's ``collect_digits`` tool; the digits come back as the tool's
   result (and only there: the transcript and the logs never see them), and the reply
   confirms the date in words ("December the third") or asks again if it is not a date;
4. opening hours ("hours", "open", "close", "when are you"): the hours.

Nothing heard yet gets an introduction saying what it can do, a greeting a shorter one, thanks get
"you're welcome", and anything else gets the same short menu instead of an echo: a
misheard sentence is not repeated back. A step the agent has no tool for is answered in
words ("I can't take bookings on this line"). Replies stream one word per
``TextDelta`` like the scripted responder, and ``LLMUsage`` counts words.

``config.model`` is unused; ``config.max_tokens`` caps a reply's words.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence

from voice.config import LLMConfig, ToolConfig, ToolKind
from voice.providers.base import LLMChunk, Message, ToolCall
from voice.providers.scripted_llm import stream_words

NAME = "frontdesk"

INTRO = (
    "Hello! This is the Glassbox front desk. I can tell you our opening hours, "
    "book an appointment, or put you through to a person. What would you like?"
)
HELLO = (
    "Hi there! I can tell you our opening hours, book an appointment, or put you "
    "through to a person. What would you like?"
)
HOURS = (
    "We're open Monday to Friday from nine a.m. to six p.m., and on Saturdays from "
    "ten to two. We're closed on Sundays. Anything else?"
)
ASK_DATE = (
    "Happy to book that. Please type the date on your keypad as four digits, "
    "the month then the day, and finish with the pound key."
)
NO_BOOKING = "Sorry, I can't take bookings on this line. Please call back during opening hours."
TRANSFER = "Of course. I'll put you through to a colleague now."
NO_TRANSFER = "Sorry, there's nobody I can put you through to right now."
FAREWELL = "Thanks for calling. Goodbye!"
WELCOME = "You're welcome. Anything else?"
MENU = (
    "Sorry, I can help with our opening hours, a booking, or putting you through to a "
    "person. Which would you like?"
)
NO_DIGITS = "I didn't get any digits. Say book an appointment to try again. Anything else?"
BAD_DATE = "Sorry, that's not a date I can book. Say book an appointment to try again."

_GOODBYE = re.compile(r"\b(good ?bye|bye|that'?s all|that is all|no thanks|hang up)\b")
_PERSON = re.compile(
    r"\b(person|human|someone|somebody|agent|operator|representative|manager|colleague|"
    r"transfer|speak to|talk to|put me through)\b"
)
_BOOK = re.compile(r"\b(book|booking|appointment|reservation|reserve|schedule)\b")
_HOURS = re.compile(r"\b(hours?|open|opening|opens|close|closes|closed|closing|when are you)\b")
_GREETING = re.compile(r"\b(hello|hi|hey|good (morning|afternoon|evening))\b")
_THANKS = re.compile(r"\b(thanks|thank you)\b")

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
ORDINALS = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "twenty-first",
    "twenty-second",
    "twenty-third",
    "twenty-fourth",
    "twenty-fifth",
    "twenty-sixth",
    "twenty-seventh",
    "twenty-eighth",
    "twenty-ninth",
    "thirtieth",
    "thirty-first",
]
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower().replace("\u2019", "'")).split())


def spoken_date(digits: str) -> str | None:
    """ "1203" -> "December the third"; None when the digits are not a month and day."""
    if len(digits) != 4 or not digits.isdigit():
        return None
    month, day = int(digits[:2]), int(digits[2:])
    if not 1 <= month <= 12 or not 1 <= day <= _DAYS_IN_MONTH[month - 1]:
        return None
    return f"{MONTHS[month - 1]} the {ORDINALS[day - 1]}"


class FrontDeskLLM:
    name = NAME

    def __init__(self, config: LLMConfig) -> None:
        self._max_words = max(1, config.max_tokens)

    async def stream(
        self, *, messages: Sequence[Message], tools: Sequence[ToolConfig]
    ) -> AsyncIterator[LLMChunk]:
        reply, calls = self._respond(messages, tools)
        async for chunk in stream_words(
            reply,
            calls,
            prompt_tokens=sum(len(m.content.split()) for m in messages),
            max_words=self._max_words,
        ):
            yield chunk

    async def aclose(self) -> None:
        """Nothing to release: the script runs in memory."""

    def _respond(
        self, messages: Sequence[Message], tools: Sequence[ToolConfig]
    ) -> tuple[str, list[ToolCall]]:
        last = messages[-1] if messages else None
        if last is not None and last.role == "tool":
            return self._after_tool(last, tools), []
        said = next((m.content for m in reversed(messages) if m.role == "user"), "")
        heard = _normalize(said)

        def tool_call(kind: ToolKind) -> list[ToolCall]:
            tool = next((t for t in tools if t.kind is kind), None)
            if tool is None:
                return []
            return [ToolCall(id=f"frontdesk-{len(messages)}", name=tool.name, arguments="{}")]

        if _GOODBYE.search(heard):
            return FAREWELL, tool_call(ToolKind.END_CALL)
        if _PERSON.search(heard):
            calls = tool_call(ToolKind.TRANSFER_CALL)
            return (TRANSFER, calls) if calls else (NO_TRANSFER, [])
        if _BOOK.search(heard):
            calls = tool_call(ToolKind.COLLECT_DIGITS)
            return (ASK_DATE, calls) if calls else (NO_BOOKING, [])
        if _HOURS.search(heard):
            return HOURS, []
        if not heard:
            return INTRO, []
        if _GREETING.search(heard):
            return HELLO, []
        if _THANKS.search(heard):
            return WELCOME, []
        return MENU, []

    @staticmethod
    def _after_tool(result: Message, tools: Sequence[ToolConfig]) -> str:
        tool = next((t for t in tools if t.name == result.name), None)
        if tool is None or tool.kind is not ToolKind.COLLECT_DIGITS:
            return "Done. Anything else?"
        try:
            payload = json.loads(result.content)
        except ValueError:
            payload = {}
        digits = str(payload.get("digits", "")) if isinstance(payload, dict) else ""
        if not digits:
            return NO_DIGITS
        date = spoken_date(digits)
        if date is None:
            return BAD_DATE
        return f"Thank you. You're booked for {date} at ten a.m. Anything else?"
