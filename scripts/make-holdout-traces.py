#!/usr/bin/env python3
"""Writes four openb-style pod lists that Gantry's policy was NOT tuned on, derived from the
default openb pod list with a fixed seed, to check that the policy generalises:
cpuheavy (every pod's CPU x1.4), gpushare-x (60 % of whole 1-GPU pods become sharing pods with
sizes drawn from the trace), gpuspec-x (30 % of GPU pods get a random GPU-model constraint),
multigpu-x (10 % of whole 1-GPU pods become 2, 4 or 8-GPU pods).

It also writes the model-constrained family at shares 0-40 % of GPU pods (gpuspec-c00 ... c40).
The bundled gpuspec10 trace shows how openb constrains pods: mostly to T4 and P100 (the models
with the fewest GPUs per node and the most CPU per GPU), sharing pods only to T4 or P100, whole
pods also to G2, G3 and V100 sets. The generator keeps gpuspec10's own constraints and constrains
further GPU pods, drawing each constraint from gpuspec10's constraints for pods of the same kind
(sharing or whole), so a larger share puts more pressure on the same scarce models. Two other
model mixes with 25 % constrained cover the space: gpuspec-uniform25 (each constraint one model
drawn in proportion to its GPUs in the cluster) and gpuspec-g2heavy25 (every constraint G2, the
most plentiful model).
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

# The model-constrained family, after gpuspec10's pattern (see the docstring).
spec10 = list(csv.DictReader(open(src.replace("default", "gpuspec10"))))
def kind(r):
    return "share" if r["num_gpu"] == "1" and int(r["gpu_milli"]) < 1000 else "whole"
pool = {"share": [], "whole": []}
for r in spec10:
    if r["gpu_spec"]:
        pool[kind(r)].append(r["gpu_spec"])
gpu_pods = [i for i, r in enumerate(spec10) if r["num_gpu"] != "0"]
free = [i for i in gpu_pods if not spec10[i]["gpu_spec"]]
order = random.Random(11).sample(free, len(free))
for pct in (0, 20, 25, 33, 40):
    rs = [dict(r) for r in spec10]
    if pct == 0:
        for r in rs:
            r["gpu_spec"] = ""
    else:
        extra = max(0, round(len(gpu_pods) * pct / 100) - (len(gpu_pods) - len(free)))
        pick = random.Random(pct)
        for i in order[:extra]:
            rs[i]["gpu_spec"] = pick.choice(pool[kind(rs[i])])
    write(f"gpuspec-c{pct:02d}", rs)

nodes = list(csv.DictReader(open(src.replace("pod_list_default", "node_list_gpu_node"))))
by_model = {}
for n in nodes:
    by_model[n["model"]] = by_model.get(n["model"], 0) + int(n["gpu"])
mods, weights = zip(*sorted(by_model.items()))
for name, spec in (("uniform25", lambda g: g.choices(mods, weights)[0]), ("g2heavy25", lambda g: "G2")):
    g = random.Random(25)
    write(f"gpuspec-{name}", [dict(r, gpu_spec=spec(g)) if r["num_gpu"] != "0" and g.random() < 0.25
                              else dict(r, gpu_spec="") for r in spec10])
