#!/usr/bin/env bash
# The overload and tenant-isolation measurement of issue 18 (loadtest/results/2026-12-04-overload/report.md):
# starts XGenMM.AppHost in Local mode on a free loopback port with the two tenants of plans/bench-tenants.json (roomy
# limits: quotas do not shape the result, admission control does), then
#   1. knee:      closed loop at 1..32 users (team-a), 32 words in, 32 tokens out;
#   2. overload:  closed loop at 1x, 3x and 10x the knee (KNEE users), team-a and team-b sharing 1:1; a refused user
#                 pauses REFUSAL_PAUSE s before its next request (with HONOR_RETRY_AFTER=1: the refusal's Retry-After,
#                 as OpenAI's client libraries do);
#   3. isolation: team-b alone at 2 users, then team-b at 2 users while team-a bursts at 4x the knee (two load-tool
#                 processes, team-a started first and stopped after team-b's point).
#   loadtest/run-overload.sh [OUT_DIR]          (about 6 minutes; rerun on a quiet machine: uptime is recorded)
# Env: MODEL_DIR (models/xgenmm-nano), KNEE (8), POINT_SECONDS (30), REFUSAL_PAUSE (0.25), HONOR_RETRY_AFTER (empty),
# TTFT_TARGET (the gateway's default when empty), EXTRA (more gateway flags).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-loadtest/results/$(date -u +%F)-overload}"
model="${MODEL_DIR:-models/xgenmm-nano}"
knee="${KNEE:-8}"
secs="${POINT_SECONDS:-30}"
pause="${REFUSAL_PAUSE:-0.25}"
mkdir -p "$out"

# shellcheck source=loadtest/lib/apphost.sh
. loadtest/lib/apphost.sh
build_apphost_and_loadtool

start_bench_apphost "$out/gateway.log" "$model"

lt=(dotnet loadtest/XGenMM.LoadTest/bin/Release/net10.0/xgenmm-loadtest.dll)
common=(--url "$url" --input-words 32 --output-tokens 32 --slo-ttft-ms 1000 --slo-tpot-ms 50 --warmup 4 --requests 100000
  --duration "$secs" --drain-timeout 30 --request-timeout 60 --refusal-pause "$pause" --quiet)
[ -n "${HONOR_RETRY_AFTER:-}" ] && common+=(--honor-retry-after)
note=(--run-note "Server: XGenMM.AppHost (Local mode, TorchSharp on the CPU) serving $model on $url; load generator on the same $(nproc)-core machine. uptime at the start: $(uptime)")
echo "uptime $(uptime)" | tee "$out/uptime.txt"

"${lt[@]}" "${common[@]}" "${note[@]}" --tenant team-a:bench-key --mode closed --concurrency 1,2,4,8,16,32 --duration 15 \
  --experiment knee --note "Closed loop, one tenant: where output tok/s stops rising (the knee, 1x)." --out "$out/knee"

x3=$((knee * 3)); x10=$((knee * 10)); x4=$((knee * 4))
"${lt[@]}" "${common[@]}" "${note[@]}" --tenant team-a:bench-key:1 --tenant team-b:team-b-key:1 --mode closed --concurrency "$knee,$x3,$x10" \
  --experiment overload --note "Closed loop at 1x, 3x and 10x the knee ($knee users), two tenants 1:1; a refused user pauses ${HONOR_RETRY_AFTER:+for the Retry-After of the refusal, else }$pause s." --out "$out/overload"
echo "uptime $(uptime)" | tee -a "$out/uptime.txt"

"${lt[@]}" "${common[@]}" "${note[@]}" --tenant team-b:team-b-key --mode closed --concurrency 2 \
  --experiment b-alone --note "Tenant B alone: 2 concurrent streams." --out "$out/b-alone"
# A bursts at 4x the knee for longer than B's point (warm-up and drain included), and is stopped after it.
"${lt[@]}" "${common[@]}" --tenant team-a:bench-key --mode closed --concurrency "$x4" --duration $((secs + 30)) --warmup 0 \
  --experiment a-burst --note "Tenant A bursting at 4x the knee ($x4 users) while B runs." --out "$out/a-burst" &
burst=$!
sleep 5
"${lt[@]}" "${common[@]}" "${note[@]}" --tenant team-b:team-b-key --mode closed --concurrency 2 \
  --experiment b-with-a --note "Tenant B, 2 concurrent streams, while tenant A bursts at 4x the knee ($x4 users)." --out "$out/b-with-a"
wait $burst || true
echo "uptime $(uptime)" | tee -a "$out/uptime.txt"
"${lt[@]}" report "$out/knee/results.json" "$out/overload/results.json" "$out/b-alone/results.json" "$out/b-with-a/results.json" "$out/a-burst/results.json" --out "$out"
