"""Write a big synthetic trace quickly (vectorized numpy synthesis) for `bench_check.py`.

The rows follow docs/rules.md §1 like a correct QEMU: each VM starts (RESUME, prelaunch ->
running), then mostly successful I/O (io_submit on a vCPU, io_complete on the device's thread:
drive0 on iothread0, drive1 on the main loop), management polls (query-status, query-block),
and now and then an error cycle of action stop on drive0 (error_action, iostatus_set,
vmstop_prepare, BLOCK_IO_ERROR, vmstop_request on iothread0; vm_stop, runstate, STOP on main;
queries; cont with iostatus_reset, vm_start, RESUME, runstate, reply). A check of it passes.

Layout like the recorder: a directory of ``seg-NNNNNN.parquet`` segments of about a million
rows (whole VMs per segment, each VM's rows in seq order) and a manifest.

    python benchmarks/make_big_trace.py /tmp/big --steps 50_000_000 --vms 1000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tracer import tracedir  # noqa: E402
from tracer.schema import (  # noqa: E402
    ACTIONS,
    IOSTATUSES,
    KINDS,
    OPS,
    POLICIES,
    RUNSTATES,
    SCHEMA,
    THREAD_KINDS,
    schema_with_metadata,
)

THREADS = ("main", "vcpu0", "vcpu1", "iothread0", "mgmt")
THREAD_KIND_OF = {"main": "main", "vcpu0": "vcpu", "vcpu1": "vcpu", "iothread0": "iothread", "mgmt": "mgmt"}
DEVICES = ("drive0", "drive1")
NAMES = ("BLOCK_IO_ERROR", "STOP", "RESUME", "cont", "query-status", "query-block")

# Template rows: (kind, thread, device, op, errno, policy, action, iostatus, runstate,
#                 prev_runstate, name, has error id, command offset for replies)
_ = None
IO = [
    ("io_submit", "vcpu0", "*", "*", _, _, _, _, _, _, _, False, _),
    ("io_complete", "*", "*", "*", _, _, _, _, _, _, _, False, _),
]
POLL_STATUS = [
    ("qmp_command", "mgmt", _, _, _, _, _, _, _, _, "query-status", False, _),
    ("qmp_reply", "main", _, _, _, _, _, _, "running", _, "query-status", False, -1),
]
POLL_BLOCK = [
    ("qmp_command", "mgmt", _, _, _, _, _, _, _, _, "query-block", False, _),
    ("qmp_reply", "main", "drive0", _, _, _, _, "ok", _, _, "query-block", False, -1),
    ("qmp_reply", "main", "drive1", _, _, _, _, "ok", _, _, "query-block", False, -2),
]
ERROR = [
    ("io_submit", "vcpu0", "drive0", "write", _, _, _, _, _, _, _, False, _),
    ("io_complete", "iothread0", "drive0", "write", 5, _, _, _, _, _, _, False, _),
    ("error_action", "iothread0", "drive0", "write", 5, "stop", "stop", _, _, _, _, True, _),
    ("iostatus_set", "iothread0", "drive0", _, _, _, _, "failed", _, _, _, True, _),
    ("vmstop_prepare", "iothread0", _, _, _, _, _, _, _, _, _, True, _),
    ("qmp_event", "iothread0", "drive0", "write", 5, _, "stop", _, _, _, "BLOCK_IO_ERROR", True, _),
    ("vmstop_request", "iothread0", _, _, _, _, _, _, "io-error", _, _, True, _),
    ("vm_stop", "main", _, _, _, _, _, _, "io-error", _, _, True, _),
    ("runstate", "main", _, _, _, _, _, _, "io-error", "running", _, True, _),
    ("qmp_event", "main", _, _, _, _, _, _, _, _, "STOP", True, _),
    ("qmp_command", "mgmt", _, _, _, _, _, _, _, _, "query-status", False, _),
    ("qmp_reply", "main", _, _, _, _, _, _, "io-error", _, "query-status", False, -1),
    ("qmp_command", "mgmt", _, _, _, _, _, _, _, _, "query-block", False, _),
    ("qmp_reply", "main", "drive0", _, _, _, _, "failed", _, _, "query-block", False, -1),
    ("qmp_reply", "main", "drive1", _, _, _, _, "ok", _, _, "query-block", False, -2),
    ("qmp_command", "mgmt", _, _, _, _, _, _, _, _, "cont", False, _),
    ("iostatus_reset", "main", "drive0", _, _, _, _, "ok", _, _, _, False, _),
    ("iostatus_reset", "main", "drive1", _, _, _, _, "ok", _, _, _, False, _),
    ("vm_start", "main", _, _, _, _, _, _, _, _, _, False, _),
    ("qmp_event", "main", _, _, _, _, _, _, _, _, "RESUME", False, _),
    ("runstate", "main", _, _, _, _, _, _, "running", "io-error", _, False, _),
    ("qmp_reply", "main", _, _, _, _, _, _, _, _, "cont", False, -6),
    ("io_complete", "iothread0", "drive0", "write", _, _, _, _, _, _, _, False, _),
]
START = [
    ("qmp_event", "main", _, _, _, _, _, _, _, _, "RESUME", False, _),
    ("runstate", "main", _, _, _, _, _, _, "running", "prelaunch", _, False, _),
]
TEMPLATES = [IO, POLL_STATUS, POLL_BLOCK, ERROR, START]
SLOT_P = np.array([0.994, 0.0025, 0.0025, 0.001])  # io, poll status, poll block, error


def _vocab_code(values, vocab) -> np.ndarray:
    return np.array([-1 if v is None or v == "*" else vocab.index(v) for v in values], dtype=np.int32)


def _stack():
    rows = [r for t in TEMPLATES for r in t]
    cols = list(zip(*rows, strict=True))
    table = {
        "kind": _vocab_code(cols[0], KINDS),
        "thread": _vocab_code(cols[1], THREADS),
        "device": _vocab_code(cols[2], DEVICES),
        "op": _vocab_code(cols[3], OPS),
        "errno": np.array([-1 if v is None else v for v in cols[4]], dtype=np.int32),
        "policy": _vocab_code(cols[5], POLICIES),
        "action": _vocab_code(cols[6], ACTIONS),
        "iostatus": _vocab_code(cols[7], IOSTATUSES),
        "runstate": _vocab_code(cols[8], RUNSTATES),
        "prev_runstate": _vocab_code(cols[9], RUNSTATES),
        "name": _vocab_code(cols[10], NAMES),
        "has_eid": np.array(cols[11], dtype=bool),
        "cmd_off": np.array([0 if v is None else v for v in cols[12]], dtype=np.int64),
        "wild": np.array([r[1] == "*" for r in rows], dtype=bool),
    }
    starts = np.cumsum([0] + [len(t) for t in TEMPLATES])[:-1]
    lengths = np.array([len(t) for t in TEMPLATES])
    return table, starts, lengths


TABLE, T_START, T_LEN = _stack()


def vm_rows(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template row index, slot number and slot type for one VM of about `rows` rows."""
    n_slots = rows // 2 + 16
    slots = rng.choice(4, size=n_slots, p=SLOT_P)
    slots = np.concatenate([[4], slots])
    lens = T_LEN[slots]
    ends = np.cumsum(lens)
    keep = int(np.searchsorted(ends, rows, side="right"))
    slots, lens = slots[:keep], lens[:keep]
    total = int(lens.sum())
    slot_of_row = np.repeat(np.arange(len(slots)), lens)
    offset = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
    return T_START[slots][slot_of_row] + offset, slot_of_row, slots[slot_of_row]


