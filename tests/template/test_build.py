"""`sam build`, then each built function run with nothing but the standard library and the built layer on its
path: proof that the artifacts SAM would deploy import and serve a request."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from dev.build import HOST_ARCH, sam_build
from dev.dynamodb_local import DynamoDBLocal
from dev.function_env import SIMULATOR_VOICE_CONNECTORS, function_env
from dev.millis_simulator import MillisSimulator
from tests.conftest import EVENTS
from tests.support.rig import TABLES
from tests.support.sma_schema import validate_response

pytestmark = pytest.mark.template
SO_SUFFIX = {"x86_64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}


@pytest.fixture(scope="module")
def host_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sam_build(tmp_path_factory.mktemp("sam-build-host"), HOST_ARCH, timeout=600)


def test_built_function_holds_only_its_entry_module(host_build: Path) -> None:
    assert sorted(p.name for p in (host_build / "ApiFunction").iterdir()) == ["api_handler.py"]


def test_built_layer_holds_the_package_its_data_and_no_tests(host_build: Path) -> None:
    python = host_build / "MillisSipLayer" / "python"
    assert (python / "millis_sip" / "core" / "data" / "regions.csv").is_file()
    assert (python / "httpx").is_dir()
    assert (python / "aws_lambda_powertools").is_dir()
    assert not list(python.rglob("tests")) and not (python / "bin").exists()
    assert list((python / "pydantic_core").glob(f"*{SO_SUFFIX[HOST_ARCH]}.so"))
    assert_wheels_for(python, HOST_ARCH)
    assert_every_source_has_unchecked_hash_bytecode(python)


# PEP 552: a pyc's header is magic, a 32-bit flags field, then either a source date and size or a source hash.
# Flags 0b01: hash-based and not checked against the source (the runtime reads no source to trust it).
UNCHECKED_HASH = 0b01
WHEEL_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}


def pyc_flags(pyc: Path) -> int:
    header = pyc.read_bytes()[:16]
    assert header[:4] == importlib.util.MAGIC_NUMBER, f"{pyc} was not written by Python 3.13"
    return int.from_bytes(header[4:8], "little")


def assert_every_source_has_unchecked_hash_bytecode(python: Path) -> None:
    sources = list(python.rglob("*.py"))
    assert len(sources) > 500  # the package and every dependency
    missing = [s for s in sources if not Path(importlib.util.cache_from_source(str(s))).is_file()]
    assert not missing, missing[:10]
    pycs = list(python.rglob("*.pyc"))
    assert all(p.parent.name == "__pycache__" and ".cpython-313." in p.name for p in pycs), "only CPython 3.13's"
    assert {pyc_flags(p) for p in pycs} == {UNCHECKED_HASH}
    assert len(pycs) == len(sources)


def assert_wheels_for(python: Path, arch: str) -> None:
    """The compiled dependencies came as wheels for ``arch``: pip installed them from the hashed lock
    (--require-hashes), so the lock holds those wheels' hashes."""
    for dist in ("pydantic_core", "pynacl", "cffi"):
        [info] = python.glob(f"{dist}-*.dist-info")
        tags = [line.split(": ", 1)[1] for line in (info / "WHEEL").read_text().splitlines() if line.startswith("Tag:")]
        assert tags and all(tag.endswith(f"_{WHEEL_ARCH[arch]}") for tag in tags), (dist, tags)


# Each entry module imported as Lambda would: a fresh interpreter, no site-packages, the layer and the function
# on the path, nothing written (PYTHONDONTWRITEBYTECODE=1, like the read-only /opt). Every module the layer
# supplies must come from its bytecode: a source compile is counted where importlib would do one.
IMPORT_FROM_BYTECODE = """
import importlib.machinery, json, sys
layer, functions = sys.argv[1], sys.argv[2:]
compiled = []
original = importlib.machinery.SourceFileLoader.source_to_code
def source_to_code(self, data, path, *args, **kwargs):
    compiled.append(str(path))
    return original(self, data, path, *args, **kwargs)
importlib.machinery.SourceFileLoader.source_to_code = source_to_code
sys.path[:0] = [layer, *functions]
import api_handler, sma_handler, inbound_handler
loaded = {name: (module.__file__, getattr(module.__spec__, "cached", None))
          for name, module in list(sys.modules.items()) if (getattr(module, "__file__", None) or "").startswith(layer)}
print("RESULT " + json.dumps({"compiled": compiled, "loaded": loaded}))
"""


