"""`blkreplay check` on every Parquet layout a trace comes in, against DuckDB and a bare read.

The same N steps of V VMs (`make_big_trace.py`) are laid out four ways, written once into a
cache directory outside the repository (reused on later runs):

- ``recorder``: the recorder's segments of whole VMs (`make_big_trace.py` itself);
- ``sorted``: one file sorted by (vm, seq), 1 M-row row groups crossing VM boundaries (what
  DuckDB, Polars or Spark write);
- ``time``: the same rows sorted by time across VMs (every VM in every row group: a fleet's
  event stream), 1 M-row row groups;
- ``hive``: hive ``vm=<name>/`` partition directories (the synthetic trace has no host, so
  there is no ``host=`` level), each sorted by seq;
- ``sim``: a simulator recording (`tracer.sim`, default scenario with faults) of `--sim-steps`
  steps of `--sim-vms` VMs: the recorder's segments of VMs interleaved in time.

For each layout it prints the time of `analyzer.check` (all rules), of DuckDB running five
rules as SQL over the same files (`RULES_SQL`: iostatus-before-event, event-before-stop,
stop-follows-error, vm-stop-thread and query-matches-events, with error ids as the synthetic
trace has them; on simulator recordings of every QEMU 7.2 defect variant it finds what
`check` finds, rule by rule, and the last column shows whether it did here), of DuckDB
running those and the two integrity rules `check` runs over every row (`INTEGRITY_SQL`:
seq-unique, ts-monotonic-per-thread; they find what `check` finds on a recording with clocks
set back and a VM's steps repeated in a second file), and of a bare
pyarrow read of the columns the check reads; ratios, steps/s and
the peak RSS of the process that ran it (with ``--workers`` N > 1 that is the parent's only:
the worker processes are the forkserver's children, not its own). Every figure runs in
a fresh child process, best of `--repeat`, check and DuckDB alternating. The machine's other
load shows in wall time: quote figures with the size used.

    python benchmarks/bench_layouts.py                       # 50 M steps, 1,000 VMs
    python benchmarks/bench_layouts.py --steps 5e6 --vms 200 --repeat 1
    python benchmarks/bench_layouts.py --no-integrity        # without DuckDB's 7-rule run

DuckDB is a benchmark-only dependency: ``pip install 'blkreplay[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from make_big_trace import make  # noqa: E402

LAYOUTS = ("recorder", "sorted", "time", "hive", "sim")
ROW_GROUP = 1_000_000

#: The five rules as SQL over a relation `t` of the trace's rows (with error ids, as the
#: synthetic trace records them; docs/rules.md §3 and analyzer/rules/ are the reference).
#: Each query returns (rule, vm, seq) of the finding rows; the benchmark counts them.
RULES_SQL = r"""
WITH
bie AS (SELECT vm, seq, device, error_id FROM t
        WHERE kind = 'qmp_event' AND name = 'BLOCK_IO_ERROR' AND action = 'stop'),
stop AS (SELECT vm, seq, error_id FROM t WHERE kind = 'qmp_event' AND name = 'STOP'),
-- iostatus-before-event: BIE(stop) of E with no iostatus_set of E before it
--   (not applicable to a trace without iostatus_set rows).
ios AS (SELECT vm, seq, error_id FROM t WHERE kind = 'iostatus_set' AND error_id IS NOT NULL),
r1 AS (SELECT 'iostatus-before-event' AS rule, b.vm, b.seq FROM bie b
       WHERE b.error_id IS NOT NULL AND EXISTS (SELECT 1 FROM ios)
         AND NOT EXISTS (SELECT 1 FROM ios i WHERE i.vm = b.vm AND i.error_id = b.error_id
                         AND i.seq < b.seq)),
-- event-before-stop: a STOP of E with no BIE(stop) of E before it.
r2 AS (SELECT 'event-before-stop' AS rule, s.vm, s.seq FROM stop s
       WHERE s.error_id IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM bie b WHERE b.vm = s.vm AND b.error_id = s.error_id
                         AND b.seq < s.seq)),
