#!/usr/bin/env bash
# The price of a decode row on this machine: one tenant in a closed loop at 1, 2, 4, 8 and 16 users, and for each
# point the decoder's forward passes over the middle of the point (passes per second, mean pass ms, rows and prompt
# positions per pass; lib/cpu-sample.py). Shows what another tenant's rows cost a tenant whose streams keep the
# engine busy (issue 18's isolation row).
#   loadtest/run-pass-cost.sh [OUT_DIR]        (about 2 minutes)
# Env: MODEL_DIR, POINT_SECONDS (20), USERS ("1 2 4 8 16").
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-loadtest/results/$(date -u +%F)-pass-cost}"
model="${MODEL_DIR:-models/xgenmm-nano}"
secs="${POINT_SECONDS:-20}"
mkdir -p "$out"

# shellcheck source=loadtest/lib/apphost.sh
. loadtest/lib/apphost.sh
build_apphost_and_loadtool
start_bench_apphost "$out/gateway.log" "$model"
lt=(dotnet loadtest/XGenMM.LoadTest/bin/Release/net10.0/xgenmm-loadtest.dll)
common=(--url "$url" --input-words 32 --output-tokens 32 --warmup 4 --requests 100000 --duration "$secs"
  --drain-timeout 30 --request-timeout 60 --quiet --tenant team-a:bench-key --mode closed)
"${lt[@]}" "${common[@]}" --concurrency 16 --duration 10 --experiment warm-up --out "$out/warm-up" >/dev/null
echo "| users | req/s | TPOT p50 ms | passes/s | pass ms | rows/pass | prompt pos./pass | engine in passes |" | tee "$out/summary.md"
echo "|---|---|---|---|---|---|---|---|" | tee -a "$out/summary.md"
for users in ${USERS:-1 2 4 8 16}; do
  "${lt[@]}" "${common[@]}" --concurrency "$users" --experiment "c$users" --out "$out/c$users" >/dev/null &
  load=$!
  python3 loadtest/lib/cpu-sample.py --delay 5 --window $((secs - 8)) --metrics "$url/metrics" --out "$out/c$users/cpu.json" apphost=$apphost_pid
  wait $load
  python3 - "$out/c$users" "$users" <<'PY' | tee -a "$out/summary.md"
import json, pathlib, sys
d = pathlib.Path(sys.argv[1])
p = json.loads((d / "results.json").read_text())["experiments"][0]["points"][0]
c = json.loads((d / "cpu.json").read_text())["passes"]
print(f"| {sys.argv[2]} | {p['requestsPerSecond']:.1f} | {p['tpot']['p50']:.2f} | {c['per_second']:.0f} | {c['mean_ms']:.3f} | {c['mean_rows']:.2f} "
      f"| {c['mean_prefill_tokens']:.2f} | {c['busy']:.2f} |")
PY
done
gzip -f "$out"/gateway.log "$out"/*/requests.csv
