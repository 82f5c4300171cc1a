"""`sam build` from Python, as the build tests and the benchmarks run it: the venv's SAM CLI, with the venv's
python3.13 on the PATH (SAM's Python builder looks for it there, and the layer's Makefile installs the lock and
compiles the bytecode with it), for one architecture."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from dev.template import ROOT

BIN = Path(sys.executable).parent
HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]


class BuildFailed(RuntimeError):
    """`sam build` exited non-zero; the message holds the end of its output."""


def sam_build(build_dir: Path, arch: str = HOST_ARCH, *, timeout: float = 900) -> Path:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "SAM_CLI_TELEMETRY": "0",
        "SAM_CLI_DISABLE_CHECK_UPDATE": "1",
    }
    result = subprocess.run(
        [str(BIN / "sam"), "build", "--build-dir", str(build_dir), "--parameter-overrides", f"Architecture={arch}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise BuildFailed(result.stdout[-3000:] + result.stderr[-3000:])
    return build_dir