-- stop-follows-error: a BIE(stop) of E emitted while running (the last runstate before it is
--   running) whose stop request was consumed -- by the first vm_stop / vm_start carrying an
--   error id after E's vmstop_request, or by E's own vm_stop when E made no request (a
--   synchronous stop) -- with no STOP of the error that consumption served and none between
--   the event and the consumption (analyzer/state.py `service`).
rs AS (SELECT vm, seq, runstate FROM t WHERE kind = 'runstate'),
running AS (SELECT b.vm, b.seq, b.error_id FROM bie b ASOF JOIN rs r
            ON r.vm = b.vm AND r.seq < b.seq WHERE r.runstate = 'running' AND b.error_id IS NOT NULL),
req AS (SELECT vm, error_id, min(seq) AS seq FROM t WHERE kind = 'vmstop_request' AND error_id IS NOT NULL
        GROUP BY vm, error_id),
cons AS (SELECT vm, seq, error_id FROM t WHERE kind IN ('vm_stop', 'vm_start') AND error_id IS NOT NULL),
own AS (SELECT vm, error_id, min(seq) AS seq FROM t WHERE kind = 'vm_stop' AND error_id IS NOT NULL
        GROUP BY vm, error_id),
requested AS (SELECT b.vm, b.seq, q.seq AS req_seq FROM running b JOIN req q
              ON q.vm = b.vm AND q.error_id = b.error_id),
served AS (SELECT r.vm, r.seq, c.seq AS cons_seq, c.error_id AS served_by FROM requested r
           ASOF JOIN cons c ON c.vm = r.vm AND c.seq > r.req_seq
           UNION ALL
           SELECT b.vm, b.seq, o.seq, o.error_id FROM running b JOIN own o
           ON o.vm = b.vm AND o.error_id = b.error_id
           WHERE NOT EXISTS (SELECT 1 FROM req q WHERE q.vm = b.vm AND q.error_id = b.error_id)),
r3 AS (SELECT 'stop-follows-error' AS rule, v.vm, v.seq FROM served v
       WHERE NOT EXISTS (SELECT 1 FROM stop s WHERE s.vm = v.vm AND s.error_id = v.served_by)
         AND NOT EXISTS (SELECT 1 FROM stop s WHERE s.vm = v.vm AND s.seq > v.seq AND s.seq < v.cons_seq)),
-- vm-stop-thread: vm_stop on an iothread, worker or management thread.
r4 AS (SELECT 'vm-stop-thread' AS rule, vm, seq FROM t
       WHERE kind = 'vm_stop' AND thread_kind IN ('iothread', 'worker', 'mgmt')),
-- query-matches-events: a query-block reply of D saying ok whose command comes after the
--   latest BIE(stop) of D, with no cont command/reply, RESUME or iostatus_reset of D between
--   that BIE and the reply.
reply AS (SELECT vm, seq, device, coalesce(cmd_seq, seq) AS cmd FROM t
          WHERE kind = 'qmp_reply' AND name = 'query-block' AND iostatus = 'ok'),
reset AS (SELECT vm, seq, device FROM t
          WHERE (kind IN ('qmp_command', 'qmp_reply') AND name = 'cont')
             OR (kind = 'qmp_event' AND name = 'RESUME') OR kind = 'iostatus_reset'),
latest AS (SELECT q.vm, q.seq, q.device, b.seq AS bie_seq FROM reply q ASOF JOIN bie b
           ON b.vm = q.vm AND b.device = q.device AND b.seq < q.cmd),
r5 AS (SELECT 'query-matches-events' AS rule, l.vm, l.seq FROM latest l
       WHERE NOT EXISTS (SELECT 1 FROM reset x WHERE x.vm = l.vm
                         AND (x.device IS NULL OR x.device = l.device)
                         AND x.seq > l.bie_seq AND x.seq < l.seq))
