"""Control of a running call from outside it: a supervisor on the dashboard, or the API.

Each action is a typed event for the call's state machine (:mod:`voice.machine`); the
platform delivers it to whichever process holds the call and hands it to
:meth:`voice.conversation.Conversation.control`. What each does:

- :class:`Say` — the agent speaks ``text`` as its own turn: at once when nothing is being
  said, else right after the turn in flight (lines queue, in order, up to ``MAX_LINES``).
  Said even while the agent is muted, and not interruptible: the supervisor wants it heard.
- :class:`Inject` — a system message added to the history the LLM sees, for its next reply.
- :class:`Mute` — ``muted=True``: the agent stops replying (and the reply in flight is cut
  off); the caller is still heard and transcribed. ``muted=False``: replies resume, the
  words said meanwhile answered together.
- :class:`Transfer` — the call is handed to ``to`` (the carrier's transfer).
- :class:`Hangup` — the call ends now, end reason ``operator-ended``.

:func:`control_from_plain` builds one from JSON-ish input and is the one validator both
sides use (a ``ValueError`` names the problem).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_TEXT_CHARS = 1000
MAX_LINES = 8
_PHONE = re.compile(r"\+?[0-9*#]{2,31}|sips?:[^\s]{3,200}")


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class Inject:
    text: str


@dataclass(frozen=True, slots=True)
class Mute:
    muted: bool


@dataclass(frozen=True, slots=True)
class Transfer:
    to: str


@dataclass(frozen=True, slots=True)
class Hangup:
    detail: str = ""


ControlAction = Say | Inject | Mute | Transfer | Hangup

ACTIONS = ("say", "inject", "mute_agent", "unmute_agent", "transfer", "end")


@dataclass(frozen=True, slots=True)
class AppendSystem:
    """Command: add a system message to the LLM's history (an :class:`Inject`)."""

    text: str


def _text(params: dict[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key!r} is required: a non-empty string")
    if len(value) > MAX_TEXT_CHARS:
        raise ValueError(f"{key!r} is longer than {MAX_TEXT_CHARS} characters")
    return value.strip()


def control_from_plain(action: str, params: dict[str, Any]) -> ControlAction:
    """``("say", {"text": "Hello"})`` -> ``Say("Hello")``. Raises ValueError."""
    if action == "say":
        return Say(_text(params, "text"))
    if action == "inject":
        return Inject(_text(params, "text"))
    if action == "mute_agent":
        return Mute(True)
    if action == "unmute_agent":
        return Mute(False)
    if action == "transfer":
        to = _text(params, "to")
        if not _PHONE.fullmatch(to):
            raise ValueError("'to' must be a phone number (E.164) or a SIP URI")
        return Transfer(to)
    if action == "end":
        detail = params.get("detail", "")
        if not isinstance(detail, str) or len(detail) > MAX_TEXT_CHARS:
            raise ValueError(f"'detail' must be a string of at most {MAX_TEXT_CHARS} characters")
        return Hangup(detail)
    raise ValueError(f"unknown action {action!r} (one of: {', '.join(ACTIONS)})")


def control_to_plain(action: ControlAction) -> tuple[str, dict[str, Any]]:
    """The inverse of :func:`control_from_plain`, for the wire between processes."""
    match action:
        case Say(text=text):
            return "say", {"text": text}
        case Inject(text=text):
            return "inject", {"text": text}
        case Mute(muted=muted):
            return ("mute_agent" if muted else "unmute_agent"), {}
        case Transfer(to=to):
            return "transfer", {"to": to}
        case Hangup(detail=detail):
            return "end", {"detail": detail}
    raise AssertionError(f"unreachable: {action!r}")
