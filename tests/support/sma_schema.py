"""A JSON Schema of SIP media application responses, for the actions this product sends, written from the
Amazon Chime SDK Developer Guide (pages call-and-bridge, hangup, speak, speak-and-get-digits, sip-headers,
transaction-attributes). tests/unit/test_sma_schema.py holds it to the documented example responses
(tests/fixtures/chime-events/resp_*.json): every documented response of these actions passes, and the
documented mistakes fail."""

from __future__ import annotations

from typing import Any

import jsonschema

E164 = r"^\+[1-9][0-9]{1,14}$"
STRING = {"type": "string"}
AUDIO_SOURCE: dict[str, Any] = {
    "type": "object",
    "required": ["Type", "BucketName", "Key"],
    "additionalProperties": False,
    "properties": {"Type": {"const": "S3"}, "BucketName": STRING, "Key": STRING},
}
SPEECH: dict[str, Any] = {
    "type": "object",
    "required": ["Text"],
    "additionalProperties": False,
    "properties": {
        "Text": {"type": "string", "minLength": 1},
        "Engine": {"enum": ["standard", "neural"]},
        "LanguageCode": STRING,
        "TextType": {"enum": ["text", "ssml"]},
        "VoiceId": STRING,
    },
}

CALL_AND_BRIDGE: dict[str, Any] = {
    "type": "object",
    "required": ["Type", "Parameters"],
    "additionalProperties": False,
    "properties": {
        "Type": {"const": "CallAndBridge"},
        "Parameters": {
            "type": "object",
            "required": ["CallerIdNumber", "Endpoints"],
            "additionalProperties": False,
            "properties": {
                "CallTimeoutSeconds": {"type": "integer", "minimum": 1, "maximum": 120},
                "CallerIdNumber": STRING,
                "Endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["BridgeEndpointType", "Uri"],
                        "additionalProperties": False,
                        "properties": {
                            "BridgeEndpointType": {"enum": ["AWS", "PSTN"]},
                            "Arn": STRING,
                            "Uri": STRING,
                        },
                        "if": {"properties": {"BridgeEndpointType": {"const": "AWS"}}},
                        "then": {
                            "required": ["Arn"],
                            "properties": {
                                "Arn": {"pattern": r"^arn:aws[a-z-]*:chime:[a-z0-9-]+:[0-9A-Za-z]+:vcg?/[A-Za-z0-9]+$"},
                                "Uri": {"pattern": r"^[A-Za-z0-9&=+$/%\-_!~*().]{1,36}$"},
                            },
                        },
                    },
                },
                "SipHeaders": {
                    "type": "object",
                    "propertyNames": {"pattern": r"^([xX]-(?![aA][mM][zZ][nN]).*|User-to-User|Diversion)$"},
                    "additionalProperties": {"type": "string", "maxLength": 2048},
                },
                "RingbackTone": AUDIO_SOURCE,
            },
        },
    },
}

HANGUP: dict[str, Any] = {
    "type": "object",
    "required": ["Type", "Parameters"],
    "additionalProperties": False,
    "properties": {
        "Type": {"const": "Hangup"},
        "Parameters": {
            "type": "object",
            "additionalProperties": False,
            "anyOf": [{"required": ["CallId"]}, {"required": ["ParticipantTag"]}],
            "properties": {
                "CallId": STRING,
                "ParticipantTag": {"enum": ["LEG-A", "LEG-B", ""]},
                "SipResponseCode": {"enum": ["0", "480", "486"]},
            },
        },
    },
}

SPEAK: dict[str, Any] = {
    "type": "object",
    "required": ["Type", "Parameters"],
    "additionalProperties": False,
    "properties": {
        "Type": {"const": "Speak"},
        "Parameters": {
            "type": "object",
            "required": ["Text", "CallId"],
            "additionalProperties": False,
            "properties": {
                "Text": {"type": "string", "minLength": 1},
                "CallId": STRING,
                "Engine": {"enum": ["standard", "neural"]},
                "LanguageCode": STRING,
                "TextType": {"enum": ["text", "ssml"]},
                "VoiceId": STRING,
            },
        },
    },
}

SPEAK_AND_GET_DIGITS: dict[str, Any] = {
    "type": "object",
    "required": ["Type", "Parameters"],
    "additionalProperties": False,
    "properties": {
        "Type": {"const": "SpeakAndGetDigits"},
        "Parameters": {
            "type": "object",
            "required": ["SpeechParameters", "FailureSpeechParameters", "MinNumberOfDigits"],
            "additionalProperties": False,
            "anyOf": [{"required": ["CallId"]}, {"required": ["ParticipantTag"]}],
            "properties": {
                "CallId": STRING,
                "ParticipantTag": {"enum": ["LEG-A", "LEG-B"]},
                "InputDigitsRegex": STRING,
                "SpeechParameters": SPEECH,
                "FailureSpeechParameters": SPEECH,
                "MinNumberOfDigits": {"type": "integer", "minimum": 0},
                "MaxNumberOfDigits": {"type": "integer", "minimum": 1},
                "TerminatorDigits": {"type": "array", "items": {"enum": [*"0123456789#*"]}},
                "InBetweenDigitsDurationInMilliseconds": {"type": "integer", "minimum": 1000},
                "Repeat": {"type": "integer", "minimum": 1},
                "RepeatDurationInMilliseconds": {"type": "integer", "minimum": 1},
            },
        },
    },
}

ACTIONS = {
    "CallAndBridge": CALL_AND_BRIDGE,
    "Hangup": HANGUP,
    "Speak": SPEAK,
    "SpeakAndGetDigits": SPEAK_AND_GET_DIGITS,
}

RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["SchemaVersion", "Actions"],
    "additionalProperties": False,
    "properties": {
        "SchemaVersion": {"const": "1.0"},
        "Actions": {"type": "array", "maxItems": 10, "items": {"oneOf": list(ACTIONS.values())}},
        "TransactionAttributes": {
            "type": "object",
            "maxProperties": 10,
            "additionalProperties": {"type": "string"},
        },
    },
}


def validate_response(answer: object) -> None:
    """Raises jsonschema.ValidationError unless ``answer`` is a response the service documents."""
    jsonschema.validate(answer, RESPONSE)