SELECT * FROM r1 UNION ALL SELECT * FROM r2 UNION ALL SELECT * FROM r3
UNION ALL SELECT * FROM r4 UNION ALL SELECT * FROM r5
"""

#: The rules `RULES_SQL` expresses (the findings of `check` compared with it).
SQL_RULES = ("iostatus-before-event", "event-before-stop", "stop-follows-error", "vm-stop-thread",
             "query-matches-events")

#: The two integrity rules `check` runs over every row, as SQL: what the five rules above leave
#: out, and the costliest part of a check in any engine (every row's seq and ts_ns, not the 1-2%
#: of rows the five filter down to). The fastest formulations found: a window per VM for
#: seq-unique (3.4 s on 50 M rows, where GROUP BY vm, seq HAVING count(*) > 1 took 7.7 s and
#: count(DISTINCT) 7.3 s), a window per (vm, thread) for ts-monotonic-per-thread; one query
#: with both windows took longer (12.5 s) than the two apart. A repeated seq inside one file is
#: a schema error to `check` (exit 2), so seq-unique names each VM once, as `check` does for
#: the steps two files repeat.
INTEGRITY_SQL = r"""
SELECT DISTINCT 'seq-unique' AS rule, vm, NULL AS seq FROM (
    SELECT vm, seq, lag(seq) OVER (PARTITION BY vm ORDER BY seq) AS prev FROM t) WHERE seq = prev
UNION ALL
SELECT 'ts-monotonic-per-thread' AS rule, vm, seq FROM (
    SELECT vm, seq, ts_ns, lag(ts_ns) OVER (PARTITION BY vm, thread ORDER BY seq) AS prev FROM t)
WHERE ts_ns < prev
"""

#: Every rule the benchmark has as SQL: the five, then the two integrity rules.
ALL_SQL_RULES = (*SQL_RULES, "seq-unique", "ts-monotonic-per-thread")

CHILD = r"""
import json, resource, sys, time
SQL_RULES = {rules!r}
sys.path.insert(0, {repo!r})
mode, paths, workers = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
if mode.startswith("duckdb"):
    import duckdb
    con = duckdb.connect()
    con.sql("SET threads = {threads}; SET enable_progress_bar = false")
elif mode == "check":
    from analyzer import check
else:
    import pyarrow.parquet as pq
    from analyzer import load
    from analyzer.rules import columns_for
    from analyzer.rules.catalogue import RULE_IDS
t0 = time.perf_counter()
if mode.startswith("duckdb"):
    globs = [p if p.endswith(".parquet") else p + "/**/*.parquet" for p in paths]
    con.sql(f"CREATE VIEW t AS SELECT * FROM read_parquet({{globs!r}}, hive_partitioning = true)")
    found = con.execute({sql!r}).fetchall()
    if mode == "duckdb-all":
        found += con.execute({integrity!r}).fetchall()
    rows = con.execute("SELECT count(*) FROM t").fetchall()[0][0]
    findings = {{}}
    for rule, _, _ in found:
        findings[rule] = findings.get(rule, 0) + 1
elif mode == "check":
    result = check(paths, workers=workers or None)
    rows, findings = result.steps, {{}}
    for f in result.findings:
        if f.rule in SQL_RULES:
            findings[f.rule] = findings.get(f.rule, 0) + 1
else:
    trace = load(paths)
    cols = list(columns_for(RULE_IDS))
    rows, findings = 0, None
    import pyarrow as pa
    for f in trace.files:
        names = pq.ParquetFile(f.path).schema_arrow
        have = [c for c in cols if c in names.names]
        # strings as dictionaries, as check reads them (a file DuckDB wrote has no Arrow
        # schema saying so: read plain, they cost twice as much)
        strings = [c for c in have if pa.types.is_string(names.field(c).type)
                   or pa.types.is_large_string(names.field(c).type) or pa.types.is_dictionary(names.field(c).type)]
        pf = pq.ParquetFile(f.path, read_dictionary=strings)
        for i in range(pf.metadata.num_row_groups):
            rows += pf.read_row_group(i, columns=have).num_rows
