"""Threads mode: the same model on real OS threads records real concurrency, and `fixed` run
that way breaks no guarantee (state changes and their rows are atomic for readers)."""

from __future__ import annotations

from collections import defaultdict

from tests.tracer.sim.test_oracle import oracle_broken, read_rows
from tracer.schema import validate
from tracer.sim import SimConfig, record
from tracer.tracedir import read_manifest, segment_paths

BUSY = dict(mode="threads", duration_s=0.6, error_rate=0.02, devices=3, iothreads=2, vms=2,
            fast_cont_prob=0.5, cont_delay_ms=0.5, poll_interval_ms=1.0)


def test_threads_mode_records_real_concurrency_and_fixed_breaks_nothing(tmp_path):
    import pyarrow.parquet as pq

    summary = record(SimConfig(seed=1, **BUSY), tmp_path / "t")
    assert summary.truth is None and not (tmp_path / "t" / "truth.json").exists()
    manifest = read_manifest(tmp_path / "t")
    assert manifest.source == "threads" and manifest.rows == summary.steps
    assert all(validate(pq.read_table(p)) == [] for p in segment_paths(tmp_path / "t"))
    assert summary.errors > 5 and summary.stops > 2 and summary.resumes > 2
    rows = read_rows(tmp_path / "t")
    assert set(rows) == {"vm0", "vm1"}
    interleaved = 0
    for vm_rows in rows.values():
        steps: dict[int, list[dict]] = defaultdict(list)
        for r in vm_rows:
            if r["error_id"] is not None:
                steps[r["error_id"]].append(r)
        for E, mine in steps.items():
            threads = {r["thread"] for r in mine}
            lo, hi = mine[0]["seq"], mine[-1]["seq"]
            others = {r["thread"] for r in vm_rows[lo : hi + 1] if r["error_id"] != E}
            if len(threads) > 1 and others - threads:
                interleaved += 1
        # the real clock: per-thread timestamps never go back
        last: dict[str, int] = {}
        for r in vm_rows:
            assert r["ts_ns"] >= last.get(r["thread"], 0)
            last[r["thread"]] = r["ts_ns"]
    assert interleaved >= 2
    assert oracle_broken(tmp_path / "t") == set()


def test_threads_mode_runs_a_defect_too(tmp_path):
    record(SimConfig(seed=2, variant="sync-stop", **{**BUSY, "vms": 1, "duration_s": 0.3}), tmp_path / "t")
    broken = {rule for _, _, rule in oracle_broken(tmp_path / "t")}
    assert {"iostatus-before-event", "vm-stop-thread"} <= broken
