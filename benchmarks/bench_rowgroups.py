"""Benchmark reading a trace file cut into many tiny row groups (issue #12: must be linear).

A Parquet footer grows with its row groups (~22 KB a row group here: 4.4 GB parsed for
200,000); a reader that reopens the file (and re-parses the footer) for every row group does
O(row groups^2) work, and one that parses it twice holds it twice. For each count N (default
1k, 20k, 200k) this writes one file of N one-row row groups (the first N steps of the shipped
sample, one VM, repeated with shifted seqs) and runs `analyzer.check` on it in a fresh process,
with a time limit, printing wall time and peak RSS. The anchor, in the same run, is a bare
pyarrow read of the same file and of the columns a check reads
(``pq.ParquetFile(f).read(columns=...)``): the floor a linear reader approaches, in time and in
memory (it too holds the parsed footer). The ratios check / anchor are what to compare across
runs; `--repo` measures another checkout (a before/after comparison).

    python benchmarks/bench_rowgroups.py
    python benchmarks/bench_rowgroups.py --counts 1000,2000 --limit 60
    python benchmarks/bench_rowgroups.py --repo /work/main   # the code before a change
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
path, mode = sys.argv[1], sys.argv[2]
if mode == "anchor":
    import pyarrow.parquet as pq
    from analyzer.rules import RULE_IDS, columns_for
    core = ("seq", "ts_ns", "vm", "thread", "kind")
    t0 = time.perf_counter()
    pf = pq.ParquetFile(path)
    names = set(pf.schema_arrow.names)
    cols = [c for c in dict.fromkeys((*core, *columns_for(RULE_IDS))) if c in names]
    rows = pf.read(columns=cols).num_rows
else:
    from analyzer import check
    t0 = time.perf_counter()
    rows = check([path]).steps
print(json.dumps({{"seconds": time.perf_counter() - t0, "rows": rows,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def make(path: Path, count: int) -> Path:
    """One file of `count` one-row row groups: vm0's first `count` steps, repeated with shifted
    seqs when the sample has fewer."""
    if path.exists() and pq.ParquetFile(path).metadata.num_row_groups == count:
        return path
    table = pq.read_table(REPO / "traces" / "sample" / "seg-000000.parquet")
    one = table.filter(pc.equal(table.column("vm").cast(pa.string()), "vm0"))
    parts, have = [], 0
    while have < count:
        part = one.slice(0, count - have)
        seq = pc.add(part.column("seq"), have)
        ts = pc.add(part.column("ts_ns"), have * 10_000_000_000)
        part = part.set_column(part.column_names.index("seq"), "seq", seq)
        part = part.set_column(part.column_names.index("ts_ns"), "ts_ns", ts)
        parts.append(part)
        have += part.num_rows
    pq.write_table(pa.concat_tables(parts), path, row_group_size=1)
    return path


def run(path: Path, mode: str, limit: float, repo: Path = REPO) -> dict | None:
    code = CHILD.format(repo=str(repo))
    try:
        done = subprocess.run([sys.executable, "-c", code, str(path), mode], capture_output=True,
                              text=True, timeout=limit, check=True)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="1000,20000,200000", help="row-group counts, comma-separated")
    ap.add_argument("--limit", type=float, default=300.0, help="seconds before a run is cut off")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/blkreplay-rowgroups"))
    ap.add_argument("--repo", type=Path, default=REPO, help="checkout whose analyzer is measured")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"{'row groups':>10} {'anchor s':>9} {'check s':>9} {'ratio':>6} {'rg/s':>8} "
          f"{'anchor MB':>9} {'check MB':>9} {'ratio':>6}")
    cut = f"{'>' + str(int(args.limit)):>9}"
    for count in (int(float(c)) for c in args.counts.split(",")):
        t0 = time.perf_counter()
        path = make(args.dir / f"rg-{count}.parquet", count)
        made = time.perf_counter() - t0
        anchor = run(path, "anchor", args.limit, args.repo)
        got = run(path, "check", args.limit, args.repo)
        a_s = f"{anchor['seconds']:9.2f}" if anchor else cut
        a_mb = f"{anchor['peak_rss_mb']:9.0f}" if anchor else f"{'-':>9}"
        if got is None:
            print(f"{count:>10} {a_s} {cut} {'-':>6} {'-':>8} {a_mb} {'-':>9} {'-':>6}"
                  f"   (cut off; file written in {made:.1f} s)")
            continue
        assert got["rows"] == count, got
        t_ratio = f"{got['seconds'] / anchor['seconds']:6.2f}" if anchor else f"{'-':>6}"
        m_ratio = f"{got['peak_rss_mb'] / anchor['peak_rss_mb']:6.2f}" if anchor else f"{'-':>6}"
        print(f"{count:>10} {a_s} {got['seconds']:9.2f} {t_ratio} {count / got['seconds']:8.0f} "
              f"{a_mb} {got['peak_rss_mb']:9.0f} {m_ratio}", flush=True)


if __name__ == "__main__":
    main()
