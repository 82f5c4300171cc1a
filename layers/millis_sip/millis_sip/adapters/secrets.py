"""Where the secrets come from (the Millis private key, the stack secret, the carriers' credentials): Secrets
Manager in AWS, read with botocore directly; the environment locally.

A secret is fetched lazily, cached for a bounded age, and never cached when fetching fails: the next
invocation tries again. It is never logged, never put in an exception message, never stored.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping
from typing import Any

from millis_sip.core.errors import (
    BridgeError,
    ConfigurationError,
    CredentialUnavailable,
    KeysSecretUnavailable,
    MillisKeyUnavailable,
    WebhookSecretUnavailable,
)
from millis_sip.environment import Env

# Secrets are read on the phone path (the Millis key, the stack secret, a carrier's credential) and a caller
# waits: short timeouts and one retry, where botocore's defaults would wait a minute and retry the legacy way.
SECRETS_CONNECT_TIMEOUT, SECRETS_READ_TIMEOUT, SECRETS_ATTEMPTS = 0.5, 1.0, 2


@functools.cache
def secrets_manager_client() -> Any:
    """The one Secrets Manager client of an execution environment, made when the first secret source is."""
    from botocore.config import Config

    from millis_sip.adapters import aws

    config = Config(
        connect_timeout=SECRETS_CONNECT_TIMEOUT,
        read_timeout=SECRETS_READ_TIMEOUT,
        retries={"mode": "standard", "total_max_attempts": SECRETS_ATTEMPTS},
        tcp_keepalive=True,
    )
    return aws.client("secretsmanager", config)


# What the stack puts in the secret it creates, until the operator stores the real key.
PLACEHOLDER = "REPLACE_WITH_MILLIS_PRIVATE_KEY"
_JSON_FIELDS = ("api_key", "MILLIS_API_KEY", "private_key", "secret")


class StaticApiKey:
    """The key given in the environment (local runs and tests)."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __call__(self) -> str:
        return self._key

    def fresh(self) -> str:
        """Always in memory."""
        return self._key

    def forget(self) -> None:
        """Nothing cached: the value came from the environment."""

    def __repr__(self) -> str:
        return "StaticApiKey(<redacted>)"


class CachedSecret:
    """A secret in Secrets Manager, cached for ``max_age`` seconds; a failed fetch is never cached."""

    label = "secret"
    unavailable: type[BridgeError] = MillisKeyUnavailable
    empty_message = "The secret is empty."

    def __init__(self, client: Any, secret_id: str, max_age: int) -> None:
        self._client = client
        self._secret_id = secret_id
        self._max_age = max_age
        self._cached: tuple[str, float] | None = None  # (value, when it was read, monotonic)

    def __call__(self) -> str:
        fresh = self.fresh()
        if fresh is not None:
            return fresh
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._client.get_secret_value(SecretId=self._secret_id)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code") or "ClientError"
            raise self.unavailable(
                f"Could not read the {self.label} from Secrets Manager ({code}); will retry."
            ) from None
        except BotoCoreError as exc:  # a timeout, a connection refused
            raise self.unavailable(
                f"Could not read the {self.label} from Secrets Manager ({type(exc).__name__}); will retry."
            ) from None
        value = answer.get("SecretString")
        if value is None and answer.get("SecretBinary") is not None:
            value = bytes(answer["SecretBinary"]).decode("utf-8", "replace")
        key = _extract(value)
        if not key or key == PLACEHOLDER:
            raise self.unavailable(self.empty_message)
        self._cached = (key, time.monotonic())
        return key

    def fresh(self) -> str | None:
        """The cached value while it is fresh, without any request (None: calling would read Secrets Manager)."""
        cached = self._cached
        if cached is not None and time.monotonic() - cached[1] < self._max_age:
            return cached[0]
        return None

    def forget(self) -> None:
        """Drop the cached value: the next call reads Secrets Manager again (SnapStart restore)."""
        self._cached = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(secret_id={self._secret_id!r})"