def _dict(codes: np.ndarray, vocab) -> pa.Array:
    mask = codes < 0
    return pa.DictionaryArray.from_arrays(pa.array(np.where(mask, 0, codes).astype(np.int32), mask=mask),
                                          pa.array(list(vocab), pa.string()))


def _int(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(values, mask=mask)


def segment_table(rng: np.random.Generator, vm_names: list[str], rows_per_vm: int) -> pa.Table:
    parts = [vm_rows(rng, rows_per_vm) for _ in vm_names]
    tmpl = np.concatenate([p[0] for p in parts])
    slot_type = np.concatenate([p[2] for p in parts])
    counts = np.array([len(p[0]) for p in parts])
    vm = np.repeat(np.arange(len(vm_names), dtype=np.int32), counts)
    seq = np.arange(len(tmpl), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    n = len(tmpl)
    col = {k: v[tmpl] for k, v in TABLE.items()}
    # Successful I/O: random device, op and vCPU; completes on the device's thread.
    wild = col["wild"] | (slot_type == 0)
    dev = rng.integers(0, 2, n).astype(np.int32)
    io = slot_type == 0
    col["device"] = np.where(io, dev, col["device"])
    col["op"] = np.where(io, rng.choice([OPS.index("read"), OPS.index("write"), OPS.index("flush")], n,
                                        p=[0.45, 0.45, 0.1]).astype(np.int32), col["op"])
    complete = io & (col["kind"] == KINDS.index("io_complete"))
    submit = io & (col["kind"] == KINDS.index("io_submit"))
    col["thread"] = np.where(submit, THREADS.index("vcpu0") + rng.integers(0, 2, n), col["thread"]).astype(np.int32)
    # The completion of a pair repeats its submission's device/op (they are adjacent rows) and
    # runs on the device's thread.
    prev = np.maximum(np.arange(n) - 1, 0)
    col["device"] = np.where(complete, col["device"][prev], col["device"])
    col["op"] = np.where(complete, col["op"][prev], col["op"])
    col["thread"] = np.where(complete, np.where(col["device"] == 0, THREADS.index("iothread0"),
                                                THREADS.index("main")), col["thread"]).astype(np.int32)
    del wild
    # Request ids: per VM, one per submission.
    is_submit = col["kind"] == KINDS.index("io_submit")
    req = np.cumsum(is_submit)
    req_id = np.where(is_submit, req, req)  # a completion carries its submission's id
    has_req = (col["kind"] == KINDS.index("io_submit")) | (col["kind"] == KINDS.index("io_complete")) | (
        col["kind"] == KINDS.index("error_action"))
    # Error ids: per VM, one per error cycle.
    err_start = col["kind"] == KINDS.index("error_action")
    eid = np.cumsum(err_start)
    # Command seq of replies.
    cmd_seq = seq + col["cmd_off"]
    is_reply = col["kind"] == KINDS.index("qmp_reply")
    ts = seq * 1000 + np.repeat(rng.integers(0, 1_000_000, len(vm_names)), counts)
    thread_kind = np.array([THREAD_KINDS.index(THREAD_KIND_OF[t]) for t in THREADS], dtype=np.int32)[col["thread"]]
    arrays = {
        "seq": _int(seq),
        "ts_ns": _int(ts.astype(np.int64)),
        "vm": _dict(vm, vm_names),
        "host": pa.nulls(n, SCHEMA.field("host").type),
        "thread": _dict(col["thread"], THREADS),
        "thread_kind": _dict(thread_kind, THREAD_KINDS),
        "kind": _dict(col["kind"], KINDS),
        "device": _dict(col["device"], DEVICES),
        "req_id": _int(req_id.astype(np.int64), ~has_req),
        "op": _dict(col["op"], OPS),
        "errno": _int(col["errno"], col["errno"] < 0),
        "policy": _dict(col["policy"], POLICIES),
        "action": _dict(col["action"], ACTIONS),
        "iostatus": _dict(col["iostatus"], IOSTATUSES),
        "runstate": _dict(col["runstate"], RUNSTATES),
        "prev_runstate": _dict(col["prev_runstate"], RUNSTATES),
        "name": _dict(col["name"], NAMES),
        "error_id": _int(eid.astype(np.int64), ~col["has_eid"]),
        "payload": pa.nulls(n, pa.string()),
        "tid": pa.nulls(n, pa.int64()),
        "cmd_seq": _int(cmd_seq, ~is_reply),
        "src_file": pa.nulls(n, SCHEMA.field("src_file").type),
        "src_line": pa.nulls(n, pa.int64()),
        "event_ts_ns": pa.nulls(n, pa.int64()),
    }
    schema = schema_with_metadata("sim", {"synthetic": "benchmarks/make_big_trace.py"})
    return pa.Table.from_arrays([arrays[f.name].cast(f.type) for f in schema], schema=schema)


def make(out: Path, steps: int, vms: int, *, seed: int = 1, segment_rows: int = 1_000_000) -> int:
    """Write the trace directory; returns the number of rows written."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows_per_vm = max(steps // vms, 64)
    per_segment = max(1, segment_rows // rows_per_vm)
    names = [f"vm{i:04d}" for i in range(vms)]
    segments = []
    total = 0
    for index, start in enumerate(range(0, vms, per_segment)):
        table = segment_table(rng, names[start:start + per_segment], rows_per_vm)
        name = tracedir.segment_name(index)
        rows, digest = tracedir.write_table(table, out / name)
        segments.append(tracedir.Segment(name, rows, digest))
        total += rows
    manifest = tracedir.Manifest(rows=total, source="sim", segments=tuple(segments),
                                 metadata={"synthetic": True})
    tracedir.atomic_write_text(out / tracedir.MANIFEST_NAME, manifest.to_json())
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=50_000_000)
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = make(args.out, args.steps, args.vms, seed=args.seed)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"{rows:,} steps, {args.vms} VMs -> {args.out} ({size / 1e6:.0f} MB) in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
