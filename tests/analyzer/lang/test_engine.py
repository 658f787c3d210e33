"""Compiled rules run like the built-ins on every engine: picklable, same result on Dask's
threads as locally, deterministic."""

from __future__ import annotations

import pickle
from pathlib import Path

from analyzer import check
from analyzer.lang import load_rules

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "traces" / "rules" / "examples.yaml"
TRACE = REPO / "traces" / "no-reset"


def test_compiled_rules_pickle_and_run_the_same():
    rules = load_rules([EXAMPLES], builtin=True)
    again = pickle.loads(pickle.dumps(rules))
    assert again == rules
    assert [r.id for r in again.rules][:3] == ["iostatus-before-event", "iostatus-before-stop", "vm-stop-thread"]


def test_same_result_on_the_dask_engine_and_across_runs():
    local = check([str(TRACE)], rule_files=[str(EXAMPLES)])
    dask = check([str(TRACE)], rule_files=[str(EXAMPLES)], engine="dask", workers=2)
    assert local.to_dict() == dask.to_dict()
    assert local.to_dict() == check([str(TRACE)], rule_files=[str(EXAMPLES)]).to_dict()
    assert any(f.rule == "no-resume-while-failing" for f in local.findings)
