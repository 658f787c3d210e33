"""`rules test`: a rule file against the example traces written beside it.

A rule file's ``tests:`` list names traces (paths inside the rule file's folder) and how many
findings each rule of the file must give on each (0 when not written): positive cases (the
rule fires) and negative ones (it does not). A trace is anything `blkreplay check` reads, or a
``.jsonl`` file of trace rows (one JSON object per line, the trace schema's columns), which is
easier to write and review by hand.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from analyzer.check import check
from analyzer.lang.ruleset import compile_file
from tracer import tracedir
from tracer.errors import InputError
from tracer.schema import COLUMN_NAMES, from_pylist

#: Bounds on a .jsonl example trace.
MAX_ROWS = 100_000
MAX_LINE = 10_000


@dataclass(frozen=True)
class ExampleResult:
    """One test of a rule file: what each rule was expected to find and found."""

    loc: str
    trace: str
    expected: dict[str, int]
    found: dict[str, int]
    not_applicable: tuple[str, ...]

    @property
    def ok(self) -> bool:
        named_na = [r for r in self.not_applicable if r in self.named]
        return self.expected == self.found and not named_na

    #: Rules the test names explicitly (a named rule that cannot apply is a failed test).
    named: frozenset[str] = frozenset()

    def describe(self) -> str:
        if self.ok:
            return f"{self.loc}: ok: {self.trace}"
        parts = [f"{r}: expected {self.expected[r]}, found {self.found[r]}"
                 for r in self.expected if self.expected[r] != self.found[r]]
        parts += [f"{r}: not applicable to this trace" for r in self.not_applicable if r in self.named]
        return f"{self.loc}: FAILED: {self.trace}: " + "; ".join(parts)


def read_jsonl_rows(path: Path) -> list[dict]:
    """Trace rows from a .jsonl example (bounded; unknown columns are errors naming the line)."""
    rows: list[dict] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read example trace: {exc}", path=path) from None
    known = set(COLUMN_NAMES)
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE:
            raise InputError(f"a row longer than {MAX_LINE} characters", path=path, line=n)
        if len(rows) >= MAX_ROWS:
            raise InputError(f"more than {MAX_ROWS} rows in an example trace", path=path, line=n)
        try:
            row = json.loads(line)  # one flat row per line: bounded by MAX_LINE
        except (ValueError, RecursionError) as exc:
            raise InputError(f"not a JSON object: {exc}", path=path, line=n) from None
        if not isinstance(row, dict):
            raise InputError("a row is a JSON object", path=path, line=n)
        unknown = sorted(set(row) - known)
        if unknown:
            raise InputError(f"unknown column {unknown[0]!r}", path=path, line=n)
        rows.append(row)
    return rows


def run_examples(rule_file: str | Path) -> list[ExampleResult]:
    """Run every test of `rule_file` (an `InputError` if it has none or a trace is unusable)."""
    path = Path(rule_file)
    compiled = compile_file(path)
    if not compiled.tests:
        raise InputError("the rule file has no 'tests:' (traces beside it and the findings "
                         "expected on each)", path=path)
    ids = [r.id for r in compiled.rules]
    out: list[ExampleResult] = []
    with tempfile.TemporaryDirectory(prefix="blkreplay-rules-test-") as tmp:
        for i, t in enumerate(compiled.tests):
            trace = path.parent / t.trace
            target = trace
            if trace.suffix == ".jsonl":
                rows = read_jsonl_rows(trace)
                try:
                    table = from_pylist(rows, "sim")
                except (ValueError, TypeError) as exc:
                    raise InputError(f"bad example rows: {exc}", path=trace) from None
                target = Path(tmp) / f"example-{i}.parquet"
                tracedir.write_table(table, target)
            result = check([str(target)], rule_files=[str(path)], only_files=True)
            found = Counter(f.rule for f in result.findings)
            expected = {r: 0 for r in ids} | dict(t.expect)
            out.append(ExampleResult(
                loc=t.loc, trace=t.trace, expected=expected,
                found={r: found.get(r, 0) for r in ids},
                not_applicable=tuple(result.not_applicable),
                named=frozenset(dict(t.expect)),
            ))
    return out
