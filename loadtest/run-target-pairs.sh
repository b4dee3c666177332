#!/usr/bin/env bash
# Admission settings compared in one sitting (loadtest/results/2026-12-06-overload-wait/paired): for each round and
# each setting, a fresh XGenMM.AppHost in Local mode (xgenmm-nano, the tenants of plans/bench-tenants.json), a 40 s
# warm-up at 16 users, then the two-tenant closed loop at 1x, 3x and 10x the knee (16, 48, 160 users, POINT_SECONDS
# each), refused users waiting the refusal's Retry-After. Rounds interleave the settings, so a drift of the machine
# falls on all of them; the 1x point of each run is its own knee reference.
#   loadtest/run-target-pairs.sh OUT_DIR [NAME=FLAGS ...]     (about 3 minutes per setting and round)
# Default settings: whole-TTFT-0.075 (the 0.075 s target on the whole predicted TTFT), wait-0.06 and wait-0.05 (the
# target on the predicted wait). Env: ROUNDS (3), POINT_SECONDS (20), MODEL_DIR (models/xgenmm-nano).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: loadtest/run-target-pairs.sh OUT_DIR [NAME=FLAGS ...]}
shift
settings=("$@")
[ ${#settings[@]} -eq 0 ] && settings=(
  "whole-ttft-0.075=--Cluster:Admission:TtftTargetSeconds 0.075 --Cluster:Admission:CountOwnPrefill true"
  "wait-0.06=--Cluster:Admission:TtftTargetSeconds 0.06"
  "wait-0.05=--Cluster:Admission:TtftTargetSeconds 0.05")
model="${MODEL_DIR:-models/xgenmm-nano}"
mkdir -p "$out"

# shellcheck source=loadtest/lib/apphost.sh
. loadtest/lib/apphost.sh
build_apphost_and_loadtool
lt=(dotnet loadtest/XGenMM.LoadTest/bin/Release/net10.0/xgenmm-loadtest.dll)

one_run() { # one_run DIR FLAGS: in a subshell, so each AppHost is stopped by its own EXIT trap
  local dir=$1 extra=$2
  (
    mkdir -p "$dir"
    TTFT_TARGET='' EXTRA="$extra" start_bench_apphost "$dir/gateway.log" "$model"
    common=(--url "$url" --input-words 32 --output-tokens 32 --slo-ttft-ms 1000 --slo-tpot-ms 50 --warmup 4 --requests 100000
      --drain-timeout 30 --request-timeout 60 --honor-retry-after --quiet)
    "${lt[@]}" "${common[@]}" --tenant team-a:bench-key --mode closed --concurrency 16 --duration 40 --experiment warm --out "$dir/warm" >/dev/null
    "${lt[@]}" "${common[@]}" --tenant team-a:bench-key:1 --tenant team-b:team-b-key:1 --mode closed --concurrency 16,48,160 \
      --duration "${POINT_SECONDS:-20}" --experiment overload --note "Gateway flags: $extra" \
      --run-note "uptime at the start: $(uptime)" --out "$dir/overload" >/dev/null
    rm -rf "$dir/warm"
    gzip -f "$dir/overload/requests.csv"
  )
}

for round in $(seq 1 "${ROUNDS:-3}"); do
  for s in "${settings[@]}"; do
    name=${s%%=*}
    echo "round $round: $name"
    one_run "$out/$name-$round" "${s#*=}"
  done
done
python3 loadtest/lib/summarize-pairs.py "$out" | tee "$out/summary.md"
