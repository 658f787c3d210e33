"""Rule files as a set of compiled rules: loading, the default file of restated built-ins, and
running them over a batch (one predicate cache shared by every rule of the batch)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from analyzer.lang.compile import RuleFile, compile_text
from analyzer.lang.loader import RuleFileError, load_text, read_file
from analyzer.lang.predicates import Pred
from analyzer.lang.rule import LangRule
from analyzer.result import Finding
from analyzer.steps import Steps
from tracer.errors import InputError

#: The name the default rule file is shown under.
BUILTIN_NAME = "builtin.yaml"


def builtin_text() -> str:
    """The default rule file: the built-in rules the language can state (package data)."""
    return resources.files("analyzer.lang").joinpath(BUILTIN_NAME).read_text(encoding="utf-8")


def compile_file(path: str | Path) -> RuleFile:
    """The compiled rule file at `path`; every mistake is listed in the `RuleFileError`."""
    text = read_file(path)
    return compile_text(text, str(path), load_text(text, str(path)))


def compile_builtin() -> RuleFile:
    text = builtin_text()
    return compile_text(text, BUILTIN_NAME, load_text(text, BUILTIN_NAME))


def lint(path: str | Path) -> list[str]:
    """Every mistake in the rule file at `path`, one "file:line:col: what" line each ([] when
    it is sound). Unreadable files are an `InputError`."""
    try:
        compile_file(path)
    except RuleFileError as exc:
        return list(exc.problems)
    return []


@dataclass(frozen=True)
class RuleSet:
    """Compiled rules from rule files, in file order then rule order."""

    rules: tuple[LangRule, ...] = ()
    files: tuple[RuleFile, ...] = ()

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def select(self, ids: Iterable[str]) -> RuleSet:
        wanted = set(ids)
        return RuleSet(tuple(r for r in self.rules if r.id in wanted), self.files)

    def columns(self) -> set[str]:
        return {c for r in self.rules for c in r.columns}

    def run(self, steps: Steps) -> list[Finding]:
        """Every finding of every rule over one batch of whole VMs, each BLOCK_IO_ERROR at its
        raise as the built-in rules read it (`Steps.raised`)."""
        steps = steps.raised
        cache: dict[Pred, np.ndarray] = {}
        out: list[Finding] = []
        for r in self.rules:
            out.extend(r(steps, cache))
        return out


def load_rules(paths: Sequence[str | Path] = (), *, builtin: bool = False) -> RuleSet:
    """The rules of the files at `paths` (and, with `builtin`, the default file first).

    A rule id given in two files is an `InputError` naming both places."""
    files = [compile_builtin()] if builtin else []
    files.extend(compile_file(p) for p in paths)
    seen: dict[str, str] = {}
    rules: list[LangRule] = []
    for f in files:
        for spec in f.rules:
            if spec.id in seen:
                raise InputError(f"{spec.source}: rule id {spec.id!r} is also defined at {seen[spec.id]}")
            seen[spec.id] = spec.source
            rules.append(LangRule(spec))
    return RuleSet(tuple(rules), tuple(files))
