"""The simulated fleets of the pattern and incident tests (traces/scenarios/*.toml), recorded
once per test session: a shared storage outage, a flapping backend, a slow ENOSPC extender, a
BLOCK_IO_ERROR flood under `report` policies, and the same fleet healthy."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import pyarrow.parquet as pq

from analyzer import check
from analyzer.result import CheckResult
from tracer.sim import load_scenario, record

SCENARIOS = Path(__file__).resolve().parents[2] / "traces" / "scenarios"
#: Where the recordings go: removed when the test session's interpreter exits.
_RECORDINGS = tempfile.TemporaryDirectory(prefix="blkreplay-scenarios-")
#: epoch_s of the scenarios: the virtual clock's 0, in ns.
EPOCH_NS = 1_780_000_000 * 10**9


@cache
def trace(name: str, **overrides: object) -> Path:
    """The trace directory of scenario `name` (with `overrides` of its settings)."""
    config = load_scenario(SCENARIOS / f"{name}.toml").replace(**overrides)
    if "faults" in overrides:  # replace() ignores None only; () clears the faults
        config = config.replace(faults=overrides["faults"])
    out = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_RECORDINGS.name)) / "trace"
    record(config, out)
    return out


@cache
def checked(name: str, **overrides: object) -> CheckResult:
    return check([trace(name, **overrides)])


def hosts_of(path: Path) -> dict[str, str]:
    """vm -> host of a recorded trace."""
    table = pq.read_table(sorted(path.glob("*.parquet"))[0], columns=["vm", "host"])
    return dict(zip(table["vm"].to_pylist(), table["host"].to_pylist(), strict=True))
