"""Cut a carrier's published OpenAPI description down to the operations the stack calls, with every component
they reference, so the tests can serve it with Prism (npm @stoplight/prism-cli) and validate each request the
stack sends against the carrier's own description.

    python -m dev.openapi_subset SPEC.json OUT.json PATH [PATH ...] [--explode FIELD ...]

``--explode`` states, for a form field that is an array, the encoding OpenAPI already defines as the default
for application/x-www-form-urlencoded (style form, explode true: the field repeated), which Prism does not
apply unless it is written out. Nothing else of the description changes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value)
            else:
                _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def subset(spec: dict[str, Any], paths: list[str], explode: list[str]) -> dict[str, Any]:
    kept = {path: spec["paths"][path] for path in paths}
    wanted: set[str] = set()
    _refs(kept, wanted)
    components: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    while wanted - seen:
        ref = min(wanted - seen)
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)
        node = spec["components"][kind][name]
        components.setdefault(kind, {})[name] = node
        _refs(node, wanted)
    if "securitySchemes" in spec.get("components", {}):
        components["securitySchemes"] = spec["components"]["securitySchemes"]
    for operations in kept.values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            form = operation.get("requestBody", {}).get("content", {}).get("application/x-www-form-urlencoded")
            if form is None:
                continue
            fields = form.get("schema", {}).get("properties", {})
            encoding = {name: {"style": "form", "explode": True} for name in explode if name in fields}
            if encoding:
                form["encoding"] = {**form.get("encoding", {}), **encoding}
    out = {key: value for key, value in spec.items() if key not in ("paths", "components")}
    return {**out, "paths": kept, "components": components}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--explode", nargs="*", default=[])
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text())
    args.out.write_text(json.dumps(subset(spec, args.paths, args.explode), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
