#!/usr/bin/env python3
"""Compares Gantry's placement policy with FGD on every bundled openb trace and on the stand-ins
of scripts/make-holdout-traces.py, at the arrival levels issue 17's acceptance names, and says
where Gantry is worse than FGD by more than FGD's seed-to-seed standard deviation.
Usage: scripts/compare-placement.py [--gantry PATH] [--holdout DIR] [--seeds 42-51]"""
import argparse, glob, json, os, subprocess, sys, tempfile

LEVELS = (75, 80, 90, 95, 100, 110, 120, 130)
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ap = argparse.ArgumentParser()
ap.add_argument("--gantry", default=os.path.join(root, "target", "release", "gantry"))
ap.add_argument("--holdout", default=None, help="stand-ins directory (made here when absent)")
ap.add_argument("--seeds", default="42-51")
ap.add_argument("--policies", default="fgd,gantry", help="baseline first, candidate second")
a = ap.parse_args()
hold = a.holdout or tempfile.mkdtemp(prefix="gantry-holdout-")
if not glob.glob(os.path.join(hold, "*.csv")):
    subprocess.run([sys.executable, os.path.join(root, "scripts", "make-holdout-traces.py"), hold], check=True)
traces = sorted(glob.glob(os.path.join(root, "traces", "openb", "openb_pod_list_*.csv")))
traces += sorted(glob.glob(os.path.join(hold, "openb_pod_list_*.csv")))
base, cand = a.policies.split(",")
print(f"unallocated GPU % (mean over seeds {a.seeds}); {cand} - {base}; '!' = worse by more than one sd")
print(f"{'trace':<18}" + "".join(f"{l:>8}" for l in LEVELS))
worse = 0
for t in traces:
    out = subprocess.run([a.gantry, "simulate", "--pods", t, "--policies", a.policies, "--seeds", a.seeds,
                          "--format", "json"], check=True, capture_output=True, text=True).stdout
    res = {r["policy"]: {p["arrived"]: p for p in r["unallocated_gpu_pct"]} for r in json.loads(out)["results"]}
    row = ""
    for l in LEVELS:
        b, c = res[base].get(l), res[cand].get(l)
        if b is None or c is None:
            row += f"{'-':>8}"
            continue
        d = c["mean"] - b["mean"]
        bad = d > 0 and d > b["sd"]
        worse += bad
        row += f"{d:>+7.2f}{'!' if bad else ' '}"
    name = os.path.basename(t)[len("openb_pod_list_"):-4]
    print(f"{name:<18}{row}   (at 100: {base} {res[base][100]['mean']:.2f}, {cand} {res[cand][100]['mean']:.2f})")
print(f"{worse} cells worse by more than one sd")
