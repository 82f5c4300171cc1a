"""The locks: every package the layer ships and every dev tool is pinned to one release and installed only
if its file matches a hash in the lock (`make lock` writes them from the requirements*.in beside them)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.template
LAYER_LOCK = ROOT / "layers" / "millis_sip" / "requirements.txt"
DEV_LOCK = ROOT / "requirements-dev.txt"
LOCKS = {"layer": LAYER_LOCK, "dev": DEV_LOCK}
INPUTS = {"layer": ROOT / "layers" / "millis_sip" / "requirements.in", "dev": ROOT / "requirements-dev.in"}
SHA256 = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


@dataclass
class Pin:
    name: str
    version: str
    hashes: list[str] = field(default_factory=list)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(text: str) -> list[str]:
    """Logical lines (continuations joined), comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = (re.sub(r"(^|\s)#.*$", "", line).strip() for line in joined.splitlines())
    return [line for line in lines if line]


def parse_lock(text: str) -> dict[str, Pin]:
    pins: dict[str, Pin] = {}
    for line in requirement_lines(text):
        requirement, _, rest = line.partition(" --hash")
        requirement = requirement.split(";")[0].strip()  # an environment marker (e.g. sys_platform == 'win32')
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s=<>!~;]+)", requirement)
        assert match, f"not pinned with ==: {line[:120]}"
        hashes = shlex.split("--hash" + rest) if rest else []
        assert hashes and all(SHA256.match(h) for h in hashes), f"no sha256 hash: {line[:120]}"
        name = normalized(match[1])
        assert name not in pins, f"{name} pinned twice"
        pins[name] = Pin(name, match[2], hashes)
    return pins


def pins_of(which: str) -> dict[str, Pin]:
    return parse_lock(LOCKS[which].read_text())


@pytest.mark.parametrize("which", sorted(LOCKS))
def test_every_line_of_the_lock_is_pinned_and_hashed(which: str) -> None:
    pins = pins_of(which)
    assert len(pins) >= {"layer": 20, "dev": 100}[which]
    assert "make lock" in LOCKS[which].read_text().splitlines()[1]  # the command that writes it


@pytest.mark.parametrize("which", sorted(LOCKS))
def test_the_lock_pins_what_its_input_pins(which: str) -> None:
    pins = pins_of(which)
    for line in requirement_lines(INPUTS[which].read_text()):
        if line.startswith(("-r ", "-c ")):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]+\])?==(\S+)", line)
        assert match, f"{INPUTS[which].name}: pin each direct requirement with ==: {line}"
        assert pins[normalized(match[1])].version == match[3], line


def test_the_lock_parser_rejects_what_it_must() -> None:
    hashed = " --hash=sha256:" + "a" * 64
    assert parse_lock("httpx==0.28.1 \\\n" + hashed + "\n    # via x\n")["httpx"].version == "0.28.1"
    for bad in ("httpx>=0.28" + hashed, "httpx==0.28.1", "httpx==0.28.1 --hash=md5:abc", "-e ." + hashed):
        with pytest.raises(AssertionError):
            parse_lock(bad)


def test_the_layer_lock_holds_the_compiled_wheels_of_both_architectures() -> None:
    # A compiled package has one wheel per platform and Python: hashes for its sdist alone would fail the
    # build. The arm64 and host build tests (test_build.py) prove the hashes match: pip installs the aarch64 and
    # x86_64 wheels of these under --require-hashes, and test_the_lock_matches_the_wheels_pip_downloads compares.
    pins = pins_of("layer")
    for name in ("pydantic-core", "pynacl", "cffi"):
        assert len(pins[name].hashes) >= 4, name
    assert {"aws-lambda-powertools", "httpx", "pydantic", "boto3", "botocore", "aws-xray-sdk"} <= set(pins)


def test_the_dev_environment_installs_the_layer_lock_versions() -> None:
    # Tests run what Lambda runs: requirements-dev.in constrains the resolution with the layer's lock.
    layer, dev = pins_of("layer"), pins_of("dev")
    assert {name: dev[name].version for name in layer} == {name: pin.version for name, pin in layer.items()}
    assert "-c layers/millis_sip/requirements.txt" in requirement_lines(INPUTS["dev"].read_text())
    assert {"uv", "pip"} <= set(dev)  # make lock's tool, and the pip make install upgrades to


def test_every_install_checks_hashes() -> None:
    bootstrap = (ROOT / "dev" / "bootstrap.sh").read_text()
    installs = [line for line in bootstrap.splitlines() if "-m pip install" in line]
    assert installs and all("--require-hashes -r requirements-dev.txt" in line for line in installs)
    layer_make = (ROOT / "layers" / "millis_sip" / "Makefile").read_text()
    command = re.search(r"-m pip install(.*?)-r requirements\.txt", layer_make, flags=re.DOTALL)
    assert command
    for flag in ("--require-hashes", "--only-binary=:all:", "--implementation cp", "--python-version 3.13"):
        assert flag in command[1], flag
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lock: ", makefile, flags=re.MULTILINE)
    assert "--generate-hashes" in makefile and "--universal" in makefile
