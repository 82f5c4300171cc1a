"""What every AWS adapter needs of botocore: its clients, made from one botocore session per execution
environment (boto3 adds nothing these functions use, and importing it costs every cold start s3transfer,
multiprocessing and more), and its errors."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from millis_sip.environment import Env

if TYPE_CHECKING:
    from botocore.config import Config
    from botocore.session import Session


@functools.cache
def session() -> Session:
    """The execution environment's botocore session (credentials, region and endpoints from the environment,
    as boto3's default session reads them: AWS_REGION, AWS_ENDPOINT_URL_<SERVICE>, ...)."""
    import botocore.session

    return botocore.session.get_session()


def client(service: str, config: Config) -> Any:
    """A client of ``service`` with ``config`` (timeouts, retries), from the shared session."""
    env = Env()
    region = env.optional("AWS_REGION") or env.optional("AWS_DEFAULT_REGION")
    return session().create_client(service, region_name=region, config=config)


def error_code(exc: ClientError) -> str:
    """The service's error code (``ConditionalCheckFailedException``, ``ThrottlingException``, ...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))
