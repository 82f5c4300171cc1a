"""SIP media application responses, built fresh for every invocation (never a shared template dict).

Limits honoured here (docs/chime.md): at most 10 actions per response, at
most 10 TransactionAttributes (string to string), SIP header names starting with ``x-`` and values within
2048 characters, ``Uri`` of a Voice Connector endpoint 1-36 characters from the allowed set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from millis_sip.edges.chime.events import LEG_A, SmaEvent
from millis_sip.messages import Messages

SCHEMA_VERSION = "1.0"
MAX_ACTIONS = 10
MAX_ATTRIBUTES = 10
MAX_SIP_HEADER_CHARS = 2048
VOICE_CONNECTOR_USER = re.compile(r"[A-Za-z0-9&=+$/%\-_!~*().]{1,36}\Z")
HANGUP_NORMAL = "0"
HANGUP_UNAVAILABLE = "480"

Action = dict[str, Any]


def response(actions: Sequence[Action] = (), attributes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A response. ``attributes=None`` leaves the call's TransactionAttributes as they are; a mapping
    replaces them."""
    if len(actions) > MAX_ACTIONS:
        raise ValueError(f"{len(actions)} actions; a response holds at most {MAX_ACTIONS}")
    answer: dict[str, Any] = {"SchemaVersion": SCHEMA_VERSION, "Actions": [dict(a) for a in actions]}
    if attributes is not None:
        if len(attributes) > MAX_ATTRIBUTES:
            raise ValueError(f"{len(attributes)} TransactionAttributes; at most {MAX_ATTRIBUTES}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()):
            raise ValueError("TransactionAttributes must map strings to strings")
        answer["TransactionAttributes"] = dict(attributes)
    return answer


def call_and_bridge(
    *,
    caller_id: str,
    voice_connector_arn: str,
    uri_user: str,
    timeout_seconds: int,
    sip_headers: Mapping[str, str],
    ringback: tuple[str, str] | None = None,
) -> Action:
    if not VOICE_CONNECTOR_USER.match(uri_user):
        raise ValueError("a Voice Connector Uri is 1-36 characters from a-zA-Z0-9&=+$/%-_!~*().")
    headers = {name: value[:MAX_SIP_HEADER_CHARS] for name, value in sip_headers.items()}
    if not all(name.lower().startswith("x-") and not name.lower().startswith("x-amzn") for name in headers):
        raise ValueError("SIP header names must start with x- (and not X-AMZN)")
    parameters: dict[str, Any] = {
        "CallTimeoutSeconds": timeout_seconds,
        "CallerIdNumber": caller_id,
        "Endpoints": [{"BridgeEndpointType": "AWS", "Arn": voice_connector_arn, "Uri": uri_user}],
        "SipHeaders": headers,
    }
    if ringback is not None:
        bucket, key = ringback
        parameters["RingbackTone"] = {"Type": "S3", "BucketName": bucket, "Key": key}
    return {"Type": "CallAndBridge", "Parameters": parameters}


def hangup(call_id: str | None, tag: str | None = None, code: str = HANGUP_NORMAL) -> Action:
    parameters: dict[str, str] = {"SipResponseCode": code}
    if call_id:
        parameters["CallId"] = call_id
    if tag in ("LEG-A", "LEG-B"):  # anything else Chime would refuse: the CallId is enough
        parameters["ParticipantTag"] = tag
    if len(parameters) == 1:
        parameters["ParticipantTag"] = "LEG-A"
    return {"Type": "Hangup", "Parameters": parameters}


def speak_and_get_digits(
    call_id: str, prompt: str, retry_prompt: str, *, digits: int, voice: str, language: str, engine: str
) -> Action:
    """Ask the caller to key in ``digits`` digits (then #): Chime repeats the prompt once when nothing valid
    comes, then reports ACTION_FAILED."""

    def speech(text: str) -> dict[str, str]:
        return {"Text": text, "TextType": "text", "VoiceId": voice, "LanguageCode": language, "Engine": engine}

    return {
        "Type": "SpeakAndGetDigits",
        "Parameters": {
            "CallId": call_id,
            "InputDigitsRegex": f"^\\d{{{digits}}}#?$",
            "SpeechParameters": speech(prompt),
            "FailureSpeechParameters": speech(retry_prompt),
            "MinNumberOfDigits": digits,
            "MaxNumberOfDigits": digits + 1,
            "TerminatorDigits": ["#"],
            "InBetweenDigitsDurationInMilliseconds": 5000,
            "Repeat": 2,
            "RepeatDurationInMilliseconds": 10000,
        },
    }


def speak(call_id: str, text: str, *, voice: str, language: str, engine: str) -> Action:
    return {
        "Type": "Speak",
        "Parameters": {
            "CallId": call_id,
            "Text": text,
            "TextType": "text",
            "VoiceId": voice,
            "LanguageCode": language,
            "Engine": engine,
        },
    }


def failure_message(call_id: str, messages: Messages) -> list[Action]:
    """The failure message on ``call_id``'s leg, then its hang-up (its caller is let go without an agent)."""
    return [
        speak(call_id, messages.failure, voice=messages.voice, language=messages.language, engine=messages.engine),
        hangup(call_id, LEG_A, HANGUP_NORMAL),
    ]


def hang_up_everyone(event: SmaEvent, code: str) -> list[Action]:
    """A hang-up of every leg Chime has not reported gone (of the caller's, when none can be named)."""
    legs = [p for p in event.participants if p.call_id and not p.disconnected]
    if not legs:
        return [hangup(None, LEG_A, code)]
    return [hangup(p.call_id, p.tag, code) for p in legs]
