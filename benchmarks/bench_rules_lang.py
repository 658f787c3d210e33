"""Rule language vs hand-written rules of the same shape, on a generated big trace.

The built-in rules restated in analyzer/lang/builtin.yaml are the same rules as the Python
functions of the catalogue, so each pair is the fairest comparison there is: same shape, same
findings. The trace (`make_big_trace.py`, a correct QEMU) is read once into the `Steps` batches a
check judges; then each rule is timed over every batch (best of --repeat), hand-written and
compiled, and the ratio printed. "clean" is the trace as made (no findings: detection only);
"broken" changes every 7th vm_stop to an iothread and drops every 7th iostatus_set, so that
findings are built too. A check end to end (Parquet read included) is timed both ways as well.

    python benchmarks/bench_rules_lang.py                      # 2M steps, 200 VMs
    python benchmarks/bench_rules_lang.py --steps 5e6 --vms 500

The brief's bound: a user rule within 2x the time of a hand-written rule of the same shape.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from make_big_trace import make  # noqa: E402

from analyzer import check  # noqa: E402
from analyzer.lang import LangRule, compile_builtin  # noqa: E402
from analyzer.lang.compile import compile_text  # noqa: E402
from analyzer.lang.loader import load_text  # noqa: E402
from analyzer.result import Finding, RuleInfo  # noqa: E402
from analyzer.rules.catalogue import _FUNCTION_OF, columns_for  # noqa: E402
from analyzer.rules.evidence import eids, findings  # noqa: E402
from analyzer.steps import ACT, RS, TK, K, Steps  # noqa: E402
from analyzer.trace import load, scan_unit  # noqa: E402
from tracer.schema import COLUMN_NAMES  # noqa: E402

BUILTIN = REPO / "analyzer" / "lang" / "builtin.yaml"

#: Two user rules of the forms builtin.yaml does not use, each beside a hand-written numpy
#: function of the same shape (below) giving the same findings.
USER_RULES = """
version: 1
rules:
  - id: stop-within
    severity: error
    title: t
    explanation: e
    scope: vm
    responds:
      trigger: {event: BLOCK_IO_ERROR, action: stop}
      response: {event: STOP}
      before: {event: RESUME}
      within: 2ms
    message: "BLOCK_IO_ERROR at seq {trigger.seq} without STOP in time"
  - id: pause-budget
    severity: warning
    title: t
    explanation: e
    scope: vm
    count_in_window:
      what: {kind: runstate, runstate: io-error, prev_runstate: running}
      more_than: 3
      within: 100ms
    message: "{count} pauses from seq {first.seq} to seq {row.seq}"
