"""Phone numbers in one canonical form (core/phone.py): every spelling a phone system uses for one number is
that number, and anything that is not a number is no number, never a key of its own."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from millis_sip.core.phone import NO_NUMBER_KEY, canonical_number, number_key

NUMBER = "+15055550123"

# The spellings of one number that each counted under a cap of their own before canonical numbers.
SPELLINGS = [
    "+15055550123",
    "15055550123",  # Plivo and Vonage: E.164 without the +
    "0015055550123",  # the international prefix
    "tel:+15055550123",
    "tel:+1-505-555-0123;phone-context=example.com",
    "+1 (505) 555-0123",
    "+1.505.555.0123",
    "+15055550123;x",
    "sip:+15055550123@pbx.example;user=phone",
    "sips:15055550123@pbx.example:5061",
    "sip:%2B15055550123@pbx.example",
    " +15055550123 ",
]

NOT_NUMBERS = [
    "",
    "anonymous",
    "Anonymous",
    "restricted",
    "unavailable",
    "sip:anonymous@anonymous.invalid",
    "sip:alice@example.com",
    "Defaultj35z6@sip.telnyx.com",  # a Telnyx SIP caller without the scheme
    "client:alice",
    "+01505555012",  # E.164 never starts with 0
    "+1٥٠٥٥٥٥٠١٢٣",  # Arabic-Indic digits: numbers here are ASCII
    "+15055550123\n",  # a trailing newline is not a separator
    "+1505555012345678",  # 16 digits
    "1001",  # an extension
    "+",
    "00",
    "http:+15055550123",
    "+15055550123" + "0" * 300,
]


@pytest.mark.parametrize("raw", SPELLINGS)
def test_every_spelling_of_a_number_is_that_number(raw: str) -> None:
    assert canonical_number(raw) == NUMBER


@pytest.mark.parametrize("raw", NOT_NUMBERS)
def test_what_is_not_a_number_is_no_number(raw: str) -> None:
    assert canonical_number(raw) is None


def test_a_carriers_placeholder_for_a_withheld_caller_is_no_number() -> None:
    placeholders = frozenset({"+266696687"})
    assert canonical_number("+266696687", placeholders=placeholders) is None
    assert canonical_number("+266696687") == "+266696687"  # only where that carrier says so


def test_callers_without_a_number_share_one_key() -> None:
    assert number_key(None) == NO_NUMBER_KEY
    assert number_key(NUMBER) == NUMBER


@given(st.text(max_size=40))
def test_a_canonical_number_is_always_e164_and_canonical_again(raw: str) -> None:
    number = canonical_number(raw)
    if number is not None:
        assert number.startswith("+") and number[1:].isascii() and number[1:].isdigit()
        assert 3 <= len(number) <= 16 and number[1] != "0"
        assert canonical_number(number) == number
