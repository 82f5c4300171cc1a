"""Imports a function's entry module the way Lambda does: the layer's ``python/`` and the function's
folder on ``sys.path``, configuration read from the environment at import."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

from dev.template import ROOT

LAYER_DIR = ROOT / "layers" / "millis_sip"
FUNCTION_DIRS = {
    "api_handler": ROOT / "functions" / "api",
    "sma_handler": ROOT / "functions" / "sip_media_app",
    "inbound_handler": ROOT / "functions" / "inbound",
    "chime_resources": ROOT / "functions" / "chime_resources",
    "events_handler": ROOT / "functions" / "events",
}


def load_function(
    module: str = "api_handler",
    env: Mapping[str, str] | None = None,
    *,
    layer_dir: Path = LAYER_DIR,
    function_dir: Path | None = None,
) -> ModuleType:
    """(Re)import ``module`` with ``env`` applied to os.environ first, as a fresh execution environment."""
    if env:
        os.environ.update(env)
    for path in (layer_dir, function_dir or FUNCTION_DIRS[module]):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    if module in sys.modules:
        return importlib.reload(sys.modules[module])
    return importlib.import_module(module)
