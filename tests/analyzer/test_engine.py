"""The same check, byte for byte, on every engine and worker count."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from analyzer import check, load
from tests.analyzer.builders import write_dir
from tests.analyzer.trace.test_load import broken_trace
from tracer.errors import InputError
from tracer.schema import from_pylist


@pytest.fixture
def many_vms(tmp_path: Path) -> Path:
    """Six VMs, one recorder directory each (hive-style, by vm)."""
    for i in range(6):
        write_dir(from_pylist(broken_trace(f"vm{i}").rows, "sim"), tmp_path / "t" / f"vm=vm{i}",
                  segment_rows=25)
    return tmp_path / "t"


def render(result) -> str:
    return json.dumps(result.to_dict(), indent=2) + result.episodes.to_csv()


def test_engines_and_worker_counts_give_identical_results(many_vms: Path) -> None:
    trace = load([many_vms], unit_rows=60)  # several units, so that workers really share them
    assert len(trace.units) > 2
    reference = render(check(trace))
    assert reference == render(check([many_vms]))
    for engine, workers in (("local", 2), ("local", 3), ("dask", 1), ("dask", 2)):
        assert render(check(trace, engine=engine, workers=workers)) == reference, (engine, workers)


def test_progress_reaches_the_total(many_vms: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    result = check([many_vms], progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, result.steps) and seen[-1] == (result.steps, result.steps)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_bad_engine_options(many_vms: Path) -> None:
    with pytest.raises(InputError, match="unknown engine"):
        check([many_vms], engine="spark")
    with pytest.raises(InputError, match="at least 1"):
        check([many_vms], workers=0)


def test_scheduler_usage_errors_come_before_any_cluster(many_vms: Path, monkeypatch) -> None:
    for scheduler, kwargs, message in (
        ("local:0", {}, "N >= 1"),
        ("local:two", {}, "N >= 1"),
        ("local:2", {"engine": "local"}, "runs the 'dask' engine"),
        ("local:2", {"workers": 2}, "workers does not apply"),
    ):
        with pytest.raises(InputError, match=message):
            check([many_vms], scheduler=scheduler, **kwargs)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(InputError, match=r"pip install 'blkreplay\[dask\]'"):
        check([many_vms], scheduler="local:2")


def test_a_malformed_scheduler_address_is_refused_without_connecting(many_vms: Path) -> None:
    pytest.importorskip("distributed")
    with pytest.raises(InputError, match=re.escape("bad scheduler address 'foo://127.0.0.1:1': unknown address scheme")):
        check([many_vms], scheduler="foo://127.0.0.1:1")
