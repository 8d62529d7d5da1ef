#!/usr/bin/env bash
# The node agent against real NVML: build it, record a capture of a few passes, check it against
# nvidia-smi (UUIDs, models, memory, power in range and converted from mW, utilization and
# temperature in range), then serve the capture and check the metrics' names and units.
#
#   scripts/gpu-check.sh [OUT_DIR]      # default: node-agent/tests/captures/<hostname>
#
# It writes OUT_DIR/capture.json (commit it: the replay tests can use it), nvidia-smi.csv,
# metrics.txt and check.log. Exit status 0 only when every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-node-agent/tests/captures/$(hostname)}"
mkdir -p "$out"
log="$out/check.log"
: > "$log"
say() { echo "$*" | tee -a "$log"; }

command -v nvidia-smi >/dev/null || { say "FAIL: nvidia-smi not found; run this on a node with an NVIDIA GPU and driver"; exit 1; }
say "== build"
cargo build --release -p gantry 2>&1 | tail -1 | tee -a "$log"
bin=target/release/gantry

say "== record 5 passes through NVML"
start=$(date +%s.%N)
"$bin" node-agent --record "$out/capture.json" --passes 5 --interval 1 > /dev/null
end=$(date +%s.%N)
say "recorded in $(echo "$end - $start" | bc) s (4 s of it waiting between passes)"
nvidia-smi --query-gpu=index,uuid,name,memory.total,power.draw,temperature.gpu,utilization.gpu,driver_version \
  --format=csv,noheader,nounits > "$out/nvidia-smi.csv"

say "== compare with nvidia-smi"
python3 - "$out/capture.json" "$out/nvidia-smi.csv" <<'PY' | tee -a "$log"
import csv, json, sys
cap = json.load(open(sys.argv[1]))
smi = {r[0].strip(): [c.strip() for c in r] for r in csv.reader(open(sys.argv[2]))}
fails = 0
def check(ok, what):
    global fails
    print(("ok   " if ok else "FAIL ") + what)
    fails += 0 if ok else 1
frame = cap["frames"][-1]
check(len(frame["gpus"]) == len(smi), f"{len(frame['gpus'])} GPUs, nvidia-smi lists {len(smi)}")
check(cap.get("driverVersion") == next(iter(smi.values()))[7], f"driver {cap.get('driverVersion')}")
for g in frame["gpus"]:
    i = str(g["index"]); row = smi.get(i)
    if row is None:
        check(False, f"GPU {i} not in nvidia-smi"); continue
    check(g["uuid"] == row[1], f"GPU {i} uuid {g['uuid']}")
    check(g["model"] == row[2], f"GPU {i} model {g['model']!r}")
    if "memoryTotalBytes" in g:
        check(abs(g["memoryTotalBytes"] / 2**20 - float(row[3])) <= 1, f"GPU {i} memory {g['memoryTotalBytes'] / 2**20:.0f} MiB vs {row[3]} MiB")
    if "powerMilliwatts" in g and row[4] not in ("[N/A]", "N/A"):
        w = g["powerMilliwatts"] / 1000
        check(0 < w < 2000 and abs(w - float(row[4])) < max(50, 0.3 * float(row[4])), f"GPU {i} power {w:.1f} W (nvidia-smi {row[4]} W)")
    if "temperatureCelsius" in g:
        check(0 < g["temperatureCelsius"] < 120, f"GPU {i} temperature {g['temperatureCelsius']} C")
    for k in ("gpuUtilizationPercent", "memoryUtilizationPercent"):
        if k in g:
            check(0 <= g[k] <= 100, f"GPU {i} {k} {g[k]}")
    if "energyMillijoules" in g:
        e = [f["gpus"][g["index"]].get("energyMillijoules", 0) for f in cap["frames"] if len(f["gpus"]) > g["index"]]
        check(all(b >= a for a, b in zip(e, e[1:])), f"GPU {i} energy counter never decreases")
    missing = [k for k in ("ecc", "remappedRows", "migEnabled", "pcieReplays", "smClockMhz") if k not in g]
    print(f"     GPU {i}: fields NVML did not give: {missing or 'none'}")
sys.exit(1 if fails else 0)
PY

say "== serve the capture and read /metrics"
"$bin" node-agent --source "replay:$out/capture.json" --listen 127.0.0.1:19400 --pod-resources-socket none --dcgm-compat --interval 1 2>>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:19400/readyz >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:19400/metrics > "$out/metrics.txt"
for family in gantry_gpu_power_watts gantry_gpu_memory_used_bytes gantry_gpu_health DCGM_FI_DEV_POWER_USAGE DCGM_FI_DEV_FB_USED DCGM_FI_DEV_GPU_UTIL; do
  if grep -q "^$family{" "$out/metrics.txt"; then say "ok   $family"; else say "FAIL $family missing"; exit 1; fi
done
say "== all checks passed; commit $out"
