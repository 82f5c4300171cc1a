"""`make demo`, the README's first command, run as a user runs it (on a free port): it must end with Demo OK
and leave nothing running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_the_demo_runs_the_http_and_the_phone_call_script(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "AWS_REGION": "us-west-2"}
    result = subprocess.run(
        [sys.executable, "-m", "dev.demo", "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Demo OK: registered, read back and looked up a call; bridged a phone call." in result.stdout
    assert "NEW_INBOUND_CALL -> CallAndBridge" in result.stdout