elapsed = time.perf_counter() - t0
# This process's own peak (VmHWM: ru_maxrss would carry the bench parent's peak across the
# spawn, e.g. DuckDB's sort writing the layouts), and that of any worker processes it ran.
own = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))
rss = max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(json.dumps({{"seconds": elapsed, "rows": rows, "findings": findings, "rss_mb": rss / 1024}}))
"""


def layouts(cache: Path, steps: int, vms: int) -> dict[str, list[str]]:
    """The trace in every layout under `cache` (written on first use): layout -> paths."""
    import duckdb

    base = cache / f"{steps}-{vms}"
    rec = base / "recorder"
    if not (base / "recorder.done").exists():
        shutil.rmtree(rec, ignore_errors=True)
        base.mkdir(parents=True, exist_ok=True)
        make(rec, steps, vms)
        (base / "recorder.done").touch()
    src = f"{rec}/seg-*.parquet"
    con = duckdb.connect()
    con.sql("SET threads = 2; SET enable_progress_bar = false; SET preserve_insertion_order = false; "
            f"SET memory_limit = '3GB'; SET temp_directory = '{cache / 'duckdb-tmp'}'")
    todo = {
        "sorted": (base / "sorted.parquet", "ORDER BY vm, seq", f"ROW_GROUP_SIZE {ROW_GROUP}"),
        "time": (base / "time.parquet", "ORDER BY ts_ns, vm, seq", f"ROW_GROUP_SIZE {ROW_GROUP}"),
    }
    for name, (out, order, options) in todo.items():
        done = base / f"{name}.done"
        if done.exists():
            continue
        t0 = time.perf_counter()
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        con.sql(f"COPY (SELECT * FROM read_parquet('{src}') {order}) TO '{out}' "
                f"(FORMAT parquet, {options})")
        done.touch()
        print(f"  wrote {name} layout in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    hive = base / "hive"
    if not (base / "hive.done").exists():
        _write_hive(rec, hive)
        (base / "hive.done").touch()
    return {"recorder": [str(rec)], "sorted": [str(todo["sorted"][0])], "time": [str(todo["time"][0])],
            "hive": [str(hive)]}


def _write_hive(rec: Path, out: Path) -> None:
    """``vm=<name>/part-<segment>.parquet`` files without a vm column, from the recorder's
    segments (whole VMs each, in seq order), streamed a segment at a time. (DuckDB's
    ``PARTITION_BY`` of a 50 M-row sort spills for many minutes.)"""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    shutil.rmtree(out, ignore_errors=True)
    for seg in sorted(rec.glob("seg-*.parquet")):
        table = pq.read_table(seg)
        vm = table.column("vm").cast("string")
        for name in pc.unique(vm).to_pylist():
            part = table.filter(pc.equal(vm, name)).drop_columns(["vm", "host"])
            (out / f"vm={name}").mkdir(parents=True, exist_ok=True)
            pq.write_table(part, out / f"vm={name}" / f"part-{seg.stem}.parquet")


def sim_trace(cache: Path, steps: int, vms: int) -> list[str]:
    """A simulator recording of about `steps` steps of `vms` VMs under `cache` (made once)."""
    from tracer.sim import SimConfig, record

    out = cache / f"sim-{steps}-{vms}"
    if not (cache / f"sim-{steps}-{vms}.done").exists():
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        per_vm_second = 83_000  # steps one default VM makes per simulated second (bench_sim.py)
        record(SimConfig(seed=1, vms=vms, duration_s=round(max(steps / per_vm_second / vms, 0.01), 3)), out)
        (cache / f"sim-{steps}-{vms}.done").touch()
        print(f"  recorded the simulator trace in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return [str(out)]


def run(mode: str, paths: list[str], workers: int, threads: int) -> dict:
    code = CHILD.format(repo=str(REPO), sql=RULES_SQL, integrity=INTEGRITY_SQL, threads=threads,
                        rules=ALL_SQL_RULES)
    out = subprocess.run([sys.executable, "-c", code, mode, json.dumps(paths), str(workers)],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{mode} on {paths} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _agreement(check: dict[str, int], duckdb: dict[str, int]) -> str:
    """``same (N)`` when check's findings of the SQL rules and DuckDB's rows agree rule by rule,
    else each rule that differs as check/DuckDB."""
    if check == duckdb:
        return f"same ({sum(check.values())})"
    return " ".join(f"{rule} {check.get(rule, 0)}/{duckdb.get(rule, 0)}"
                    for rule in ALL_SQL_RULES if check.get(rule, 0) != duckdb.get(rule, 0))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=float, default=50e6)
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/blkreplay-bench/layouts"))
    ap.add_argument("--repeat", type=int, default=3, help="best of N (check and DuckDB alternate)")
    ap.add_argument("--workers", type=int, default=1, help="check worker processes (1: in-process)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="DuckDB threads")
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--sim-steps", type=float, default=5e6)
    ap.add_argument("--sim-vms", type=int, default=500)
    ap.add_argument("--no-integrity", dest="integrity", action="store_false",
                    help="skip DuckDB with the integrity rules (duckdb7: ~10 s more a layout and run)")
    args = ap.parse_args(argv)
    if str(args.cache.resolve()).startswith(str(REPO)):
        ap.error("--cache must be outside the repository")
    chosen = [x for x in args.layouts.split(",") if x]
    paths = layouts(args.cache, int(args.steps), args.vms)
    if "sim" in chosen:
        paths["sim"] = sim_trace(args.cache, int(args.sim_steps), args.sim_vms)
    print(f"{int(args.steps):,} steps, {args.vms} VMs (sim: {int(args.sim_steps):,} steps, {args.sim_vms} VMs); "
          f"check workers {args.workers}, DuckDB threads "
          f"{args.threads}; best of {args.repeat} (seconds)")
    print("duckdb5: the five rules of RULES_SQL; duckdb7: those and the integrity rules "
          "(INTEGRITY_SQL); the findings compared are DuckDB7's")
    head = (f"{'layout':<9} {'check':>7} {'duckdb5':>8} {'duckdb7':>8} {'read':>6} {'chk/ddb5':>9} "
            f"{'chk/ddb7':>9} {'chk/read':>9} {'Msteps/s':>9} {'RSS MB':>7} {'ddb RSS':>8} "
            "findings of the SQL rules (check/DuckDB)")
    print(head)
    modes = ("check", "duckdb", "read", "duckdb-all") if args.integrity else ("check", "duckdb", "read")
    for name in chosen:
        best: dict[str, dict] = {}
        for _ in range(args.repeat):
            for mode in modes:
                r = run(mode, paths[name], args.workers, args.threads)
                if mode not in best or r["seconds"] < best[mode]["seconds"]:
                    best[mode] = {**r, "rss_mb": max(r["rss_mb"], best.get(mode, {}).get("rss_mb", 0))}
        c, d, b = best["check"], best["duckdb"], best["read"]
        d7 = best.get("duckdb-all")
        found = {k: v for k, v in c["findings"].items() if k in SQL_RULES} if d7 is None else c["findings"]
        print(f"{name:<9} {c['seconds']:7.2f} {d['seconds']:8.2f} "
              f"{d7['seconds'] if d7 else float('nan'):8.2f} {b['seconds']:6.2f} "
              f"{c['seconds'] / d['seconds']:9.2f} "
              f"{c['seconds'] / d7['seconds'] if d7 else float('nan'):9.2f} {c['seconds'] / b['seconds']:9.2f} "
              f"{c['rows'] / c['seconds'] / 1e6:9.1f} {c['rss_mb']:7.0f} {d['rss_mb']:8.0f} "
              f"{_agreement(found, (d7 or d)['findings'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