"""


def hand_stop_within(s: Steps, info: RuleInfo) -> list[Finding]:
    rows = np.flatnonzero(s.event("BLOCK_IO_ERROR") & (s.action == ACT["stop"]))
    nb, nc = s.next(s.event("STOP"), rows), s.next(s.event("RESUME"), rows)
    c_first = (nc >= 0) & ((nb < 0) | (nc < nb))
    deadline = s.ts[rows] + 2_000_000
    late = ~c_first & (nb >= 0) & (s.ts[np.maximum(nb, 0)] > deadline)
    missing = (nb < 0) & (nc < 0)
    bad = c_first | late | missing
    rows, nb, nc = rows[bad], np.where(late[bad], nb[bad], -1), np.where(c_first[bad], nc[bad], -1)
    return findings(s, info, [rows, nb, nc], device=s.device[rows], error_id=eids(s, rows),
                    message=lambda k, _: f"BLOCK_IO_ERROR at seq {int(s.seq[rows[k]])} without STOP in time")


def hand_pause_budget(s: Steps, info: RuleInfo) -> list[Finding]:
    r = np.flatnonzero(s.is_kind("runstate") & (s.runstate == RS["io-error"]) & (s.prev_runstate == RS["running"]))
    n, N = len(r), 3
    viol = np.zeros(n, dtype=bool)
    if n > N:
        j = np.arange(N, n)
        viol[j] = (s.vm[r[j]] == s.vm[r[j - N]]) & (s.ts[r[j]] - s.ts[r[j - N]] <= 100_000_000)
    prev = np.concatenate([[False], viol[:-1] & (s.vm[r[1:]] == s.vm[r[:-1]])]) if n else viol
    starts = np.flatnonzero(viol & ~prev)
    window = [r[starts - N + t] for t in range(N + 1)]
    return findings(s, info, window, device=s.device[window[0]], error_id=eids(s, window[0]),
                    message=lambda k, _: f"4 pauses from seq {int(s.seq[window[0][k]])} to seq {int(s.seq[window[-1][k]])}")


def batches(path: Path, columns: tuple[str, ...]) -> list[Steps]:
    trace = load([str(path)])
    out: list[Steps] = []
    for unit in trace.units:
        out.extend(scan_unit(trace, unit, columns, lambda b: b.steps))
    return out


def broken(s: Steps) -> Steps:
    t = s.take(s.idx)
    stops = np.flatnonzero(t.kind == K["vm_stop"])[::7]
    t.thread_kind[stops] = TK["iothread"]
    sets = np.flatnonzero(t.kind == K["iostatus_set"])[::7]
    t.kind[sets] = K["trace_event"]
    return t


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=float, default=2e6)
    ap.add_argument("--vms", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    steps = int(args.steps)
    path = Path(f"/tmp/blkreplay-bench-rules-{steps}-{args.vms}")
    if not (path / "manifest.json").exists():
        print(f"writing {steps:,} steps of {args.vms} VMs to {path} ...", flush=True)
        make(path, steps, args.vms)
    specs = compile_builtin().rules
    user = compile_text(USER_RULES, "user.yaml", load_text(USER_RULES, "user.yaml")).rules
    ids = [s.id for s in specs]
    wanted = set(columns_for(ids))
    for s in (*specs, *user):
        wanted |= set(LangRule(s).columns)
    columns = tuple(c for c in COLUMN_NAMES if c in wanted)
    clean = batches(path, columns)
    data = {"clean": clean, "broken": [broken(b) for b in clean]}
    print(f"{sum(b.n for b in clean):,} interesting rows in {len(clean)} batches "
          f"(of {steps:,} steps); best of {args.repeat}")
    print(f"{'trace':<7} {'rule':<23} {'form':<15} {'findings':>8} {'hand ms':>9} {'lang ms':>9} {'ratio':>6}")
    worst = 0.0
    hands = {s.id: (lambda b, f=_FUNCTION_OF[s.id]: f(b)[0]) for s in specs}
    hands["stop-within"] = lambda b: hand_stop_within(b, LangRule(user[0]).info)
    hands["pause-budget"] = lambda b: hand_pause_budget(b, LangRule(user[1]).info)
    for label, bs in data.items():
        for spec in (*specs, *user):
            hand_fn, lang = hands[spec.id], LangRule(spec)
            n_hand = sum(len(hand_fn(b)) for b in bs)  # warms the batches' cached columns
            n_lang = sum(len(lang(b)) for b in bs)
            assert n_hand == n_lang, (spec.id, n_hand, n_lang)
            h = best(lambda hand_fn=hand_fn, bs=bs: [hand_fn(b) for b in bs], args.repeat)
            g = best(lambda lang=lang, bs=bs: [lang(b) for b in bs], args.repeat)
            worst = max(worst, g / h)
            print(f"{label:<7} {spec.id:<23} {spec.form:<15} {n_hand:>8} {h * 1e3:>9.2f} {g * 1e3:>9.2f} {g / h:>6.2f}")
    t_hand = best(lambda: check([str(path)], rules=ids), 2)
    t_lang = best(lambda: check([str(path)], rule_files=[str(BUILTIN)], only_files=True), 2)
    print(f"check end to end ({', '.join(ids)}): hand {t_hand:.2f} s, rule file {t_lang:.2f} s, "
          f"ratio {t_lang / t_hand:.2f}")
    print(f"worst per-rule ratio: {worst:.2f} (bound: 2.00)")
    return 0 if worst <= 2.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
