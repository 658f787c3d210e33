"""`check` on a real Dask cluster (worker processes on loopback) gives the local engine's bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from analyzer import check, load
from analyzer import engine as engine_module
from analyzer.cli.app import main
from tests.analyzer.test_check import run
from tests.analyzer.test_engine import many_vms, render  # noqa: F401  (fixture)
from tracer.errors import TraceFormatError
from tracer.sim import record
from tracer.sim.config import SimConfig

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """Two worker processes, one thread each, on loopback: the scheduler's address."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0") as c:
        yield c.scheduler_address


@pytest.fixture(scope="module")
def sim_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "trace"
    record(SimConfig(variant="sync-stop", vms=4, seed=3, duration_s=0.05), out)
    return out


def findings_json(result) -> str:
    return json.dumps(result.to_dict(), indent=2)


def test_a_cluster_gives_the_local_engines_findings_byte_for_byte(cluster: str, sim_trace: Path,
                                                                   many_vms: Path) -> None:  # noqa: F811
    local = check([sim_trace])
    assert local.findings  # a trace with findings, so that equality means something
    seen: list[tuple[int, int | None]] = []
    remote = check([sim_trace], scheduler=cluster, progress=lambda d, t: seen.append((d, t)))
    assert findings_json(remote) == findings_json(local)
    assert seen[0] == (0, local.steps) and seen[-1] == (local.steps, local.steps)
    # Several units spread over both workers, finishing in any order: still the same bytes.
    trace = load([many_vms], unit_rows=60)
    assert len(trace.units) > 2
    assert render(check(trace, scheduler=cluster)) == render(check(trace))


def test_a_workers_input_error_reaches_the_caller(cluster: str, many_vms: Path) -> None:  # noqa: F811
    trace = load([many_vms])
    gone = Path(trace.files[-1].path)
    gone.unlink()  # vanishes between planning and reading: only a worker finds out
    with pytest.raises(TraceFormatError) as exc:
        check(trace, scheduler=cluster)
    assert exc.value.path == str(gone)


def test_cli_scheduler_local_n_prints_the_same_json(capsys, cluster: str, sim_trace: Path) -> None:
    code, reference, _ = run(capsys, "check", str(sim_trace), "-f", "json", "-q")
    assert code == 1 and json.loads(reference)["findings"]
    assert run(capsys, "check", str(sim_trace), "-f", "json", "-q", "--scheduler", "local:2") == (1, reference, "")
    assert run(capsys, "check", str(sim_trace), "-f", "json", "-q", "--scheduler", cluster)[:2] == (1, reference)


def test_cli_unreachable_scheduler_is_one_line_and_exit_2(capfd, monkeypatch, sim_trace: Path) -> None:
    monkeypatch.setattr(engine_module, "CONNECT_TIMEOUT_S", 1.0)
    with pytest.raises(SystemExit) as exc:
        main(["check", str(sim_trace), "--scheduler", "tcp://127.0.0.1:1"])
    out, err = capfd.readouterr()
    assert exc.value.code == 2 and out == ""
    assert err.strip().splitlines() == [
        "blkreplay: error: cannot reach the Dask scheduler: "
        "Timed out trying to connect to tcp://127.0.0.1:1 after 1 s"
    ]
