"""The secrets from Secrets Manager (botocore's own client, stubbed), and from the environment locally."""

from __future__ import annotations

import botocore.session
import pytest
from botocore.stub import Stubber

from millis_sip.adapters.secrets import PLACEHOLDER, StaticApiKey, api_key_source, webhook_secret_source
from millis_sip.core.errors import ConfigurationError, MillisKeyUnavailable, WebhookSecretUnavailable

ARN = "arn:aws:secretsmanager:us-west-2:123456789012:secret:millis-AbCdEf"
KEY = "pk_live_1234567890"


@pytest.fixture
def client_and_stub() -> tuple[object, Stubber]:
    client = botocore.session.get_session().create_client("secretsmanager", region_name="us-west-2")
    return client, Stubber(client)


def answer(stub: Stubber, value: str) -> None:
    stub.add_response("get_secret_value", {"ARN": ARN, "Name": "millis", "SecretString": value}, {"SecretId": ARN})


@pytest.mark.parametrize("stored", [KEY, f"  {KEY}\n", f'{{"api_key": "{KEY}"}}'])
def test_reads_a_raw_or_json_key(client_and_stub: tuple[object, Stubber], stored: str) -> None:
    client, stub = client_and_stub
    answer(stub, stored)
    with stub:
        assert api_key_source(ARN, 300, secrets_client=client)() == KEY


def test_caches_the_key_for_its_max_age(client_and_stub: tuple[object, Stubber]) -> None:
    client, stub = client_and_stub
    answer(stub, KEY)
    source = api_key_source(ARN, 300, secrets_client=client)
    with stub:
        assert source() == KEY
        assert source() == KEY  # a second fetch would find no stubbed answer and fail
    stub.assert_no_pending_responses()


def test_a_failed_fetch_is_not_cached_and_says_nothing_secret(client_and_stub: tuple[object, Stubber]) -> None:
    client, stub = client_and_stub
    stub.add_client_error("get_secret_value", "AccessDeniedException", "not allowed", 400)
    answer(stub, KEY)
    source = api_key_source(ARN, 300, secrets_client=client)
    with stub:
        with pytest.raises(MillisKeyUnavailable, match="AccessDeniedException"):
            source()
        assert source() == KEY


@pytest.mark.parametrize("stored", [PLACEHOLDER, "  ", '{"other": "x"}', "{not json"])
def test_a_secret_without_a_key_is_unavailable_with_a_fix(client_and_stub: tuple[object, Stubber], stored: str) -> None:
    client, stub = client_and_stub
    answer(stub, stored)
    with stub, pytest.raises(MillisKeyUnavailable, match="store the Millis private key"):
        api_key_source(ARN, 300, secrets_client=client)()


def test_locally_the_key_comes_from_the_environment() -> None:
    source = api_key_source(None, 300, env={"MILLIS_API_KEY": KEY})
    assert isinstance(source, StaticApiKey)
    assert source() == KEY
    assert KEY not in repr(source)


def test_no_key_anywhere_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="MILLIS_API_KEY"):
        api_key_source(None, 300, env={})


def test_the_webhook_secret_is_read_the_same_way_and_a_failure_is_retried(
    client_and_stub: tuple[object, Stubber],
) -> None:
    client, stub = client_and_stub
    stub.add_client_error("get_secret_value", "InternalServiceError", "try again", 500)
    answer(stub, "generated-webhook-secret")
    source = webhook_secret_source(ARN, 300, secrets_client=client)
    assert source is not None
    with stub:
        with pytest.raises(WebhookSecretUnavailable, match="webhook secret"):
            source()
        assert source() == "generated-webhook-secret"


def test_without_a_webhook_secret_the_webhook_is_off() -> None:
    assert webhook_secret_source(None, 300, env={}) is None
    local = webhook_secret_source(None, 300, env={"WEBHOOK_SECRET": "s"})
    assert local is not None and local() == "s"


def test_a_timeout_is_unavailable_not_a_crash() -> None:
    from botocore.config import Config
    from botocore.exceptions import ReadTimeoutError

    client = botocore.session.get_session().create_client(
        "secretsmanager", region_name="us-west-2", config=Config(retries={"total_max_attempts": 1})
    )
    source = api_key_source(ARN, 300, secrets_client=client)

    def hang(**_: object) -> None:
        raise ReadTimeoutError(endpoint_url="https://secretsmanager.us-west-2.amazonaws.com")

    client.meta.events.register("before-send.secrets-manager", hang)
    with pytest.raises(MillisKeyUnavailable, match="ReadTimeoutError"):
        source()


def test_the_secret_is_read_again_after_its_max_age(
    client_and_stub: tuple[object, Stubber], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, stub = client_and_stub
    answer(stub, KEY)
    answer(stub, KEY + "-rotated")
    now = [1000.0]
    monkeypatch.setattr("millis_sip.adapters.secrets.time.monotonic", lambda: now[0])
    source = api_key_source(ARN, 300, secrets_client=client)
    with stub:
        assert source() == KEY
        now[0] += 299
        assert source() == KEY
        now[0] += 2
        assert source() == KEY + "-rotated"