def test_built_entry_modules_import_the_layer_from_its_bytecode(
    host_build: Path, ddb: DynamoDBLocal, simulator: MillisSimulator
) -> None:
    layer = str(host_build / "MillisSipLayer" / "python")
    functions = [str(host_build / f) for f in ("ApiFunction", "SipMediaAppFunction", "InboundFunction")]
    extra = {"DEFAULT_AGENT_ID": "phone-agent", "TWILIO_AUTH_TOKEN": "token", **SIMULATOR_VOICE_CONNECTORS}
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONDONTWRITEBYTECODE": "1",
        **function_env(tables=TABLES, millis=simulator.env(), dynamodb_endpoint=ddb.endpoint, extra=extra),
    }
    result = subprocess.run(
        [sys.executable, "-S", "-c", IMPORT_FROM_BYTECODE, layer, *functions],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [line] = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    outcome = json.loads(line.removeprefix("RESULT "))
    loaded: dict[str, list[str]] = outcome["loaded"]
    assert {"millis_sip", "pydantic", "pydantic_core", "httpx", "botocore", "aws_lambda_powertools"} <= {
        name.split(".")[0] for name in loaded
    }
    assert "boto3" not in {name.split(".")[0] for name in loaded}  # botocore's own clients: no boto3 to import
    assert len(loaded) > 100
    # The entry modules themselves (one small file each in the functions' folders) compile; the layer never does.
    assert {"api_handler", "sma_handler", "inbound_handler"} <= {Path(path).stem for path in outcome["compiled"]}
    assert [path for path in outcome["compiled"] if path.startswith(layer)] == []
    for name, (source, cached) in loaded.items():
        if source.endswith(".py"):
            assert cached and Path(cached).is_file() and pyc_flags(Path(cached)) == UNCHECKED_HASH, name


def run_built(
    build: Path,
    function_id: str,
    module: str,
    event_path: Path,
    ddb: DynamoDBLocal,
    simulator: MillisSimulator,
    **extra_env: str,
) -> dict[str, Any]:
    """Invoke a built function in a fresh interpreter with no site-packages: every third-party import
    must come from the built layer. Returns the handler's answer and where the modules came from."""
    script = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(build / 'MillisSipLayer' / 'python')!r}, {str(build / function_id)!r}]\n"
        f"import {module} as entry\n"
        "from types import SimpleNamespace\n"
        f"ctx = SimpleNamespace(function_name={function_id!r}, memory_limit_in_mb=512, aws_request_id='build-test',\n"
        f"    invoked_function_arn='arn:aws:lambda:us-west-2:123456789012:function:{function_id}',\n"
        "    get_remaining_time_in_millis=lambda: 20000)\n"
        f"event = json.load(open({str(event_path)!r}))\n"
        "response = entry.lambda_handler(event, ctx)\n"
        "print('RESULT ' + json.dumps({'response': response, 'files': [m.__file__ for m in\n"
        "    (entry, __import__('httpx'), __import__('pydantic'), __import__('botocore'))]}))\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        **function_env(tables=TABLES, millis=simulator.env(), dynamodb_endpoint=ddb.endpoint, extra=extra_env),
    }
    result = subprocess.run(
        [sys.executable, "-S", "-B", "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [line] = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    outcome: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    assert all(str(build) in path for path in outcome["files"])
    return outcome


def test_built_artifact_serves_a_request(host_build: Path, ddb: DynamoDBLocal, simulator: MillisSimulator) -> None:
    simulator.clear()
    outcome = run_built(host_build, "ApiFunction", "api_handler", EVENTS / "api-create-call.json", ddb, simulator)
    response = outcome["response"]
    assert response["statusCode"] == 201, response
    assert json.loads(response["body"])["sip_uri"].startswith("sip:call-sim-")
    assert len(simulator.registrations()) == 1


@pytest.mark.parametrize("name", ["sma-new-inbound-call.json", "sma-new-inbound-call-doc-shape.json"])
def test_built_sip_media_app_bridges_a_new_inbound_call(
    name: str, host_build: Path, ddb: DynamoDBLocal, simulator: MillisSimulator, tmp_path: Path
) -> None:
    simulator.clear()
    event = json.loads((EVENTS / name).read_text())
    event["CallDetails"]["TransactionId"] = f"build-{uuid.uuid4()}"
    # A caller with no pending HTTP registration (the ApiFunction test registered one for the events' caller).
    event["CallDetails"]["Participants"][0]["From"] = "+1206" + str(uuid.uuid4().int)[:7]
    path = tmp_path / name
    path.write_text(json.dumps(event))
    phone = {"DEFAULT_AGENT_ID": "phone-agent", **SIMULATOR_VOICE_CONNECTORS}
    outcome = run_built(host_build, "SipMediaAppFunction", "sma_handler", path, ddb, simulator, **phone)
    response = outcome["response"]
    validate_response(response)
    assert [a["Type"] for a in response["Actions"]] == ["CallAndBridge"], response
    [action] = response["Actions"]
    assert action["Type"] == "CallAndBridge"
    [endpoint] = action["Parameters"]["Endpoints"]
    assert endpoint["Arn"] == SIMULATOR_VOICE_CONNECTORS["VOICE_CONNECTOR_ARN_US_WEST"]
    assert endpoint["Uri"].startswith("call-sim-")
    assert len(simulator.registrations()) == 1


def test_built_functions_hold_only_their_entry_modules(host_build: Path) -> None:
    for function_id, module in (
        ("SipMediaAppFunction", "sma_handler.py"),
        ("ChimeResourcesFunction", "chime_resources.py"),
        ("InboundFunction", "inbound_handler.py"),
        ("EventsFunction", "events_handler.py"),
    ):
        assert sorted(p.name for p in (host_build / function_id).iterdir()) == [module]
    for nested in ("VoiceConnectorUsWestStack", "SipMediaApplicationStack"):
        assert (host_build / nested / "template.yaml").is_file()


def test_arm64_build_ships_arm64_wheels(tmp_path: Path) -> None:
    if HOST_ARCH == "arm64":
        pytest.skip("the host build already is arm64")
    build = sam_build(tmp_path / "sam-build-arm64", "arm64", timeout=600)
    python = build / "MillisSipLayer" / "python"
    assert list((python / "pydantic_core").glob("*aarch64-linux-gnu.so"))
    assert not list((python / "pydantic_core").glob("*x86_64-linux-gnu.so"))
    assert_wheels_for(python, "arm64")
    assert_every_source_has_unchecked_hash_bytecode(python)


@pytest.mark.parametrize("name", ["inbound-route.json", "inbound-twilio-voice.json"])
def test_built_inbound_function_answers_a_sip_server_and_twilio(
    name: str, host_build: Path, ddb: DynamoDBLocal, simulator: MillisSimulator, tmp_path: Path
) -> None:
    simulator.clear()
    event = json.loads((EVENTS / name).read_text())
    token = json.loads((EVENTS / "env.json").read_text())["InboundFunction"]["TWILIO_AUTH_TOKEN"]
    # A new call from a caller with no pending registration (the ApiFunction test registered the events' caller).
    unique, number = uuid.uuid4().hex, "+1206" + str(uuid.uuid4().int)[:7]
    if event["resource"] == "/route":
        for name, value in (("call", unique), ("from", number)):
            event["queryStringParameters"][name] = value
            event["multiValueQueryStringParameters"][name] = [value]
    else:  # signed again, as Twilio's own validator signs
        params = dict(parse_qsl(event["body"]))
        params.update(CallSid=f"CA{unique}", From=number)
        event["body"] = urlencode(params)
        url = f"https://{event['requestContext']['domainName']}{event['requestContext']['path']}"
        event["headers"]["X-Twilio-Signature"] = RequestValidator(token).compute_signature(url, params)
    path = tmp_path / name
    path.write_text(json.dumps(event))
    phone = {"DEFAULT_AGENT_ID": "phone-agent", "TWILIO_AUTH_TOKEN": token}
    response = run_built(host_build, "InboundFunction", "inbound_handler", path, ddb, simulator, **phone)["response"]
    assert response["statusCode"] == 200, response
    if event["resource"] == "/route":
        assert response["body"].startswith("sip:call-sim-") and "?X-Millis-Call-Id=" in response["body"]
    else:
        assert "<Dial" in response["body"] and "<Sip>sip:call-sim-" in response["body"]
    assert len(simulator.issued) == 1


@pytest.mark.parametrize("platform", ["manylinux2014_aarch64", "manylinux2014_x86_64"])
def test_the_lock_matches_the_wheels_pip_downloads(platform: str, tmp_path: Path) -> None:
    """The compiled packages' wheels for each Lambda architecture, as pip picks them for the layer build,
    hash to values the layer lock holds."""
    from tests.template.test_supply_chain import LAYER_LOCK, parse_lock

    pins = parse_lock(LAYER_LOCK.read_text())
    wanted = [f"{name}=={pins[name].version}" for name in ("pydantic-core", "pynacl", "cffi")]
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    target = ["--platform", platform, "--implementation", "cp", "--python-version", "3.13", "--dest", str(tmp_path)]
    result = subprocess.run(
        [*pip, *target, *wanted],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    wheels = sorted(tmp_path.glob("*.whl"))
    assert len(wheels) == 3 and all(platform.split("_", 1)[1] in w.name for w in wheels), wheels
    for wheel in wheels:
        name = normalized_name(wheel.name.split("-")[0])
        digest = "--hash=sha256:" + hashlib.sha256(wheel.read_bytes()).hexdigest()
        assert digest in pins[name].hashes, wheel.name


def normalized_name(name: str) -> str:
    return name.replace("_", "-").lower()


def test_built_events_function_reads_a_stream_batch_from_the_built_layer(
    host_build: Path, ddb: DynamoDBLocal, simulator: MillisSimulator, tmp_path: Path
) -> None:
    # A batch of the table's other items only (a phone call's marker, an insert and its removal): nothing to put,
    # so no request leaves the machine; the handler answers Lambda's partial-batch response.
    marker = {"call_id": {"S": "tx#twilio#CA1#1"}, "kind": {"S": "transaction"}, "state": {"S": "pending"}}
    records = [
        {"eventID": "1", "eventName": "INSERT", "dynamodb": {"NewImage": marker, "SequenceNumber": "100"}},
        {"eventID": "2", "eventName": "REMOVE", "dynamodb": {"OldImage": marker, "SequenceNumber": "101"}},
    ]
    path = tmp_path / "stream.json"
    path.write_text(json.dumps({"Records": records}))
    outcome = run_built(
        host_build, "EventsFunction", "events_handler", path, ddb, simulator, EVENT_BUS_NAME="calls-bus"
    )
    assert outcome["response"] == {"batchItemFailures": []}
