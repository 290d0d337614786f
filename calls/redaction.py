"""Redaction of personal data in transcript text: emails, card numbers, phone numbers.

Pure (no Django, no I/O) so it is cheap to test exhaustively and safe to call on the
call's path. Applied where transcript turns are stored (calls/services.py) and to what
post-call analysis sends to a model, when the organization turns it on.

- An email address becomes ``[email]``.
- A run of 13 to 19 digits (spaces, dots or dashes between them allowed, as speech-to-text
  writes "4111 1111 1111 1111") that passes the Luhn check becomes ``[card]``. One that
  fails it is not a card number: an order or tracking number stays, unless it is short
  enough to be a phone number.
- A run of 7 to 15 digits (E.164's longest), optionally led by ``+`` and with ``()``
  around an area code, becomes ``[phone]``. ISO dates (2026-12-02) and clock times are
  left alone; so are shorter numbers (amounts, PINs said aloud are not in scope: secure
  digits never reach the transcript at all, see voice/tools.py).

Numbers spelled out in words ("four one one one") are not recognized.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Redaction(StrEnum):
    EMAIL = "email"
    CARD = "card"
    PHONE = "phone"


ALL = frozenset(Redaction)

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?!\w)"
)
# A digit run: digits with at most two separators (space, dot, dash, parenthesis) between
# neighbours, optionally led by "+" or "(". Not glued to letters or other digits.
_NUMBER = re.compile(r"(?<![\w+])(?:\+|\()?\d(?:[ .\-()]{0,2}\d)+(?![\w])")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of digits (what every payment card number passes)."""
    if not digits.isdigit():
        return False
    total = 0
    for n, char in enumerate(reversed(digits)):
        value = int(char)
        if n % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _number(match: re.Match[str], kinds: frozenset[Redaction]) -> str:
    text = match.group(0)
    digits = re.sub(r"\D", "", text)
    if _ISO_DATE.match(text):
        return text
    if Redaction.CARD in kinds and 13 <= len(digits) <= 19 and luhn_valid(digits):
        return "[card]"
    if Redaction.PHONE in kinds and 7 <= len(digits) <= 15:
        return "[phone]"
    return text


def redact(text: str, kinds: frozenset[Redaction] = ALL) -> str:
    """``text`` with the personal data of ``kinds`` replaced by a bracketed label."""
    if not text or not kinds:
        return text
    if Redaction.EMAIL in kinds:
        text = _EMAIL.sub("[email]", text)
    if kinds & {Redaction.CARD, Redaction.PHONE}:
        text = _NUMBER.sub(lambda m: _number(m, kinds), text)
    return text
