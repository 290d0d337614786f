"""calls.redaction: a pure function, tested on its own."""

from __future__ import annotations

import pytest

from calls.redaction import ALL, Redaction, luhn_valid, redact


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111111",  # Visa test number
        "5555555555554444",  # Mastercard
        "378282246310005",  # Amex, 15 digits
        "6011111111111117",  # Discover
        "4222222222222",  # 13-digit Visa
        "0",
    ],
)
def test_luhn_accepts_valid_numbers(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize(
    "number", ["4111111111111112", "1234567812345678", "", "41a1", "79927398710"]
)
def test_luhn_refuses_invalid_numbers(number: str) -> None:
    assert not luhn_valid(number)


def test_luhn_known_vector() -> None:
    assert luhn_valid("79927398713")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my card is 4111 1111 1111 1111 thanks", "my card is [card] thanks"),
        ("4111-1111-1111-1111", "[card]"),
        ("card 4111111111111111.", "card [card]."),
        ("amex 3782 822463 10005", "amex [card]"),
    ],
)
def test_card_numbers_that_pass_luhn_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_long_number_failing_luhn_is_not_a_card() -> None:
    # 16 digits, not Luhn-valid, too long for a phone number: an order number stays
    assert redact("order 1234 5678 1234 5678 shipped") == "order 1234 5678 1234 5678 shipped"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call me on +1 415 555 0123 please", "call me on [phone] please"),
        ("it's (415) 555-0123", "it's [phone]"),
        ("415.555.0123", "[phone]"),
        ("+442071838750", "[phone]"),
        ("ring 555-0123 now", "ring [phone] now"),
    ],
)
def test_phone_numbers_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "the meeting is on 2026-12-02",
        "at 10:30 tomorrow",
        "it costs 1,250 dollars",
        "room 42, floor 3",
        "order 12345",
        "version 3.11.4",
    ],
)
def test_ordinary_numbers_are_kept(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+calls@example.co.uk today", "write to [email] today"),
        ("A@B.IO", "[email]"),
        ("me@sub.example.com, you@example.org", "[email], [email]"),
    ],
)
def test_emails_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_not_an_email() -> None:
    assert redact("meet @ noon, at example dot com") == "meet @ noon, at example dot com"


def test_only_the_chosen_kinds_are_redacted() -> None:
    text = "jane@example.com, 4111 1111 1111 1111, +1 415 555 0123"
    assert (
        redact(text, frozenset({Redaction.EMAIL}))
        == "[email], 4111 1111 1111 1111, +1 415 555 0123"
    )
    assert redact(text, frozenset({Redaction.CARD})) == "jane@example.com, [card], +1 415 555 0123"
    # 16 digits are too many for a phone number
    assert (
        redact(text, frozenset({Redaction.PHONE}))
        == "jane@example.com, 4111 1111 1111 1111, [phone]"
    )
    assert redact(text, frozenset()) == text
    assert redact(text, ALL) == "[email], [card], [phone]"


def test_empty_text() -> None:
    assert redact("") == ""


def test_redaction_is_idempotent() -> None:
    once = redact("card 4111 1111 1111 1111, phone +1 415 555 0123, mail a@b.co")
    assert redact(once) == once
