"""Where the Millis private key comes from: Secrets Manager in AWS, ``MILLIS_API_KEY`` locally.

The key is fetched lazily, cached for a bounded age, and never cached when fetching fails: the next
invocation tries again. It is never logged, never put in an exception message, never stored.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from millis_sip.core.errors import (
    BridgeError,
    ConfigurationError,
    CredentialUnavailable,
    MillisKeyUnavailable,
    WebhookSecretUnavailable,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

# Secrets are read on the phone path (the Millis key, the stack secret, a carrier's credential) and a caller
# waits: short timeouts and one retry, where botocore's defaults would wait a minute and retry the legacy way.
SECRETS_CONNECT_TIMEOUT, SECRETS_READ_TIMEOUT, SECRETS_ATTEMPTS = 0.5, 1.0, 2


@functools.cache
def secrets_manager_client() -> Any:
    """The one Secrets Manager client of an execution environment, made on first use (a secret read)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=SECRETS_CONNECT_TIMEOUT,
        read_timeout=SECRETS_READ_TIMEOUT,
        retries={"mode": "standard", "total_max_attempts": SECRETS_ATTEMPTS},
        tcp_keepalive=True,
    )
    return boto3.client("secretsmanager", config=config)


# What the stack puts in the secret it creates, until the operator stores the real key.
PLACEHOLDER = "REPLACE_WITH_MILLIS_PRIVATE_KEY"
_JSON_FIELDS = ("api_key", "MILLIS_API_KEY", "private_key", "secret")


class StaticApiKey:
    """The key given in the environment (local runs and tests)."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __call__(self) -> str:
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

    def __init__(self, provider: SecretsProvider, secret_id: str, max_age: int) -> None:
        self._provider = provider
        self._secret_id = secret_id
        self._max_age = max_age

    def __call__(self) -> str:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        try:
            value: Any = self._provider.get(self._secret_id, max_age=self._max_age)
        except GetParameterError as exc:
            cause = exc.__cause__ or exc.__context__
            reason = type(cause).__name__ if cause is not None else "GetParameterError"
            response = getattr(cause, "response", None)  # a ClientError's; None on a timeout
            code = (response.get("Error") or {}).get("Code") if isinstance(response, dict) else None
            raise self.unavailable(
                f"Could not read the {self.label} from Secrets Manager ({code or reason}); will retry."
            ) from None
        key = _extract(value)
        if not key or key == PLACEHOLDER:
            raise self.unavailable(self.empty_message)
        return key

    def forget(self) -> None:
        """Drop the cached value: the next call reads Secrets Manager again (SnapStart restore)."""
        self._provider.clear_cache()  # type: ignore[no-untyped-call]

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
    env = os.environ if env is None else env
    if secret_arn:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        return SecretsManagerApiKey(
            SecretsProvider(boto3_client=secrets_client or secrets_manager_client()), secret_arn, max_age
        )
    key = env.get("MILLIS_API_KEY", "").strip()
    if not key:
        raise ConfigurationError(
            "No Millis API key: set MILLIS_API_KEY_SECRET_ARN (in AWS) or MILLIS_API_KEY (locally)."
        )
    return StaticApiKey(key)


def webhook_secret_source(
    secret_arn: str | None, max_age: int, *, env: Mapping[str, str] | None = None, secrets_client: Any = None
) -> StaticApiKey | WebhookSecret | None:
    """The webhook secret: WEBHOOK_SECRET_ARN (AWS), else WEBHOOK_SECRET (local), else None (webhook off)."""
    env = os.environ if env is None else env
    if secret_arn:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        return WebhookSecret(
            SecretsProvider(boto3_client=secrets_client or secrets_manager_client()), secret_arn, max_age
        )
    secret = env.get("WEBHOOK_SECRET", "").strip()
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
    env = os.environ if env is None else env
    if secret_arn:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        return CarrierCredential(
            SecretsProvider(boto3_client=secrets_client or secrets_manager_client()), secret_arn, max_age
        )
    value = env.get(env_name, "").strip()
    return StaticApiKey(value) if value else None
