"""Each carrier's fields in the forms the carrier documents (tests/fixtures/carriers/SOURCES.md, "Formats"): the
documented and captured ids are read, the docs' placeholders and anything a field could absorb are not."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from millis_sip.edges.carriers import plivo, telnyx, twilio, vonage
from millis_sip.edges.carriers.fields import DIGITS, SECONDS, Fields, Form, Malformed, one_of

ACCEPTED: list[tuple[Form, str]] = [
    (twilio.CALL_SID, "CA" + "a" * 32),  # the twilio SDK tests' placeholder
    (twilio.CALL_SID, "CA5ab1e0f00dcafe0123456789abcdef01"),
    (twilio.ACCOUNT_SID, "AC" + "0" * 32),
    (twilio.SIGNALWIRE_CALL_SID, "0703574f-b151-465d-aedb-28972eb513c7"),  # captured by signalwire-python's tests
    (twilio.SIGNALWIRE_ACCOUNT_SID, "6bfbbe86-a901-4197-8759-2a0de1fa319d"),
    (twilio.STIR_VERSTAT, "TN-Validation-Passed-A"),
    (twilio.STIR_VERSTAT, "TN-Validation-Failed-B-Diverted"),
    (twilio.STIR_VERSTAT, "No-TN-Validation"),
    (telnyx.CALL_SID, "v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ldNxdjWbVr9zBjbGjGsSe-aiQ"),
    (telnyx.CALL_SID, "v2:DPNqxVjTNtQYaKdcKbU0QgRFrQ3YzuAQrVYC4Ggcuq7zTpDkUB7A4w"),
    (telnyx.CALL_SID, "fcc47bc6-e428-11ed-ad79-02420aef00b4"),  # the instruction fetch's bare UUID
    (telnyx.CONNECTION_ID, "1568109700606592442"),
    (vonage.CONVERSATION_UUID, "CON-aaaaaaaa-bbbb-cccc-dddd-0123456789ab"),
    (vonage.CONVERSATION_UUID, "bbbbbbbb-cccc-dddd-eeee-0123456789ab"),  # the NCCO reference's input example
    (vonage.LEG_UUID, "0779a56d002f1c7f47f82ef5fe84ab79"),  # Vonage's tutorial capture: no dashes
    (vonage.LEG_UUID, "944bf4bf-8dc7-4e23-86b2-2f4234777416"),
    (plivo.CALL_UUID, "97ceeb52-58b6-11e1-86da-77300b68f8bb"),
    (DIGITS, "1234#"),
    (DIGITS, ""),
    (SECONDS, "61"),
]

REFUSED: list[tuple[Form, str]] = [
    (twilio.CALL_SID, "CA" + "X" * 30),  # the docs' placeholder (trusted-calling page): 32 characters, not hex
    (twilio.CALL_SID, "CA1234567890ABCDE"),  # the webhooks-security example: 17 characters
    (twilio.CALL_SID, "CA" + "a" * 32 + "CallStatusringing"),
    (twilio.CALL_SID, "CA" + "a" * 32 + "\n"),
    (twilio.ACCOUNT_SID, "AC" + "X" * 30),
    (twilio.SIGNALWIRE_CALL_SID, "b3877c40-da60-4998-90ad-b792e98472pa"),  # SignalWire's doc placeholder
    (twilio.STIR_VERSTAT, "TN-Validation-Passed-D"),
    (telnyx.CALL_SID, "v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ldNxdjWbVr9zBjbGjGsSe-aiQ&To=+1"),
    (telnyx.CALL_SID, "v3:"),
    (telnyx.CONNECTION_ID, "١٢٣"),  # Arabic-Indic digits: digits, but not ASCII
    (vonage.CONVERSATION_UUID, "CON-aaaaaaaa-bbbb-cccc-dddd-0123456789ag"),
    (vonage.LEG_UUID, "0779a56d002f1c7f47f82ef5fe84ab7"),
    (plivo.CALL_UUID, "97ceeb5258b611e186da77300b68f8bb"),
    (DIGITS, "12a"),
    (DIGITS, "１２"),  # fullwidth digits
    (SECONDS, "12.5"),
    (SECONDS, "-1"),
]


@pytest.mark.parametrize(("form", "value"), ACCEPTED)
def test_documented_and_captured_values_are_read(form: Form, value: str) -> None:
    assert Fields([("f", value)]).read("f", form) == value


@pytest.mark.parametrize(("form", "value"), REFUSED)
def test_placeholders_and_anything_else_are_refused(form: Form, value: str) -> None:
    with pytest.raises(Malformed) as refused:
        Fields([("f", value)]).read("f", form)
    assert refused.value.status == 400 and refused.value.reason.startswith("f is missing or malformed: ")


# The ids of the carriers whose signatures join names and values with no boundary (Twilio's scheme, SignalWire's
# too, and Plivo's). Telnyx and Vonage sign the body as sent, so a Telnyx "v3:" id may run on in letters.
UNBOUNDED_IDS = [twilio.CALL_SID, twilio.ACCOUNT_SID, twilio.SIGNALWIRE_CALL_SID, plivo.CALL_UUID]


@given(
    st.sampled_from([(f, v) for f, v in ACCEPTED if f in UNBOUNDED_IDS]),
    st.sampled_from(["CallStatus", "Direction", "From", "To", "StirVerstat", "Digits", "DialStatus", "&", " ", "="]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789+-", max_size=12),
)
def test_no_id_can_absorb_the_next_fields_name(case: tuple[Form, str], name: str, value: str) -> None:
    # What a signature without boundaries cannot tell apart: an id that runs on into the next field.
    form, good = case
    with pytest.raises(Malformed):
        form.read("id", good + name + value)


def test_a_required_field_that_is_absent_or_empty_is_refused() -> None:
    for fields in (Fields(), Fields([("CallSid", "")])):
        with pytest.raises(Malformed, match="CallSid is missing or malformed: Twilio's CallSid is CA and 32 hex"):
            fields.require("CallSid", twilio.CALL_SID)
    assert Fields().read("Digits", DIGITS) is None


def test_a_field_sent_twice_is_refused_even_with_the_same_value() -> None:
    fields = Fields([("Digits", "1"), ("Digits", "1"), ("To", "+1"), ("To", "+2")])
    with pytest.raises(Malformed, match="Digits is missing or malformed: sent more than once"):
        fields.read("Digits", DIGITS)
    with pytest.raises(Malformed, match="To is missing or malformed: sent more than once"):
        fields.number("To")
    assert fields["To"] == "+2"


def test_a_documented_word_means_what_the_edge_says_and_nothing_else_does() -> None:
    meanings = {"completed": "over", "no-answer": "failed"}
    assert Fields([("s", "no-answer")]).meaning("s", meanings) == "failed"
    assert Fields([("s", "")]).meaning("s", meanings) is None
    assert Fields().meaning("s", meanings) is None
    for word in ("Completed", "no_answer", "completed "):
        with pytest.raises(Malformed, match="one of completed, no-answer"):
            Fields([("s", word)]).meaning("s", meanings)
    assert one_of("A", "B").pattern.fullmatch("") is None


def test_a_json_count_may_be_a_whole_number_and_nothing_else() -> None:
    assert Fields([("duration", 33)]).read("duration", SECONDS) == "33"
    values: list[object] = [True, 3.5, -1, [], {"s": 1}]
    for value in values:
        with pytest.raises(Malformed):
            Fields([("duration", value)]).read("duration", SECONDS)
    with pytest.raises(Malformed):
        Fields([("uuid", 1234)]).read("uuid", vonage.LEG_UUID)


def test_numbers_are_read_as_e164_or_as_none() -> None:
    fields = Fields(
        [
            ("plivo", "14155550100"),
            ("vonage", " 447700900000"),
            ("sip", "sip:+14155550100@pbx.example;user=phone"),
            ("user", "sip:jack@example.com"),
            ("anonymous", "anonymous"),
            ("withheld", "+266696687"),
            ("json", 14155550100),
        ]
    )
    assert fields.number("plivo") == "+14155550100"
    assert fields.number("vonage") == "+447700900000"
    assert fields.number("sip") == "+14155550100"
    assert fields.number("user") is None
    assert fields.number("anonymous") is None
    assert fields.number("withheld") == "+266696687"
    assert fields.number("withheld", placeholders=twilio.WITHHELD_CALLER_IDS) is None
    assert fields.number("json") is None  # a number is text on the wire, never a JSON number
    assert fields.number("absent") is None


def test_twilios_withheld_caller_ids_are_the_keypad_spellings() -> None:
    keypad = {
        c: str(n)
        for n, letters in enumerate(["", "", "abc", "def", "ghi", "jkl", "mno", "pqrs", "tuv", "wxyz"])
        for c in letters
    }
    spelled = {
        "+" + "".join(keypad[c] for c in word.lower())
        for word in ("ANONYMOUS", "RESTRICTED", "UNKNOWN", "BLOCKED", "UNAVAILABLE")
    }
    assert spelled == twilio.WITHHELD_CALLER_IDS
