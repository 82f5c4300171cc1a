"""Footprint: peak memory of a warm function (a process of its own running the built artifact against
DynamoDB Local and the simulator), against the floor process; zipped size of the built layer and functions."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path

from dev.bench.cold_start import FLOOR, artifact_env, snippet
from dev.events import EVENTS

_WARM = """
import json
from types import SimpleNamespace
{imports}
ctx = SimpleNamespace(function_name="bench", memory_limit_in_mb=512, aws_request_id="bench",
    invoked_function_arn="arn:aws:lambda:us-west-2:123456789012:function:bench",
    get_remaining_time_in_millis=lambda: 20000)
event = json.load(open({event!r}))
for i in range(50):
    {invoke}
# VmHWM: this process's own peak (ru_maxrss would carry the parent's peak across fork and exec)
print("MAXRSS_KB", next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")))
"""


def _peak(code: str, env: Mapping[str, str]) -> float:
    return snippet(code, env, "MAXRSS_KB", timeout=300) / 1024


def peak_memory_mb(build: Path, env: Mapping[str, str]) -> dict[str, float]:
    base = artifact_env(build, env)
    floor = _peak(
        _WARM.format(imports=FLOOR.strip(), event=str(EVENTS / "api-create-call.json"), invoke="pass"),
        base,
    )
    api = _peak(
        _WARM.format(
            imports="import api_handler",
            event=str(EVENTS / "api-create-call.json"),
            invoke="api_handler.lambda_handler(event, ctx)",
        ),
        base,
    )
    sma = _peak(
        _WARM.format(
            imports="import sma_handler, uuid",
            event=str(EVENTS / "sma-new-inbound-call.json"),
            invoke='event["CallDetails"]["TransactionId"] = str(uuid.uuid4()); sma_handler.lambda_handler(event, ctx)',
        ),
        base,
    )
    inbound = _peak(
        _WARM.format(
            imports=_RESIGN.strip(),
            event=str(EVENTS / "inbound-twilio-voice.json"),
            invoke="inbound_handler.lambda_handler(resigned(event), ctx)",
        ),
        base,
    )
    return {"floor_mb": floor, "ApiFunction_mb": api, "SipMediaAppFunction_mb": sma, "InboundFunction_mb": inbound}


# A new Twilio call each time, signed with the benchmark's token (TWILIO_AUTH_TOKEN in the environment).
_RESIGN = """
import inbound_handler, os, uuid
from urllib.parse import parse_qsl, urlencode
from millis_sip.edges.carriers.twilio import signature
def resigned(template):
    e = json.loads(json.dumps(template))
    p = dict(parse_qsl(e["body"]), CallSid="CA" + uuid.uuid4().hex, From="+1206" + str(uuid.uuid4().int)[:7])
    e["body"] = urlencode(p)
    url = "https://" + e["requestContext"]["domainName"] + e["requestContext"]["path"]
    e["headers"]["X-Twilio-Signature"] = signature(url, list(p.items()), os.environ["TWILIO_AUTH_TOKEN"])
    return e
"""


def zipped_sizes(build: Path) -> dict[str, float]:
    """MiB of each artifact zipped as SAM would upload it (deflate)."""
    sizes = {}
    for name in ("MillisSipLayer", "ApiFunction", "SipMediaAppFunction", "InboundFunction", "ChimeResourcesFunction"):
        folder = build / name
        if not folder.is_dir():
            continue
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(folder))
        sizes[name] = buffer.tell() / (1024 * 1024)
    return sizes


def unzipped_layer_packages(build: Path, top: int = 8) -> dict[str, float]:
    python = build / "MillisSipLayer" / "python"
    sizes: dict[str, float] = {}
    for entry in python.iterdir():
        if entry.is_dir() and not entry.name.endswith(".dist-info"):
            sizes[entry.name] = sum(p.stat().st_size for p in entry.rglob("*") if p.is_file()) / (1024 * 1024)
    return dict(sorted(sizes.items(), key=lambda kv: kv[1], reverse=True)[:top])
