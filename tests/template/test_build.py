"""`sam build`, then the built ApiFunction run with nothing but the standard library and the built layer
on its path: proof that the artifact SAM would deploy imports and serves a request."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from dev.dynamodb_local import DynamoDBLocal
from dev.millis_simulator import MillisSimulator
from tests.conftest import EVENTS, ROOT
from tests.support.rig import TABLE

pytestmark = pytest.mark.template
BIN = Path(sys.executable).parent
HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]
SO_SUFFIX = {"x86_64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}


def sam_build(build_dir: Path, arch: str) -> Path:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # sam looks for python3.13 on the PATH
        "SAM_CLI_TELEMETRY": "0",
        "SAM_CLI_DISABLE_CHECK_UPDATE": "1",
    }
    result = subprocess.run(
        [str(BIN / "sam"), "build", "--build-dir", str(build_dir), "--parameter-overrides", f"Architecture={arch}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return build_dir


@pytest.fixture(scope="module")
def host_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sam_build(tmp_path_factory.mktemp("sam-build-host"), HOST_ARCH)


def test_built_function_holds_only_its_entry_module(host_build: Path) -> None:
    assert sorted(p.name for p in (host_build / "ApiFunction").iterdir()) == ["api_handler.py"]


def test_built_layer_holds_the_package_its_data_and_no_tests(host_build: Path) -> None:
    python = host_build / "MillisSipLayer" / "python"
    assert (python / "millis_sip" / "data" / "regions.csv").is_file()
    assert (python / "httpx").is_dir()
    assert (python / "aws_lambda_powertools").is_dir()
    assert not list(python.glob("tests")) and not list(python.glob("millis_sip/**/__pycache__"))
    assert list((python / "pydantic_core").glob(f"*{SO_SUFFIX[HOST_ARCH]}.so"))


def test_built_artifact_serves_a_request(
    host_build: Path, ddb: DynamoDBLocal, simulator: MillisSimulator, tmp_path: Path
) -> None:
    simulator.clear()
    script = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(host_build / 'MillisSipLayer' / 'python')!r}, {str(host_build / 'ApiFunction')!r}]\n"
        "import api_handler\n"
        "from types import SimpleNamespace\n"
        "ctx = SimpleNamespace(function_name='ApiFunction', memory_limit_in_mb=512, aws_request_id='build-test',\n"
        "    invoked_function_arn='arn:aws:lambda:us-west-2:123456789012:function:ApiFunction',\n"
        "    get_remaining_time_in_millis=lambda: 20000)\n"
        f"event = json.load(open({str(EVENTS / 'api-create-call.json')!r}))\n"
        "response = api_handler.lambda_handler(event, ctx)\n"
        "print('RESULT ' + json.dumps({'response': response, 'files': [m.__file__ for m in\n"
        "    (api_handler, __import__('httpx'), __import__('pydantic'), __import__('boto3'))]}))\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_REGION": "us-west-2",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_ACCESS_KEY_ID": "build",
        "AWS_SECRET_ACCESS_KEY": "build",
        "AWS_ENDPOINT_URL_DYNAMODB": ddb.endpoint,
        "CALLS_TABLE_NAME": TABLE,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "millis-sip-bridge",
        "POWERTOOLS_METRICS_NAMESPACE": "MillisSipBridge",
        **simulator.env(),
    }
    # -S: no site-packages, so every third-party import must come from the built layer.
    result = subprocess.run(
        [sys.executable, "-S", "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [line] = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    outcome = json.loads(line.removeprefix("RESULT "))
    response = outcome["response"]
    assert response["statusCode"] == 201, response
    assert json.loads(response["body"])["sip_uri"].startswith("sip:call-sim-")
    assert all(str(host_build) in path for path in outcome["files"])
    assert len(simulator.registrations()) == 1


def test_arm64_build_ships_arm64_wheels(tmp_path: Path) -> None:
    if HOST_ARCH == "arm64":
        pytest.skip("the host build already is arm64")
    build = sam_build(tmp_path / "sam-build-arm64", "arm64")
    python = build / "MillisSipLayer" / "python"
    assert list((python / "pydantic_core").glob("*aarch64-linux-gnu.so"))
    assert not list((python / "pydantic_core").glob("*x86_64-linux-gnu.so"))
