"""The sample events in ``events/`` (what ``sam local invoke -e`` takes), loaded fresh for each use."""

from __future__ import annotations

import json
from typing import Any

from dev.template import ROOT

EVENTS = ROOT / "events"


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event
