"""The worked examples of docs/rules-language.md (traces/rules/examples.yaml): their own tests
pass, they catch what they should on simulated and real traces, and the clean ones pass."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from analyzer import check
from analyzer.importers import import_traces
from analyzer.lang.examples import run_examples
from tracer.errors import InputError

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "traces" / "rules" / "examples.yaml"
TRACES = REPO / "traces"
#: Simulator traces whose variant has no defect (truth.json breaks nothing).
CLEAN_SIM = ("fixed", "sample")
REAL = {
    "qemu-7.2-dataplane": ("qemu-7.2/a-stop-eio-dataplane", ["qmp-transcript.jsonl", "trace.log"]),
    "qemu-7.2-report": ("qemu-7.2/c-report", ["qmp-transcript.jsonl", "trace.log"]),
    "qemu-10.0-dataplane": ("qemu-10.0/a-stop-eio-dataplane", ["qmp-transcript.jsonl", "trace.log"]),
    "qemu-10.0-report": ("qemu-10.0/c-report", ["qmp-transcript.jsonl", "trace.log"]),
    "libvirt-9.0": ("libvirt-9.0/a-stop-eio", ["libvirtd.log"]),
    "libvirt-11.3": ("libvirt-11.3/a-stop-eio", ["libvirtd.log"]),
}


def examples(paths) -> list:
    return check([str(p) for p in paths], rule_files=[str(EXAMPLES)], only_files=True)


def test_the_example_file_passes_its_own_tests():
    results = run_examples(EXAMPLES)
    assert len(results) == 6
    assert [r.describe() for r in results if not r.ok] == []
    # Positive and negative cases: every rule fires somewhere and is silent on the clean trace.
    fired = {rid for r in results for rid, n in r.found.items() if n}
    assert fired == set(results[0].found)
    assert sum(results[0].found.values()) == 0


def test_a_wrong_expectation_fails_and_says_what(tmp_path):
    text = EXAMPLES.read_text(encoding="utf-8").replace("findings: {no-resume-while-failing: 1}",
                                                        "findings: {no-resume-while-failing: 2}")
    (tmp_path / "examples").mkdir()
    for f in (EXAMPLES.parent / "examples").iterdir():
        (tmp_path / "examples" / f.name).write_bytes(f.read_bytes())
    path = tmp_path / "ex.yaml"
    path.write_text(text, encoding="utf-8")
    bad = [r.describe() for r in run_examples(path) if not r.ok]
    assert bad == [f"{path}:115:5: FAILED: examples/no-reset.jsonl: no-resume-while-failing: expected 2, found 1"]


def test_a_rule_file_without_tests_is_an_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("rules: []\n", encoding="utf-8")
    with pytest.raises(InputError, match="has no 'tests:'"):
        run_examples(path)


def test_example_rows_are_checked(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"seq": 0, "colour": 1}\n', encoding="utf-8")
    path = tmp_path / "r.yaml"
    path.write_text("rules: []\ntests:\n  - trace: t.jsonl\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"t.jsonl, line 1: unknown column 'colour'"):
        run_examples(path)


def test_a_test_trace_stays_inside_the_rule_files_folder(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("rules: []\ntests:\n  - trace: ../../etc/passwd\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"r.yaml:3:12: a test trace is a path inside the rule file's folder"):
        run_examples(path)


@pytest.mark.parametrize("name", CLEAN_SIM)
def test_clean_simulator_traces_pass(name):
    result = examples([TRACES / name])
    assert [f for f in result.findings if f.severity == "error"] == []
    assert result.verdict == "pass"


def test_no_reset_is_caught_on_the_simulator_trace():
    result = examples([TRACES / "no-reset"])
    found = [f for f in result.findings if f.rule == "no-resume-while-failing"]
    assert found and result.verdict == "fail"
    assert all(f.message.startswith("RESUME at seq ") and "never reset" in f.message for f in found)


def _pauses(path: Path) -> dict[str, np.ndarray]:
    """Independent count: per VM, the timestamps of runstate rows going running -> io-error."""
    t = pq.read_table(path if path.is_file() else sorted(path.glob("*.parquet")),
                      columns=["vm", "kind", "runstate", "prev_runstate", "ts_ns"]).to_pandas()
    t = t[(t.kind == "runstate") & (t.runstate == "io-error") & (t.prev_runstate == "running")]
    return {vm: np.sort(g.ts_ns.to_numpy()) for vm, g in t.groupby("vm", observed=True)}


def _over_budget(ts: np.ndarray, more_than: int = 3, window_ns: int = 600 * 10**9) -> bool:
    return any(ts[j] - ts[j - more_than] <= window_ns for j in range(more_than, len(ts)))


@pytest.mark.parametrize("name", ["sample", "fixed", "no-reset", "resume-late"])
def test_the_pause_budget_agrees_with_an_independent_count(name):
    result = examples([TRACES / name])
    flagged = {f.vm for f in result.findings if f.rule == "io-error-pause-budget"}
    assert flagged == {vm for vm, ts in _pauses(TRACES / name).items() if _over_budget(ts)}


@pytest.mark.parametrize("sample", sorted(REAL))
def test_real_captures_pass(samples_dir, tmp_path, sample):
    folder, names = REAL[sample]
    out = tmp_path / "t.parquet"
    import_traces([samples_dir / folder / n for n in names], out)
    result = examples([out])
    assert [f for f in result.findings if f.severity == "error"] == []
    budget = {f.vm for f in result.findings if f.rule == "io-error-pause-budget"}
    assert budget == {vm for vm, ts in _pauses(out).items() if _over_budget(ts)}
    assert Counter(f.rule for f in result.findings) - Counter({"io-error-pause-budget": len(budget)}) == Counter()
