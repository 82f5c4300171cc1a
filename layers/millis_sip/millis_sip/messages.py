"""What a caller hears (docs/operations.md, "What callers hear"): the failure message before a hang-up and the
PIN prompts, spoken with Amazon Polly, configured through the environment like every setting (``config.Env``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from millis_sip.core.errors import ConfigurationError
from millis_sip.environment import Env

DEFAULT_FAILURE_MESSAGE = "Sorry, we cannot take your call right now. Please try again later."
DEFAULT_PIN_PROMPT = "Please enter your PIN, then press the pound key."
DEFAULT_PIN_RETRY = "That PIN was not right. Please try again."


@dataclass(frozen=True, slots=True)
class Messages:
    """What a caller hears, spoken with Amazon Polly (Chime's Speak, Twilio's <Say voice="Polly.Joanna">)."""

    failure: str  # before the hang-up when no agent can take the call; "" for none
    pin_prompt: str
    pin_retry: str
    voice: str
    language: str
    engine: str

    @property
    def polly_voice(self) -> str:
        """The voice as TwiML's <Say> and Plivo's <Speak> name Amazon Polly's, e.g. Polly.Joanna-Neural."""
        return f"Polly.{self.voice}" + ("-Neural" if self.engine == "neural" else "")

    @classmethod
    def defaults(cls) -> Messages:
        """What a caller hears when the configuration itself could not be read."""
        try:
            return cls.from_env()
        except ConfigurationError:
            return cls.from_env({})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Messages:
        get = Env(env).text
        engine = get("FAILURE_MESSAGE_ENGINE", "neural")
        if engine not in ("standard", "neural"):
            raise ConfigurationError(f"FAILURE_MESSAGE_ENGINE={engine!r}: use standard or neural")
        return cls(
            # "-" turns the spoken message off: the caller hears the carrier's tone.
            failure="" if get("FAILURE_MESSAGE") == "-" else get("FAILURE_MESSAGE", DEFAULT_FAILURE_MESSAGE),
            pin_prompt=get("PIN_PROMPT", DEFAULT_PIN_PROMPT),
            pin_retry=get("PIN_RETRY_PROMPT", DEFAULT_PIN_RETRY),
            voice=get("FAILURE_MESSAGE_VOICE", "Joanna"),
            language=get("FAILURE_MESSAGE_LANGUAGE", "en-US"),
            engine=engine,
        )
