"""TwiML as Twilio's documentation defines the verbs this product answers with (twilio.com/docs/voice/twiml:
Dial, Sip, Gather, Say, Hangup, Reject): parsed with an XML parser and checked element by element, attribute
by attribute, so an answer Twilio would refuse fails the test that produced it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

# verb -> (allowed attributes, allowed children, may hold text)
VERBS: dict[str, tuple[set[str], set[str], bool]] = {
    "Response": (set(), {"Dial", "Gather", "Say", "Hangup", "Reject", "Redirect", "Pause"}, False),
    "Dial": (
        # referUrl, referMethod: twilio.com/docs/voice/api/refer-to-twilio (the twilio SDK's Dial(refer_url=...))
        {
            "action",
            "method",
            "answerOnBridge",
            "timeout",
            "callerId",
            "hangupOnStar",
            "timeLimit",
            "record",
            "referUrl",
            "referMethod",
        },
        {"Sip", "Number", "Client"},
        True,
    ),
    "Sip": ({"username", "password", "url", "method", "statusCallback", "statusCallbackEvent"}, set(), True),
    "Gather": (
        {"input", "numDigits", "finishOnKey", "timeout", "action", "method", "actionOnEmptyResult", "language"},
        {"Say", "Play", "Pause"},
        False,
    ),
    "Say": ({"voice", "language", "loop"}, set(), True),
    "Hangup": (set(), set(), False),
    "Redirect": ({"method"}, set(), True),
    "Reject": ({"reason"}, set(), False),
}
POLLY = ("Polly.", "alice", "man", "woman")


def parse(body: str) -> ET.Element:
    """The TwiML document, checked; raises AssertionError where it strays from the documented verbs."""
    root = ET.fromstring(body)  # noqa: S314 - this product's own answer, in a test
    assert root.tag == "Response", root.tag
    _check(root)
    return root


def _check(element: ET.Element) -> None:
    attributes, children, text = VERBS[element.tag]
    assert set(element.attrib) <= attributes, (element.tag, set(element.attrib) - attributes)
    if not text:
        assert not (element.text or "").strip(), (element.tag, element.text)
    for child in element:
        assert child.tag in children, (element.tag, child.tag)
        _check(child)
    if element.tag == "Sip":
        uri = (element.text or "").strip()
        assert uri.startswith(("sip:", "sips:")) and len(uri) < 255, uri
    if element.tag == "Gather" and "numDigits" in element.attrib:
        assert element.attrib["numDigits"].isdigit()
    if element.tag == "Say":
        assert element.attrib.get("voice", "").startswith(POLLY)
    if element.tag == "Dial":
        assert element.attrib.get("answerOnBridge") in (None, "true", "false")
        assert element.attrib.get("method") in (None, "GET", "POST")


def verbs(root: ET.Element) -> list[str]:
    return [child.tag for child in root]
