"""The benchmark suite (`make bench`, README "Performance")."""

from __future__ import annotations

import json
import sys
from typing import Any

from dev.functions import LAYER_DIR
from dev.template import ROOT

if str(LAYER_DIR) not in sys.path:
    sys.path.insert(0, str(LAYER_DIR))

EVENTS = ROOT / "events"


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event
