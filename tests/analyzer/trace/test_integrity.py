"""Integrity facts: the pure clock check over arrays, their wording as findings, a trace that
travels without its pending digests, and a reader that knows no rules."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np

from analyzer import load
from analyzer.rules.integrity import findings
from analyzer.trace import ClockBackwards, RepeatedSeq, TruncatedInput, clock_back
from tests.analyzer.trace.test_load import broken_trace
from tracer import tracedir

ROOT = Path(__file__).resolve().parents[3]


def test_clock_back_pairs_each_step_with_the_previous_one_of_its_thread() -> None:
    # rows in replay order: thread 0 goes 10, 30, 20 (back), thread 1 goes 25, 5 (back)
    thread = np.array([0, 1, 0, 0, 1], dtype=np.int64)
    ts = np.array([10, 25, 30, 20, 5], dtype=np.int64)
    earlier, later, first = clock_back(thread, ts)
    assert earlier.tolist() == [2, 1] and later.tolist() == [3, 4]
    assert first.tolist() == [0, 1]
    assert [len(a) for a in clock_back(thread[:0], ts[:0])] == [0, 0, 0]


def test_facts_are_worded_as_the_integrity_findings() -> None:
    facts = [
        ClockBackwards("vm0", "main", 4, 900, 7, 100, ("a.c:1",)),
        RepeatedSeq("vm0", 3, 50, "mgmt", 2, ("/t/a.parquet", "/t/b.parquet")),
        TruncatedInput("/t", ("vm0", "vm1")),
        TruncatedInput("/u", ()),
    ]
    out = findings(facts)
    assert [(f.rule, f.severity, f.vm, f.seq) for f in out] == [
        ("ts-monotonic-per-thread", "warning", "vm0", (4, 7)),
        ("seq-unique", "error", "vm0", (3,)),
        ("trace-truncated", "warning", "vm0", ()),
        ("trace-truncated", "warning", "vm1", ()),
        ("trace-truncated", "warning", "", ()),
    ]
    assert out[0].message == "thread 'main' went back in time by 800 ns: seq 4 at 900, then seq 7 at 100"
    assert out[0].src == ("a.c:1",) and out[0].ts_ns == 900 and out[0].thread == "main"
    assert out[1].message == "seq 3 occurs 2 times, in /t/a.parquet, /t/b.parquet"
    assert out[2].src == ("/t",) and "has no completion manifest" in out[2].message


def test_a_trace_without_its_digests_travels_without_them(tmp_path: Path) -> None:
    tracedir.write_table(broken_trace().table(), tmp_path / "t.parquet")
    trace = load([tmp_path / "t.parquet"])
    bare = trace.without_digests()
    assert [i.sha256 for i in bare.inputs] == [""]
    assert pickle.loads(pickle.dumps(bare)).units == trace.units
    assert len(pickle.loads(pickle.dumps(trace)).inputs[0].sha256) == 64  # waits, hands them over


def test_the_trace_reader_knows_no_rules() -> None:
    for path in sorted((ROOT / "analyzer" / "trace").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("analyzer.rules"), path
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("analyzer.rules") for a in node.names), path
