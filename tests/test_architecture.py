"""The layering the README promises, enforced: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What any module of `analyzer` (the CLI included) may use of `tracer`: the trace format,
#: the errors, the trace directory and the QEMU facts. `from tracer import __version__`
#: shows up as "tracer" and "tracer.__version__".
ANALYZER_MAY_IMPORT_FROM_TRACER = {
    "tracer", "tracer.__version__", "tracer.schema", "tracer.errors", "tracer.tracedir", "tracer.qemu",
    "tracer.safejson",
}
#: The only exceptions, each one module by name: the capture workflow wraps the live QMP
#: capture, and `blkreplay record` runs the simulator.
TRACER_EXCEPTIONS = {
    "analyzer/capture.py": {"tracer.capture"},
    "analyzer/cli/record.py": {"tracer.sim"},
}
#: Only the command line prints results, so only it imports their renderers.
RENDERERS = "analyzer.render"


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


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _parts(path: Path) -> tuple[str, ...]:
    return path.relative_to(ROOT / "analyzer").parts


def _is(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


@pytest.mark.parametrize("path", _modules("tracer"), ids=_rel)
def test_tracer_never_imports_the_analyzer(path: Path):
    assert not {n for n in _imports(path) if n.split(".")[0] == "analyzer"}


@pytest.mark.parametrize("path", _modules("analyzer"), ids=_rel)
def test_analyzer_uses_only_the_trace_format_of_tracer_save_the_listed_exceptions(path: Path):
    tracer = {n for n in _imports(path) if n.split(".")[0] == "tracer"}
    allowed = TRACER_EXCEPTIONS.get(_rel(path), set())
    beyond = {n for n in tracer - ANALYZER_MAY_IMPORT_FROM_TRACER if not any(_is(n, a) for a in allowed)}
    assert not beyond, f"{_rel(path)} imports {sorted(beyond)} of tracer"


def test_the_exceptions_exist_and_use_what_they_are_allowed():
    for rel, allowed in TRACER_EXCEPTIONS.items():
        names = _imports(ROOT / rel)
        assert all(any(_is(n, a) for n in names) for a in allowed), (rel, allowed)


@pytest.mark.parametrize(
    "path", [p for p in _modules("analyzer") if _parts(p)[0] != "cli"], ids=_rel
)
def test_analyzer_core_never_imports_the_cli(path: Path):
    assert not {n for n in _imports(path) if _is(n, "analyzer.cli")}


@pytest.mark.parametrize(
    "path", [p for p in _modules("analyzer") if _parts(p)[0] not in ("cli", "render")], ids=_rel
)
def test_only_the_cli_imports_the_renderers_of_results(path: Path):
    assert not {n for n in _imports(path) if _is(n, RENDERERS)}


@pytest.mark.parametrize(
    "path", [p for p in _modules("analyzer") if _parts(p)[0] not in ("cli", "report")], ids=_rel
)
def test_only_the_cli_imports_the_report_renderers(path: Path):
    assert not {n for n in _imports(path) if _is(n, "analyzer.report")}



def _error_classes(path: Path) -> list[str]:
    """Public classes of `path` that derive from an exception (by their bases' names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
            if any(b.endswith(("Error", "Exception")) for b in bases):
                found.append(node.name)
    return found


@pytest.mark.parametrize(
    "path", [p for p in _modules("tracer") + _modules("analyzer") if _rel(p) != "tracer/errors.py"],
    ids=_rel,
)
def test_every_error_class_lives_in_tracer_errors(path: Path):
    assert not _error_classes(path), f"{_rel(path)} defines {_error_classes(path)}"


def test_the_errors_module_holds_the_whole_tree():
    names = set(_error_classes(ROOT / "tracer" / "errors.py"))
    assert {"RecorderError", "FieldError", "UnknownFormatError"} <= names
    doc = ast.get_docstring(ast.parse((ROOT / "tracer" / "errors.py").read_text(encoding="utf-8")))
    assert all(name in doc for name in names - {"BlkreplayError"}), "tree drawing is out of date"
