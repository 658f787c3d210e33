"""Sim mode is deterministic: one seed and scenario, one trace, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from tests.tracer.sim.test_oracle import read_rows
from tracer import __version__
from tracer.schema import read_metadata, validate
from tracer.sim import SimConfig, record
from tracer.tracedir import read_manifest, segment_paths

SMALL = dict(duration_s=0.02, error_rate=0.01, vms=2, fast_cont_prob=0.5, cont_delay_ms=0.05)


def _files(trace: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(trace.iterdir())}


def test_same_seed_gives_identical_bytes(tmp_path):
    a = record(SimConfig(seed=11, **SMALL), tmp_path / "a")
    b = record(SimConfig(seed=11, **SMALL), tmp_path / "b")
    assert a.steps == b.steps and a.errors == b.errors
    files = _files(tmp_path / "a")
    assert set(files) >= {"seg-000000.parquet", "manifest.json", "truth.json"}
    assert files == _files(tmp_path / "b")


def test_segments_are_deterministic_too(tmp_path, monkeypatch):
    import tracer.sim.recording as recording

    real = recording.Recorder

    def small_segments(*args, **kwargs):
        return real(*args, **{**kwargs, "flush_rows": 500})

    monkeypatch.setattr(recording, "Recorder", small_segments)
    record(SimConfig(seed=3, **SMALL), tmp_path / "a")
    record(SimConfig(seed=3, **SMALL), tmp_path / "b")
    assert len(segment_paths(tmp_path / "a")) > 3
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_different_seeds_differ(tmp_path):
    record(SimConfig(seed=1, **SMALL), tmp_path / "a")
    record(SimConfig(seed=2, **SMALL), tmp_path / "b")
    assert _files(tmp_path / "a")["seg-000000.parquet"] != _files(tmp_path / "b")["seg-000000.parquet"]


def test_a_vm_does_not_depend_on_the_others(tmp_path):
    record(SimConfig(seed=5, **{**SMALL, "vms": 1}), tmp_path / "one")
    record(SimConfig(seed=5, **{**SMALL, "vms": 3}), tmp_path / "three")
    assert read_rows(tmp_path / "one")["vm0"] == read_rows(tmp_path / "three")["vm0"]


def test_trace_is_valid_schema_v1_with_provenance_and_no_wall_clock(tmp_path):
    summary = record(SimConfig(seed=9, name="unit", variant="lost-stop", **SMALL), tmp_path / "t")
    manifest = read_manifest(tmp_path / "t")
    assert manifest is not None and manifest.complete and manifest.source == "sim"
    assert manifest.rows == summary.steps
    table = pq.read_table(segment_paths(tmp_path / "t")[0])
    assert validate(table) == []
    meta = read_metadata(table.schema)
    assert meta["source"] == "sim"
    assert (meta["seed"], meta["scenario"], meta["variant"], meta["mode"]) == ("9", "unit", "lost-stop", "sim")
    assert meta["blkreplay_version"] == __version__
    assert json.loads(meta["config"])["cont_delay_ms"] == SMALL["cont_delay_ms"]
    assert not any("time" in k or "date" in k for k in meta)
    truth = json.loads((tmp_path / "t" / "truth.json").read_text())
    assert (truth["schema"], truth["variant"], truth["seed"]) == ("blkreplay.truth/1", "lost-stop", 9)
    # virtual clock: every VM starts at the first step, per-thread time never goes back
    for rows in read_rows(tmp_path / "t").values():
        assert [r["seq"] for r in rows] == list(range(len(rows)))
        last: dict[str, int] = {}
        for r in rows:
            assert r["ts_ns"] >= last.get(r["thread"], 0)
            last[r["thread"]] = r["ts_ns"]


REPO = Path(__file__).resolve().parents[3]


def _recipes() -> list[tuple[str, list[str]]]:
    """The `blkreplay record` lines of traces/regenerate.sh: (output dir, arguments)."""
    import shlex

    out = []
    for line in (REPO / "traces" / "regenerate.sh").read_text().splitlines():
        if line.startswith('"$BLKREPLAY" record'):
            args = shlex.split(line)[2:]
            out.append((args[args.index("-o") + 1], args))
    return out


def test_every_variant_has_a_sample_and_the_quick_start_sample_exists():
    from tracer.sim import VARIANTS

    targets = {o for o, _ in _recipes()}
    assert {f"traces/{v}" for v in VARIANTS} | {"traces/sample"} <= targets


def test_shipped_samples_are_what_regenerate_sh_produces(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from analyzer.cli.app import app

    monkeypatch.chdir(REPO)  # the script runs from the repository root
    for target, args in _recipes():
        shipped = REPO / target
        assert sum(p.stat().st_size for p in shipped.iterdir()) < 1_000_000, target
        fresh = tmp_path / Path(target).name
        args = [str(fresh) if a == target else a for a in args]
        result = CliRunner().invoke(app, ["record", *args])
        assert result.exit_code == 0, result.output
        assert json.loads((fresh / "truth.json").read_text()) == json.loads((shipped / "truth.json").read_text()), target
        assert read_rows(fresh) == read_rows(shipped), f"{target} is stale: run traces/regenerate.sh"
