"""SnapStart runtime hooks: registered with the runtime's snapshot_restore_py, and what they do on restore."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
import snapshot_restore_py
from botocore.stub import Stubber

from dev.functions import load_function
from millis_sip.adapters.millis_http import HttpMillisGateway
from millis_sip.adapters.secrets import SecretsManagerApiKey


@pytest.fixture
def registry() -> Iterator[tuple[list[Any], list[Any]]]:
    before, after = snapshot_restore_py.get_before_snapshot(), snapshot_restore_py.get_after_restore()
    saved = (list(before), list(after))
    before.clear()
    after.clear()
    yield before, after
    before[:] = saved[0]
    after[:] = saved[1]


@pytest.mark.parametrize("module", ["api_handler", "sma_handler"])
def test_each_function_registers_its_hooks(module: str, registry: tuple[list[Any], list[Any]]) -> None:
    before, after = registry
    loaded = load_function(module)
    assert len(before) == len(after) == 1
    client_before = (loaded.gateway if module == "api_handler" else loaded.sma.gateway)._client
    (hook, args, kwargs) = after[0]
    hook(*args, **kwargs)
    gateway = loaded.gateway if module == "api_handler" else loaded.sma.gateway
    assert gateway._client is not client_before  # new connections after a restore
    assert client_before.is_closed


def test_a_restore_reads_the_secret_again() -> None:
    arn = "arn:aws:secretsmanager:us-west-2:123456789012:secret:millis-AbCdEf"
    client = botocore.session.get_session().create_client("secretsmanager", region_name="us-west-2")
    key = SecretsManagerApiKey(client, arn, 300)
    gateway = HttpMillisGateway(HttpMillisGateway.new_client(), {}, (), key, connect_timeout=1, read_timeout=1)
    with Stubber(client) as stub:
        stub.add_response("get_secret_value", {"SecretString": "before-snapshot"}, {"SecretId": arn})
        stub.add_response("get_secret_value", {"SecretString": "rotated-since"}, {"SecretId": arn})
        assert key() == "before-snapshot"
        assert key() == "before-snapshot"  # cached
        gateway.after_restore()
        assert key() == "rotated-since"
        stub.assert_no_pending_responses()
