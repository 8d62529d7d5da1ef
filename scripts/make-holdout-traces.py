#!/usr/bin/env python3
"""Writes four openb-style pod lists that Gantry's policy was NOT tuned on, derived from the
default openb pod list with a fixed seed, to check that the policy generalises:
cpuheavy (every pod's CPU x1.4), gpushare-x (60 % of whole 1-GPU pods become sharing pods with
sizes drawn from the trace), gpuspec-x (30 % of GPU pods get a random GPU-model constraint),
multigpu-x (10 % of whole 1-GPU pods become 2, 4 or 8-GPU pods).
Usage: scripts/make-holdout-traces.py OUTDIR"""
import csv, os, random, sys

src = os.path.join(os.path.dirname(__file__), "..", "traces", "openb", "openb_pod_list_default.csv")
out = sys.argv[1] if len(sys.argv) > 1 else "holdout"
os.makedirs(out, exist_ok=True)
rows = list(csv.DictReader(open(src)))
hdr = list(rows[0].keys())
rnd = random.Random(7)

def write(name, rs):
    with open(os.path.join(out, f"openb_pod_list_{name}.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=hdr)
        w.writeheader()
        w.writerows(rs)

def whole1(r):
    return r["num_gpu"] == "1" and r["gpu_milli"] == "1000"

write("cpuheavy", [dict(r, cpu_milli=str(int(int(r["cpu_milli"]) * 1.4))) for r in rows])
write("multigpu-x", [dict(r, num_gpu=str(rnd.choice([2, 2, 4, 8]))) if whole1(r) and rnd.random() < 0.1 else r for r in rows])
models = ["G2", "T4", "P100", "V100M16", "V100M32", "G3"]
write("gpuspec-x", [dict(r, gpu_spec="|".join(rnd.sample(models, rnd.choice([1, 1, 2, 3]))))
                    if r["num_gpu"] != "0" and rnd.random() < 0.3 else r for r in rows])
shares = [r["gpu_milli"] for r in rows if r["num_gpu"] == "1" and int(r["gpu_milli"]) < 1000]
write("gpushare-x", [dict(r, gpu_milli=rnd.choice(shares)) if whole1(r) and rnd.random() < 0.6 else r for r in rows])
