#!/usr/bin/env bash
# Calibration of the admission capacity model (issue 18): starts XGenMM.AppHost in Local mode with admission control
# off and ClusterChat's debug log on, runs a closed loop at several concurrencies, and tabulates the TTFT the router
# predicted for each request (CapacityModel, on the decoder it chose) against the TTFT it measured (the first token's
# arrival at the router), by concurrency.
#   loadtest/calibrate-ttft.sh [OUT_DIR]        (about 2 minutes; both cores busy)
# Env: MODEL_DIR (models/xgenmm-nano), CONCURRENCY (space-separated: "2 4 8 16 32 48"), POINT_SECONDS (10), EXTRA (more gateway flags).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/xgenmm-calibration}"
model="${MODEL_DIR:-models/xgenmm-nano}"
mkdir -p "$out"
# shellcheck source=loadtest/lib/apphost.sh
. loadtest/lib/apphost.sh
build_apphost_and_loadtool
log="$out/gateway.log"
TTFT_TARGET='' start_bench_apphost "$log" "$model" --Logging:LogLevel:XGenMM.Cluster.Client.ClusterChat Debug --Cluster:Admission:TtftTargetSeconds 0
lt=(dotnet loadtest/XGenMM.LoadTest/bin/Release/net10.0/xgenmm-loadtest.dll)
echo "uptime $(uptime)" | tee "$out/uptime.txt"
: >"$out/points.txt"
for c in ${CONCURRENCY:-2 4 8 16 32 48}; do
  start=$(date +%T)
  "${lt[@]}" --url "$url" --input-words 32 --output-tokens 32 --warmup 4 --requests 100000 --duration "${POINT_SECONDS:-10}" \
    --drain-timeout 30 --request-timeout 60 --quiet --tenant team-a:bench-key --mode closed --concurrency "$c" \
    --experiment "calibration-c$c" --out "$out/c$c" >/dev/null
  echo "$c $start $(date +%T)" >>"$out/points.txt"
done
echo "uptime $(uptime)" | tee -a "$out/uptime.txt"
python3 - "$log" "$out/points.txt" <<'PY' | tee "$out/calibration.md"
import re, sys, statistics as st
# Each point's lines by time: a point's requests are those whose first token came between its start and its end.
points = [(int(c), a, b) for c, a, b in (l.split() for l in open(sys.argv[2]))]
rows = {}
pat = re.compile(r"predicted ([\d.]+) s, measured ([\d.]+) s \(slot wait ([\d.]+), prefill ([\d.]+), interleaved ([\d.]+)")
for line in open(sys.argv[1], errors="replace"):
    m = pat.search(line)
    point = next((c for c, a, b in points if a <= line[:8] <= b), None)
    if m and point is not None: rows.setdefault(point, []).append([float(x) for x in m.groups()])
print("| concurrency | requests | predicted p50 | measured p50 | predicted p99 | measured p99 | mean predicted / measured | slot wait / prefill / interleaved (mean) |")
print("|---|---|---|---|---|---|---|---|")
q = lambda xs, f: sorted(xs)[min(len(xs) - 1, int(f * (len(xs) - 1)))]
for c in sorted(rows):
    r = rows[c]; p = [x[0] for x in r]; m = [x[1] for x in r]
    print(f"| {c} | {len(r)} | {q(p,.5)*1000:.1f} ms | {q(m,.5)*1000:.1f} ms | {q(p,.99)*1000:.1f} ms | {q(m,.99)*1000:.1f} ms | "
          f"{st.mean(p)/st.mean(m):.2f} | {st.mean(x[2] for x in r)*1000:.1f} / {st.mean(x[3] for x in r)*1000:.1f} / {st.mean(x[4] for x in r)*1000:.1f} ms |")
PY
