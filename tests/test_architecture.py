"""The layering the README promises, enforced: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ANALYZER_MAY_IMPORT_FROM_TRACER = {"tracer", "tracer.schema", "tracer.errors", "tracer.tracedir", "tracer.qemu"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module in ("tracer", "analyzer"):  # `from tracer import tracedir`
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("tracer"), ids=lambda p: str(p.relative_to(ROOT)))
def test_tracer_never_imports_the_analyzer(path: Path):
    assert not {n for n in _imports(path) if n.split(".")[0] == "analyzer"}


@pytest.mark.parametrize(
    "path",
    [p for p in _modules("analyzer") if "cli" not in p.relative_to(ROOT / "analyzer").parts],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_analyzer_core_uses_only_the_trace_format_of_tracer_and_never_the_cli(path: Path):
    names = _imports(path)
    tracer = {n for n in names if n.split(".")[0] == "tracer"}
    # `from tracer import tracedir` shows up as "tracer" and "tracer.tracedir": both allowed
    assert tracer <= ANALYZER_MAY_IMPORT_FROM_TRACER | {"tracer.__version__"}, tracer
    assert not {n for n in names if n.startswith("analyzer.cli")}
    if "report" not in path.relative_to(ROOT / "analyzer").parts:
        assert not {n for n in names if n.startswith("analyzer.report")}
