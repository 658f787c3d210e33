"""Benchmark reading a trace file cut into many tiny row groups (issue #12: must be linear).

A Parquet footer grows with its row groups; a reader that reopens the file (and re-parses the
footer) for every row group does O(row groups^2) work: 1,000 one-row row groups took 10 s,
200,000 never finished. For each count N (default 1k, 10k, 200k) this writes one file of N
one-row row groups (the first N steps of the shipped sample, one VM) and runs `analyzer.check`
on it in a fresh process, with a time limit, printing wall time, row groups per second and
peak RSS. The anchor is a plain pyarrow read of the same file through one open ParquetFile,
the floor a linear reader approaches; the ratio check / anchor is what to compare across runs.

    python benchmarks/bench_rowgroups.py
    python benchmarks/bench_rowgroups.py --counts 1000,2000 --limit 60
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
t0 = time.perf_counter()
if mode == "anchor":
    import pyarrow.parquet as pq
    pf = pq.ParquetFile(path)
    rows = sum(pf.read_row_group(i).num_rows for i in range(pf.metadata.num_row_groups))
else:
    from analyzer import check
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


def run(path: Path, mode: str, limit: float) -> dict | None:
    code = CHILD.format(repo=str(REPO))
    try:
        done = subprocess.run([sys.executable, "-c", code, str(path), mode], capture_output=True,
                              text=True, timeout=limit, check=True)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="1000,10000,200000", help="row-group counts, comma-separated")
    ap.add_argument("--limit", type=float, default=60.0, help="seconds before a run is cut off")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/blkreplay-rowgroups"))
    ap.add_argument("--anchor-max", type=int, default=20_000,
                    help="no anchor run above this many row groups (it alone takes minutes)")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"{'row groups':>10} {'anchor s':>9} {'check s':>9} {'ratio':>7} {'rg/s':>9} {'peak MB':>8}")
    for count in (int(float(c)) for c in args.counts.split(",")):
        t0 = time.perf_counter()
        path = make(args.dir / f"rg-{count}.parquet", count)
        made = time.perf_counter() - t0
        anchor = run(path, "anchor", args.limit) if count <= args.anchor_max else None
        got = run(path, "check", args.limit)
        a = f"{anchor['seconds']:9.2f}" if anchor else f"{'>' + str(int(args.limit)):>9}"
        if got is None:
            print(f"{count:>10} {a} {'>' + str(int(args.limit)):>9} {'-':>7} {'-':>9} {'-':>8}"
                  f"   (cut off; file written in {made:.1f} s)")
            continue
        assert got["rows"] == count, got
        ratio = f"{got['seconds'] / anchor['seconds']:7.1f}" if anchor else f"{'-':>7}"
        print(f"{count:>10} {a} {got['seconds']:9.2f} {ratio} {count / got['seconds']:9.0f} "
              f"{got['peak_rss_mb']:8.0f}")


if __name__ == "__main__":
    main()
