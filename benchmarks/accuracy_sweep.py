"""Accuracy sweep: the analyzer's findings against the simulator's ground truth, per QEMU version.

For every QEMU behaviour (7.2: BLOCK_IO_ERROR sent at once; 9.2 and 10.0: throttled per
qom-path, held, delivered late, replaced), every variant and seed, record a simulated trace
(which writes `truth.json`), check it, and compare the findings, reduced to (vm, error_id, rule),
with the truth (docs/rules.md §3: error rules other than the integrity rules, plus the warning
`qom-path-swapped`, compared per VM: whether the VM's QEMU sent swapped fields at all). Prints a
precision / recall table per rule and version, and every disagreement.

    python benchmarks/accuracy_sweep.py                  # 7.2: 200 seeds, 9.2 / 10.0: 40 each
    python benchmarks/accuracy_sweep.py --seeds 20 --variants fixed,sync-stop --versions 10.0
    python benchmarks/accuracy_sweep.py --threads 5      # also threads-mode `fixed` runs (7.2)
    python benchmarks/accuracy_sweep.py --restated       # also: the built-ins restated in the
                                                         # rule language give the same findings
    python benchmarks/accuracy_sweep.py --pattern-seeds 10   # the fleet scenarios (default 3)

Seeds: `--seeds` per variant on 7.2, `--throttled-seeds` (default: a fifth of `--seeds`) per
variant on 9.2 and 10.0. The throttled runs vary by seed: the throttle window (2, 5, 20 ms of
the model's compressed clock, where management sends cont ~2 ms after a STOP, or QEMU's real
1000 ms, which holds every later event of a run until quit), `-blockdev` disks on 9.2 (one
throttle bucket per VM under the 9.2.0 swap), two iothreads per disk on 10.0. A variant that
exists in one QEMU only (`qom-path-swap`: 9.2) runs there only.

With --restated, every run is also checked with the default rule file of restated built-ins
(analyzer/lang/builtin.yaml) alone, and its findings must equal the hand-written rules' findings
of the same ids exactly (every field, messages included).

Patterns: the wall-clock fleet scenarios (traces/scenarios: fleet-outage shrunk to 40 VMs on 8
hosts, flapping-backend, enospc-extender), `--pattern-seeds` seeds each, compared with the
`patterns` of their truth (the model's STOP times): the VMs in a pause storm (`pause-storm`) and
the VM set of every incident.

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
from tracer.sim import VARIANTS, SimConfig, load_scenario, record  # noqa: E402
from tracer.sim.config import QEMU_VERSIONS  # noqa: E402
from tracer.sim.truth import TRUTH_RULES, TRUTH_WARNINGS, read_truth  # noqa: E402
from tracer.sim.variants import VARIANT_TABLE  # noqa: E402

Key = tuple[str, int | None, str]
#: Rules compared per VM (error id dropped on both sides).
PER_VM = frozenset(TRUTH_WARNINGS)
JUDGED = (*TRUTH_RULES, *TRUTH_WARNINGS)
#: Throttle windows (ms of the model's clock) the throttled runs cycle through, by seed.
WINDOWS_MS = (2.0, 5.0, 20.0, 1000.0)


BUILTIN_RULES = REPO / "analyzer" / "lang" / "builtin.yaml"


def restated_diff(trace: Path, result) -> tuple[int, list[str]]:
    """(findings compared, disagreements) of the restated built-ins against `result`."""
    lang = check([trace], rule_files=[str(BUILTIN_RULES)], only_files=True)
    ids = {r.id for r in lang.rules}
    hand = [f for f in result.findings if f.rule in ids]
    diffs = [f"restated {f.rule} seq={f.seq}: only hand-written" for f in hand if f not in lang.findings]
    diffs += [f"restated {f.rule} seq={f.seq}: only rule file" for f in lang.findings if f not in hand]
    return len(hand), diffs


def run_config(variant: str, seed: int, mode: str, duration_s: float, qemu: str) -> SimConfig:
    """The configuration of one run: 7.2 exactly as the sweep always ran; throttled varied."""
    base = dict(seed=seed, variant=variant, mode=mode, vms=1, devices=2, iothreads=1,
                duration_s=duration_s, qemu=qemu)
    if qemu == "7.2":
        return SimConfig(**base)
    base["event_throttle_ms"] = WINDOWS_MS[seed % len(WINDOWS_MS)]
    if qemu == "9.2":
        base["blockdev"] = seed % 2 == 0
    else:
        base.update(iothreads=2, vq_iothreads=1 + seed % 2)
    return SimConfig(**base)


def _reduce(keys: set[Key]) -> set[Key]:
    return {(vm, None, rule) if rule in PER_VM else (vm, eid, rule) for vm, eid, rule in keys}


def one_run(variant: str, seed: int, mode: str = "sim", duration_s: float = 0.05, qemu: str = "7.2",
            restated: bool = False) -> dict:
    """Record, check, compare. Returns the sets and counts for one (version, variant, seed)."""
    with tempfile.TemporaryDirectory(prefix="blkreplay-sweep-") as tmp:
        out = Path(tmp) / "trace"
        record(run_config(variant, seed, mode, duration_s, qemu), out)
        result = check([out])
        found = _reduce({
            (f.vm, f.error_id, f.rule)
            for f in result.findings
            if (f.severity == "error" and f.rule in TRUTH_RULES) or f.rule in TRUTH_WARNINGS
        })
        errors = [f for f in result.findings if f.severity == "error"]
        compared, diffs = restated_diff(out, result) if restated else (0, [])
        truth: set[Key] = set()
        if mode == "sim":
            doc = read_truth(out / "truth.json")
            truth = _reduce({(b["vm"], b["error_id"], b["rule"]) for b in doc["broken"]})
        return {
            "variant": variant, "seed": seed, "mode": mode, "qemu": qemu, "found": found, "truth": truth,
            "errors": len(errors), "steps": result.steps, "episodes": len(result.episodes),
            "error_messages": [f"{f.rule} seq={f.seq}: {f.message}" for f in errors[:3]],
            "restated_compared": compared, "restated_diffs": diffs,
        }


#: (scenario, overrides) of the pattern runs: small, so the sweep stays quick.
PATTERN_SCENARIOS: tuple[tuple[str, dict], ...] = (
    ("fleet-outage", {"vms": 40, "hosts": 8}),
    ("flapping-backend", {}),
    ("enospc-extender", {}),
)


def pattern_run(name: str, seed: int) -> dict:
    """Record a fleet scenario, check it, compare pause storms and incidents with its truth."""
    overrides = dict(PATTERN_SCENARIOS)[name]
    config = load_scenario(REPO / "traces" / "scenarios" / f"{name}.toml").replace(seed=seed, **overrides)
    with tempfile.TemporaryDirectory(prefix="blkreplay-sweep-") as tmp:
        out = Path(tmp) / "trace"
        record(config, out)
        result = check([out])
        truth = read_truth(out / "truth.json")["patterns"]
    storms = sorted({f.vm for f in result.findings if f.rule == "pause-storm"})
    incidents = [sorted(vm for _, vm in i.vms) for i in result.incidents]
    diffs = []
    if storms != truth["pause-storm"]:
        diffs.append(f"pause-storm VMs {storms} != truth {truth['pause-storm']}")
    if incidents != truth["incidents"]:
        diffs.append(f"incidents {[len(i) for i in incidents]} VMs != truth {[len(i) for i in truth['incidents']]}")
    errors = [f for f in result.findings if f.severity == "error"]
    diffs += [f"error finding {f.rule} {f.vm}" for f in errors[:3]]
    return {"name": name, "seed": seed, "storms": len(truth["pause-storm"]),
            "incidents": len(truth["incidents"]), "steps": result.steps, "diffs": diffs}


def jobs_for(variants: list[str], versions: list[str], seeds: int, throttled_seeds: int,
             first_seed: int, duration_s: float) -> list[tuple[str, int, str, float, str]]:
    jobs = []
    for qemu in versions:
        n = seeds if qemu == "7.2" else throttled_seeds
        for v in variants:
            only = VARIANT_TABLE[v].only_qemu
            if only is not None and only != qemu:
                continue
            jobs += [(v, s, "sim", duration_s, qemu) for s in range(first_seed, first_seed + n)]
    return jobs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=200, help="seeds per variant on QEMU 7.2 (default 200)")
    ap.add_argument("--throttled-seeds", type=int, default=None,
                    help="seeds per variant on QEMU 9.2 and 10.0 (default: a fifth of --seeds)")
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--versions", default=",".join(QEMU_VERSIONS), help="QEMU behaviours (7.2,9.2,10.0)")
    ap.add_argument("--duration", type=float, default=0.05, help="simulated seconds per run")
    ap.add_argument("--threads", type=int, default=0, help="threads-mode `fixed` runs to add (7.2)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--restated", action="store_true",
                    help="also compare the restated built-ins (analyzer/lang/builtin.yaml)")
    ap.add_argument("--pattern-seeds", type=int, default=3,
                    help="seeds per fleet scenario for the pattern rules and incidents (default 3)")
    args = ap.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    versions = [v for v in args.versions.split(",") if v]
    bad = sorted(set(versions) - set(QEMU_VERSIONS)) + sorted(set(variants) - set(VARIANTS))
    if bad:
        ap.error(f"unknown version or variant: {', '.join(bad)}")
    throttled_seeds = args.throttled_seeds if args.throttled_seeds is not None else max(1, args.seeds // 5)
    jobs = jobs_for(variants, versions, args.seeds, throttled_seeds, args.first_seed, args.duration)
    jobs += [("fixed", s, "threads", 0.3, "7.2") for s in range(1, args.threads + 1)]
    jobs = [(*job, args.restated) for job in jobs]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(one_run, *zip(*jobs, strict=True), chunksize=4))
        pjobs = [(n, s) for n, _ in PATTERN_SCENARIOS for s in range(args.first_seed, args.first_seed + args.pattern_seeds)]
        pattern_runs = list(pool.map(pattern_run, *zip(*pjobs, strict=True))) if pjobs else []
    elapsed = time.perf_counter() - t0

    tp: Counter[tuple[str, str]] = Counter()
    fp: Counter[tuple[str, str]] = Counter()
    fn: Counter[tuple[str, str]] = Counter()
    problems = []
    for r in runs:
        where = f"{r['qemu']} {r['variant']} seed {r['seed']}"
        if (r["mode"] == "threads" or r["variant"] == "fixed") and (r["errors"] or r["found"]):
            problems.append(f"{r['mode']} {r['qemu']} fixed seed {r['seed']}: {r['errors']} error findings "
                            f"{r['error_messages']}")
        problems.extend(f"{where}: {d}" for d in r["restated_diffs"])
        if r["mode"] != "sim":
            continue
        for key in r["found"] & r["truth"]:
            tp[r["qemu"], key[2]] += 1
        for key in r["found"] - r["truth"]:
            fp[r["qemu"], key[2]] += 1
            problems.append(f"{where}: extra finding {key}")
        for key in r["truth"] - r["found"]:
            fn[r["qemu"], key[2]] += 1
            problems.append(f"{where}: missed {key}")

    steps = sum(r["steps"] for r in runs)
    per = ", ".join(f"{q}: {args.seeds if q == '7.2' else throttled_seeds}" for q in versions)
    print(f"{len(runs)} runs ({len({(r['qemu'], r['variant']) for r in runs if r['mode'] == 'sim'})} "
          f"version x variant pairs, seeds per variant {per}"
          f"{f' + {args.threads} threads-mode' if args.threads else ''}), {steps:,} steps, {elapsed:.1f} s")
    print(f"{'qemu':5} {'rule':28} {'truth':>7} {'found':>7} {'TP':>7} {'FP':>5} {'FN':>5} "
          f"{'precision':>9} {'recall':>7}")
    below = []
    for qemu in versions:
        for rule in JUDGED:
            k = (qemu, rule)
            t, f = tp[k] + fn[k], tp[k] + fp[k]
            prec = tp[k] / f if f else 1.0
            rec = tp[k] / t if t else 1.0
            if prec < 1.0 or rec < 1.0:
                below.append(f"{qemu} {rule}")
            print(f"{qemu:5} {rule:28} {t:7d} {f:7d} {tp[k]:7d} {fp[k]:5d} {fn[k]:5d} {prec:9.3f} {rec:7.3f}")
    if args.restated:
        compared = sum(r["restated_compared"] for r in runs)
        differing = sum(len(r["restated_diffs"]) for r in runs)
        print(f"restated built-ins (analyzer/lang/builtin.yaml): {compared:,} hand-written findings "
              f"compared, {differing} disagreement(s)")
    if pattern_runs:
        storms = sum(r["storms"] for r in pattern_runs)
        incidents = sum(r["incidents"] for r in pattern_runs)
        agree = sum(not r["diffs"] for r in pattern_runs)
        print(f"patterns: {len(pattern_runs)} fleet runs ({args.pattern_seeds} seeds x "
              f"{len(PATTERN_SCENARIOS)} scenarios), truth {storms} pause storms and {incidents} "
              f"incidents; {agree} runs agree exactly")
        problems.extend(f"{r['name']} seed {r['seed']}: {d}" for r in pattern_runs for d in r["diffs"])
    by_variant = Counter(f"{r['qemu']} {r['variant']}" for r in runs if r["truth"])
    print("runs with broken guarantees per version and variant:", dict(sorted(by_variant.items())))
    if problems:
        print(f"\nbelow 1.000: {', '.join(below) or 'none (fixed not clean)'}")
        print(f"{len(problems)} disagreement(s):")
        for p in problems[:50]:
            print("  " + p)
        return 1
    print("\nno disagreement: precision and recall 1.0 for every rule and version")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