class SecretsManagerApiKey(CachedSecret):
    """The Millis key in a Secrets Manager secret: the raw key, or JSON with an ``api_key`` field."""

    label = "Millis API key"
    unavailable = MillisKeyUnavailable
    empty_message = (
        "The Millis API key secret holds no key yet: store the Millis private key in it "
        "(see the stack output MillisApiKeySecretArn)."
    )


class WebhookSecret(CachedSecret):
    """The shared secret Millis sends back with its session webhook (the stack generates it)."""

    label = "webhook secret"
    unavailable = WebhookSecretUnavailable
    empty_message = "The webhook secret is empty."


class KeysSecret(CachedSecret):
    """The secret the stack keys its hashes and tokens with (``core.keys``); generated, never sent anywhere."""

    label = "keys secret"
    unavailable = KeysSecretUnavailable
    empty_message = "The keys secret is empty."


class CarrierCredential(CachedSecret):
    """A carrier's webhook credential (one per line when a rotation keeps two valid)."""

    label = "carrier credential"
    unavailable = CredentialUnavailable
    empty_message = "The carrier credential secret is empty."


def _extract(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return ""
    text = value.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return ""
        if isinstance(data, dict):
            for name in _JSON_FIELDS:
                if isinstance(data.get(name), str):
                    return str(data[name]).strip()
        return ""
    return text


def api_key_source(
    secret_arn: str | None, max_age: int, *, env: Mapping[str, str] | None = None, secrets_client: Any = None
) -> StaticApiKey | SecretsManagerApiKey:
    """The secret when an ARN is configured (AWS), else MILLIS_API_KEY (local)."""
    if secret_arn:
        return SecretsManagerApiKey(secrets_client or secrets_manager_client(), secret_arn, max_age)
    key = Env(env).text("MILLIS_API_KEY")
    if not key:
        raise ConfigurationError(
            "No Millis API key: set MILLIS_API_KEY_SECRET_ARN (in AWS) or MILLIS_API_KEY (locally)."
        )
    return StaticApiKey(key)


def webhook_secret_source(
    secret_arn: str | None, max_age: int, *, env: Mapping[str, str] | None = None, secrets_client: Any = None
) -> StaticApiKey | WebhookSecret | None:
    """The webhook secret: WEBHOOK_SECRET_ARN (AWS), else WEBHOOK_SECRET (local), else None (webhook off)."""
    if secret_arn:
        return WebhookSecret(secrets_client or secrets_manager_client(), secret_arn, max_age)
    secret = Env(env).text("WEBHOOK_SECRET")
    return StaticApiKey(secret) if secret else None


def keys_secret_source(
    secret_arn: str | None, max_age: int, *, env: Mapping[str, str] | None = None, secrets_client: Any = None
) -> StaticApiKey | KeysSecret | None:
    """The keys secret: KEYS_SECRET_ARN (AWS), else KEYS_SECRET (local), else None (hashes keyed with nothing,
    which ``StackKeys`` warns about)."""
    if secret_arn:
        return KeysSecret(secrets_client or secrets_manager_client(), secret_arn, max_age)
    secret = Env(env).text("KEYS_SECRET")
    return StaticApiKey(secret) if secret else None


def carrier_credential_source(
    secret_arn: str | None,
    env_name: str,
    max_age: int,
    *,
    env: Mapping[str, str] | None = None,
    secrets_client: Any = None,
) -> StaticApiKey | CarrierCredential | None:
    """A carrier's credential: the secret when an ARN is configured (AWS), else ``env_name`` (local), else None
    (that carrier's webhooks refuse every request)."""
    if secret_arn:
        return CarrierCredential(secrets_client or secrets_manager_client(), secret_arn, max_age)
    value = Env(env).text(env_name)
    return StaticApiKey(value) if value else None
