"""The report's context windows are the replay view (`analyzer.replay.steps_around`), computed
in one pass: same rows, same reconstructed state, on real simulated traces of every variant."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import analyzer
from analyzer.replay import steps_around
from analyzer.report.context import context_windows, replay_view
from analyzer.report.source import as_steps, read_steps
from tracer.sim import SimConfig, record


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    base = tmp_path_factory.mktemp("ctx")
    out = {}
    for variant, extra in (("fixed", {}), ("sync-stop", {}), ("no-reset", {}),
                           ("resume-late", {"vms": 2})):
        path = base / variant
        record(SimConfig(variant=variant, seed=3, duration_s=0.04, error_rate=0.01, **extra), path)
        out[variant] = path
    return out


def _normalized(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    return frame.astype(object).where(frame.notna(), None)


@pytest.mark.parametrize("variant", ["fixed", "sync-stop", "no-reset", "resume-late"])
def test_view_equals_steps_around(traces, variant):
    path = traces[variant]
    steps = read_steps([path])
    batch = as_steps(steps)
    result = analyzer.check([path])
    rule_order = [r.id for r in result.rules]
    from analyzer.report.context import _marks  # the findings column, built from the result

    marks = _marks(result.findings, rule_order)
    codes, vms = pd.factorize(steps["vm"], sort=False)
    rng = np.random.default_rng(0)
    compared = marked = 0
    for vm_code, vm in enumerate(vms):
        rows = np.flatnonzero(codes == vm_code)
        start, end = int(rows[0]), int(rows[-1]) + 1
        interesting = steps.index[(steps["kind"] != "io_submit") & (codes == vm_code)].to_numpy()
        evidence = [steps.index[(codes == vm_code) & (steps["seq"] == f.seq[0])][0]
                    for f in result.findings if f.vm == vm and f.seq][:3]
        centres = [*rng.choice(interesting, size=min(6, len(interesting)), replace=False), *evidence]
        for centre in centres:
            seq = int(steps["seq"].iloc[centre])
            expected = steps_around([path], str(vm), seq, context=5)
            at = np.arange(max(centre - 5, start), min(centre + 6, end))
            got = replay_view(steps, batch, at, marks)
            # The replay view has more columns (time, src, observed answers); the report's
            # windows show the original ones, with the same values.
            assert set(got.columns) <= set(expected.columns)
            expected = expected[list(got.columns)]
            pd.testing.assert_frame_equal(_normalized(got), _normalized(expected), check_dtype=False)
            compared += 1
            marked += bool((got["findings"] != "").any())
            assert any(c.startswith("iostatus:") for c in got.columns)
    assert compared >= 6
    assert marked or not result.findings


def test_windows_mark_evidence_and_left_out_steps(traces):
    path = traces["sync-stop"]
    steps = read_steps([path])
    result = analyzer.check([path])
    assert result.findings
    listed = [f for f in result.findings if len(f.seq) >= 2][:5]
    windows = context_windows(steps, as_steps(steps), listed, result.findings,
                              [r.id for r in result.rules], context=2)
    for f, w in zip(listed, windows, strict=True):
        assert w is not None
        seq_col = w.columns.index("seq")
        shown = [int(r[seq_col]) for r in w.rows]
        assert set(f.seq) <= set(shown)
        assert [s for s, e in zip(shown, w.evidence, strict=True) if e] == sorted(set(f.seq))
        assert "runstate" in w.columns and "findings" in w.columns
        evidence_row = w.rows[w.evidence.index(True)]
        assert f.rule in evidence_row[w.columns.index("findings")].split(",")
        # A double line wherever the window skips steps between two evidence steps.
        far_apart = max(f.seq) - min(f.seq) > 2 * 2 + 1
        assert any(w.gap_before) == far_apart or not far_apart
