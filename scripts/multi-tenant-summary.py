#!/usr/bin/env python3
"""Runs `gantry simulate --tenants` over several seeds and summarizes the setups side by side.

Usage (from the repository root, after `cargo build --release`):

    scripts/multi-tenant-summary.py --seeds 42-51 [-- extra gantry simulate arguments]

Default extra arguments: `--tenants examples/tenants/venus.yaml` (20,000 generated workloads over
30 days on the bundled 968-GPU cluster, with the strict-quota and fifo baselines). Prints, per
setup, means and standard deviations over the seeds, the worst cases, and Gantry against the
strict-quota baseline of the same seed. These are the figures in BENCHMARKS.md.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time


def seeds(spec):
    a, _, b = spec.partition("-")
    return list(range(int(a), int(b or a) + 1))


def mean_sd(xs):
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="42-51")
    p.add_argument("--binary", default="./target/release/gantry")
    p.add_argument("extra", nargs="*", help="arguments for gantry simulate (after --)")
    a = p.parse_args()
    extra = a.extra or ["--tenants", "examples/tenants/venus.yaml"]
    runs, walls = [], []
    for s in seeds(a.seeds):
        t0 = time.time()
        out = subprocess.run([a.binary, "simulate", *extra, "--seeds", str(s), "--format", "json"],
                             check=True, capture_output=True, text=True).stdout
        walls.append(time.time() - t0)
        runs.append(json.loads(out)["setups"])
        print(f"seed {s}: {walls[-1]:.1f} s", file=sys.stderr)
    names = [x["setup"] for x in runs[0]]
    h = 3600.0
    print(f"{len(runs)} seeds, {statistics.mean(walls):.1f} s wall per invocation (all setups)\n")
    print("| setup | alloc % | wait p50 (h) | wait p95 (h) | wait p99 (h) | violations (max) | no room (max) "
          "| worst owed wait (min) | Jain (min) | preemptions | reclaims | waiting at end | refused | ledger exact |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i, name in enumerate(names):
        xs = [r[i] for r in runs]
        col = lambda k: [x[k] for x in xs]
        alloc = mean_sd(col("mean_allocated_pct"))
        d = lambda q: statistics.mean(x["delays"][q] for x in xs) / h
        jain = [x["jain"] for x in xs if x["jain"] is not None]
        print(f"| {name} | {alloc[0]:.1f} ± {alloc[1]:.1f} | {d('p50'):.2f} | {d('p95'):.1f} | {d('p99'):.1f} "
              f"| {sum(col('violations'))} ({max(col('violations'))}) | {sum(col('owed_without_room'))} ({max(col('owed_without_room'))}) "
              f"| {max(col('worst_owed_wait')) / 60:.0f} | {statistics.mean(jain):.3f} ({min(jain):.3f}) "
              f"| {statistics.mean(col('preemptions')):.0f} | {statistics.mean(col('reclaims')):.0f} "
              f"| {statistics.mean(col('waiting_at_end')):.0f} | {statistics.mean(col('refused')):.0f} | {all(col('ledger_exact'))} |")
    if "strict-quota" in names:
        g, s = names.index("gantry"), names.index("strict-quota")
        gap = [r[g]["mean_allocated_pct"] - r[s]["mean_allocated_pct"] for r in runs]
        ratio = [r[g]["delays"]["p95"] / max(r[s]["delays"]["p95"], 1) for r in runs]
        print(f"\ngantry - strict-quota allocation: {statistics.mean(gap):.1f} points (min {min(gap):.1f}); "
              f"p95 wait ratio gantry / strict-quota: {statistics.mean(ratio):.3f} (max {max(ratio):.3f})")
    print("\np95 wait by kind (h, mean over seeds):")
    for i, name in enumerate(names):
        kinds = {}
        for r in runs:
            for k, dl in r[i]["delays_by_kind"]:
                kinds.setdefault(k, []).append(dl["p95"] / h)
        print(f"  {name}: " + ", ".join(f"{k} {statistics.mean(v):.1f}" for k, v in kinds.items()))


if __name__ == "__main__":
    main()
