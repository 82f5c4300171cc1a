"""The layout is the architecture: the core imports no SDK, nothing reaches back up (core <- adapters <- edges),
no edge imports another edge, and every entry module is a thin composition root."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "layers" / "millis_sip" / "millis_sip"
SDKS = ("boto3", "botocore", "httpx", "pydantic", "pydantic_core", "aws_lambda_powertools", "aws_xray_sdk")


def modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (lazy imports inside functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_importing_the_whole_core_loads_no_sdk_in_a_fresh_interpreter() -> None:
    core = [dotted(p) for p in modules(PACKAGE / "core")]
    script = (
        "import sys\n"
        f"for name in {core!r}: __import__(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {SDKS!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=PACKAGE.parent,
        env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]", result.stdout


@pytest.mark.parametrize("path", modules(PACKAGE / "core"), ids=lambda p: p.name)
def test_core_modules_import_only_the_standard_library_and_the_core(path: Path) -> None:
    ours = {name for name in imports(path) if name.split(".")[0] == "millis_sip"}
    assert all(name.startswith("millis_sip.core") for name in ours), ours
    third_party = {name for name in imports(path) if name.split(".")[0] not in sys.stdlib_module_names}
    assert third_party <= ours, third_party - ours


@pytest.mark.parametrize("path", modules(PACKAGE / "adapters"), ids=lambda p: p.name)
def test_adapters_never_import_an_edge(path: Path) -> None:
    assert not {name for name in imports(path) if name.startswith("millis_sip.edges")}


EDGES = sorted(
    p
    for p in (PACKAGE / "edges").iterdir()
    if (p.is_dir() and p.name != "__pycache__") or (p.suffix == ".py" and p.name != "__init__.py")
)


@pytest.mark.parametrize("edge", EDGES, ids=lambda p: p.stem)
def test_no_edge_imports_another_edge(edge: Path) -> None:
    own = f"millis_sip.edges.{edge.stem}"
    for path in modules(edge) if edge.is_dir() else [edge]:
        foreign = {n for n in imports(path) if n.startswith("millis_sip.edges.") and not n.startswith(own)}
        assert not foreign, (path.name, foreign)


# The deploy-time custom resource (chime_resources.py) is its own small program, not an edge of the core.
ENTRY_MODULES = sorted(p for p in (ROOT / "functions").glob("*/*.py") if p.name != "chime_resources.py")
ROOT_FUNCTIONS = {"build", "lambda_handler"}


@pytest.mark.parametrize("path", ENTRY_MODULES, ids=lambda p: p.name)
def test_entry_modules_are_thin_composition_roots(path: Path) -> None:
    tree = ast.parse(path.read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "lambda_handler" in functions
    assert functions <= ROOT_FUNCTIONS, functions - ROOT_FUNCTIONS
    assert "millis_sip.wiring" in imports(path)  # the graph is built there (one composition root)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert all(any(ast.unparse(d).startswith("dataclass") for d in c.decorator_list) for c in classes)
    assert len(path.read_text().splitlines()) <= 150


def test_the_call_control_clients_load_only_when_a_function_places_a_call() -> None:
    """The carriers' REST clients (outbound calls) are imported inside the function that builds them, never at a
    module's top: the phone functions' cold start does not pay for them."""
    at_top = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        if "call_control" in path.parts:
            continue
        for node in ast.parse(path.read_text()).body:  # module level only
            names = imports_of(node)
            if any(name.startswith("millis_sip.adapters.call_control") for name in names):
                at_top.append(path.name)
    assert at_top == []


def imports_of(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if isinstance(node, ast.ImportFrom) and node.module:
        return {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return set()
