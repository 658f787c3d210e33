"""Accuracy sweep: the analyzer's findings against the simulator's ground truth.

For every variant and seed, record a simulated trace (which writes `truth.json`), check it, and
compare the error findings, reduced to (vm, error_id, rule), with the truth (docs/rules.md §3:
integrity rules excluded). Prints a precision / recall table per rule and every disagreement.

    python benchmarks/accuracy_sweep.py                 # 200 seeds per variant
    python benchmarks/accuracy_sweep.py --seeds 20 --variants fixed,sync-stop
    python benchmarks/accuracy_sweep.py --threads 5     # also threads-mode `fixed` runs
    python benchmarks/accuracy_sweep.py --restated      # also: the built-ins restated in the
                                                        # rule language give the same findings

With --restated, every run is also checked with the default rule file of restated built-ins
(analyzer/lang/builtin.yaml) alone, and its findings must equal the hand-written rules' findings
of the same ids exactly (every field, messages included).

Exit status 1 if any disagreement (or any error finding on `fixed`), so it can gate CI.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from analyzer import check  # noqa: E402
from tracer.sim import VARIANTS, SimConfig, record  # noqa: E402
from tracer.sim.truth import TRUTH_RULES, read_truth  # noqa: E402

Key = tuple[str, int | None, str]


BUILTIN_RULES = REPO / "analyzer" / "lang" / "builtin.yaml"


def restated_diff(trace: Path, result) -> tuple[int, list[str]]:
    """(findings compared, disagreements) of the restated built-ins against `result`."""
    lang = check([trace], rule_files=[str(BUILTIN_RULES)], only_files=True)
    ids = {r.id for r in lang.rules}
    hand = [f for f in result.findings if f.rule in ids]
    diffs = [f"restated {f.rule} seq={f.seq}: only hand-written" for f in hand if f not in lang.findings]
    diffs += [f"restated {f.rule} seq={f.seq}: only rule file" for f in lang.findings if f not in hand]
    return len(hand), diffs


def one_run(variant: str, seed: int, mode: str = "sim", duration_s: float = 0.05,
            restated: bool = False) -> dict:
    """Record, check, compare. Returns the sets and counts for one (variant, seed)."""
    with tempfile.TemporaryDirectory(prefix="blkreplay-sweep-") as tmp:
        out = Path(tmp) / "trace"
        config = SimConfig(seed=seed, variant=variant, mode=mode, vms=1, devices=2, iothreads=1,
                           duration_s=duration_s)
        record(config, out)
        result = check([out])
        found = {
            (f.vm, f.error_id, f.rule)
            for f in result.findings
            if f.severity == "error" and f.rule in TRUTH_RULES
        }
        errors = [f for f in result.findings if f.severity == "error"]
        compared, diffs = restated_diff(out, result) if restated else (0, [])
        truth: set[Key] = set()
        if mode == "sim":
            doc = read_truth(out / "truth.json")
            truth = {(b["vm"], b["error_id"], b["rule"]) for b in doc["broken"]}
        return {
            "variant": variant, "seed": seed, "mode": mode, "found": found, "truth": truth,
            "errors": len(errors), "steps": result.steps, "episodes": len(result.episodes),
            "error_messages": [f"{f.rule} seq={f.seq}: {f.message}" for f in errors[:3]],
            "restated_compared": compared, "restated_diffs": diffs,
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=200, help="seeds per variant (default 200)")
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--duration", type=float, default=0.05, help="simulated seconds per run")
    ap.add_argument("--threads", type=int, default=0, help="threads-mode `fixed` runs to add")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--restated", action="store_true",
                    help="also compare the restated built-ins (analyzer/lang/builtin.yaml)")
    args = ap.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    jobs = [(v, s, "sim", args.duration, args.restated) for v in variants
            for s in range(args.first_seed, args.first_seed + args.seeds)]
    jobs += [("fixed", s, "threads", 0.3, args.restated) for s in range(1, args.threads + 1)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(one_run, *zip(*jobs, strict=True), chunksize=4))
    elapsed = time.perf_counter() - t0

    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    problems = []
    for r in runs:
        if (r["mode"] == "threads" or r["variant"] == "fixed") and r["errors"]:
            problems.append(f"{r['mode']} fixed seed {r['seed']}: {r['errors']} error findings "
                            f"{r['error_messages']}")
        problems.extend(f"{r['variant']} seed {r['seed']}: {d}" for d in r["restated_diffs"])
        if r["mode"] != "sim":
            continue
        for key in r["found"] & r["truth"]:
            tp[key[2]] += 1
        for key in r["found"] - r["truth"]:
            fp[key[2]] += 1
            problems.append(f"{r['variant']} seed {r['seed']}: extra finding {key}")
        for key in r["truth"] - r["found"]:
            fn[key[2]] += 1
            problems.append(f"{r['variant']} seed {r['seed']}: missed {key}")

    steps = sum(r["steps"] for r in runs)
    print(f"{len(runs)} runs ({len(variants)} variants x {args.seeds} seeds"
          f"{f' + {args.threads} threads-mode' if args.threads else ''}), {steps:,} steps, "
          f"{elapsed:.1f} s")
    print(f"{'rule':28} {'truth':>7} {'found':>7} {'TP':>7} {'FP':>5} {'FN':>5} {'precision':>9} {'recall':>7}")
    for rule in TRUTH_RULES:
        t, f = tp[rule] + fn[rule], tp[rule] + fp[rule]
        prec = tp[rule] / f if f else 1.0
        rec = tp[rule] / t if t else 1.0
        print(f"{rule:28} {t:7d} {f:7d} {tp[rule]:7d} {fp[rule]:5d} {fn[rule]:5d} {prec:9.3f} {rec:7.3f}")
    if args.restated:
        compared = sum(r["restated_compared"] for r in runs)
        differing = sum(len(r["restated_diffs"]) for r in runs)
        print(f"restated built-ins (analyzer/lang/builtin.yaml): {compared:,} hand-written findings "
              f"compared, {differing} disagreement(s)")
    by_variant = Counter(r["variant"] for r in runs if r["truth"])
    print("runs with broken guarantees per variant:", dict(sorted(by_variant.items())))
    if problems:
        print(f"\n{len(problems)} disagreement(s):")
        for p in problems[:50]:
            print("  " + p)
        return 1
    print("\nno disagreement: precision and recall 1.0 for every rule")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
