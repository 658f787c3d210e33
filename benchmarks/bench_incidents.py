"""Incidents and pattern rules at fleet scale: time `find_incidents` / `paused_by_vm` over a
synthetic episodes table (N VMs on H hosts, K outages each pausing every VM a few times), and a
whole `check` of the simulated fleet outage (traces/scenarios/fleet-outage.toml).

    python benchmarks/bench_incidents.py                 # 20,000 VMs, 3 outages, 5 pauses each
    python benchmarks/bench_incidents.py --vms 100000 --skip-sim
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from analyzer import check  # noqa: E402
from analyzer.episodes import EPISODE_COLUMNS, empty_episodes  # noqa: E402
from analyzer.outage import find_incidents, paused_by_vm  # noqa: E402
from tracer.sim import load_scenario, record  # noqa: E402

EPOCH = 1_780_000_000 * 10**9
S = 10**9


def synthetic(vms: int, hosts: int, outages: int, pauses: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = vms * outages * pauses
    vm = np.tile(np.repeat(np.arange(vms), pauses), outages)
    outage = np.repeat(np.arange(outages), vms * pauses)
    t = EPOCH + outage * 3600 * S + rng.integers(0, 60 * S, n)
    paused = rng.integers(1 * S, 30 * S, n)
    frame = empty_episodes().reindex(range(n))
    frame["vm"] = np.char.add("vm", vm.astype(str)).astype(object)
    frame["host"] = np.char.add("host", (vm % hosts).astype(str)).astype(object)
    frame["device"] = "drive0"
    frame["action"] = "stop"
    for c, v in (("errno", np.full(n, 5)), ("ts_event", t), ("ts_stop", t + 1000),
                 ("ts_resume", t + 1000 + paused), ("paused_ns", paused)):
        frame[c] = pd.array(v, dtype="Int64")
    return frame[[*EPISODE_COLUMNS, "host"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vms", type=int, default=20_000)
    ap.add_argument("--hosts", type=int, default=500)
    ap.add_argument("--outages", type=int, default=3)
    ap.add_argument("--pauses", type=int, default=5)
    ap.add_argument("--skip-sim", action="store_true")
    args = ap.parse_args(argv)
    eps = synthetic(args.vms, args.hosts, args.outages, args.pauses)
    t0 = time.perf_counter()
    found = find_incidents(eps)
    t1 = time.perf_counter()
    per_vm = paused_by_vm(eps)
    t2 = time.perf_counter()
    print(f"episodes {len(eps):,} ({args.vms:,} VMs on {args.hosts} hosts): find_incidents {t1 - t0:.2f} s "
          f"-> {len(found)} incident(s) of {[len(i.vms) for i in found]} VMs; paused_by_vm {t2 - t1:.2f} s "
          f"-> {len(per_vm):,} rows")
    if not args.skip_sim:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            rec = record(load_scenario(REPO / "traces" / "scenarios" / "fleet-outage.toml"), Path(tmp) / "t")
            t1 = time.perf_counter()
            result = check([Path(tmp) / "t"])
            t2 = time.perf_counter()
        print(f"fleet-outage: record {t1 - t0:.2f} s ({rec.steps:,} steps, {rec.vms} VMs), check {t2 - t1:.2f} s: "
              f"{len(result.incidents)} incident(s), {len(result.findings)} pattern warning(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
