#!/usr/bin/env bash
# Where tenant B's throughput goes when tenant A bursts (issue 18's isolation row), with the CPU accounted for:
# one AppHost as in run-overload.sh, then ROUNDS rounds of
#   b-alone:  team-b at 2 users for POINT_SECONDS;
#   b-with-a: team-a at 4x the knee (KNEE*4 users, started 5 s before B and stopped after it), team-b at 2 users;
# and in each phase, from 8 s after B starts for POINT_SECONDS-10 s, the CPU seconds of the AppHost (by thread: the
# decode loop, the kernel workers, the rest), of each load-tool process and of the whole machine, and the decoder's
# forward passes over the same window: how many, how long, how wide (lib/cpu-sample.py).
#   loadtest/run-isolation.sh [OUT_DIR]        (about 2 minutes a round)
# Env: MODEL_DIR, KNEE (16), POINT_SECONDS (30), ROUNDS (2), HONOR_RETRY_AFTER (1), TTFT_TARGET, EXTRA as in
# run-overload.sh; NICE_A: run A's load tool at this nice level (the load generator is not the system under test:
# niced, it yields the cores to the server, as a generator on another machine would); RENICE_ENGINE (below).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-loadtest/results/$(date -u +%F)-isolation}"
model="${MODEL_DIR:-models/xgenmm-nano}"
knee="${KNEE:-16}"
secs="${POINT_SECONDS:-30}"
rounds="${ROUNDS:-2}"
mkdir -p "$out"

# shellcheck source=loadtest/lib/apphost.sh
. loadtest/lib/apphost.sh
build_apphost_and_loadtool

start_bench_apphost "$out/gateway.log" "$model"

lt=(dotnet loadtest/XGenMM.LoadTest/bin/Release/net10.0/xgenmm-loadtest.dll)
common=(--url "$url" --input-words 32 --output-tokens 32 --slo-ttft-ms 1000 --slo-tpot-ms 50 --warmup 4 --requests 100000
  --duration "$secs" --drain-timeout 30 --request-timeout 60 --refusal-pause 0.25 --quiet)
[ "${HONOR_RETRY_AFTER:-1}" = 1 ] && common+=(--honor-retry-after)
nice_a=()
[ -n "${NICE_A:-}" ] && nice_a=(nice -n "$NICE_A")
x4=$((knee * 4))
sample=(python3 loadtest/lib/cpu-sample.py --delay 8 --window $((secs - 10)) --threads apphost --metrics "$url/metrics")
echo "uptime $(uptime); NICE_A=${NICE_A:-}; RENICE_ENGINE=${RENICE_ENGINE:-}" | tee "$out/uptime.txt"

# The first requests after a start pay the JIT (tiered compilation took a quarter of a core through the first B-alone
# point): a short unmeasured burst of both tenants first.
"${lt[@]}" "${common[@]}" --tenant team-a:bench-key:1 --tenant team-b:team-b-key:1 --mode closed --concurrency "$x4" --duration 15 \
  --experiment warm-up --note "Warm-up, not measured." --out "$out/warm-up" >/dev/null

# RENICE_ENGINE=N: the AppHost's decode loop and kernel workers at nice N (negative: ahead of the gateway's threads
# and the load tools on the shared cores; needs root or CAP_SYS_NICE), to see how much of B's loss is the cores.
if [ -n "${RENICE_ENGINE:-}" ]; then
  for task in /proc/$apphost_pid/task/*; do
    case "$(cat "$task/comm")" in decode-*|xgenmm-kernel*) renice -n "$RENICE_ENGINE" -p "${task##*/}" >/dev/null ;; esac
  done
fi

for r in $(seq 1 "$rounds"); do
  d="$out/round-$r"
  mkdir -p "$d"
  "${lt[@]}" "${common[@]}" --tenant team-b:team-b-key --mode closed --concurrency 2 \
    --experiment b-alone --note "Tenant B alone: 2 concurrent streams." --out "$d/b-alone" &
  b=$!
  "${sample[@]}" --out "$d/b-alone/cpu.json" apphost=$apphost_pid load-b=$b
  wait $b

  "${nice_a[@]}" "${lt[@]}" "${common[@]}" --tenant team-a:bench-key --mode closed --concurrency "$x4" --duration $((secs + 30)) \
    --warmup 0 --experiment a-burst --note "Tenant A bursting at 4x the knee ($x4 users) while B runs." --out "$d/a-burst" &
  a=$!
  sleep 5
  "${lt[@]}" "${common[@]}" --tenant team-b:team-b-key --mode closed --concurrency 2 \
    --experiment b-with-a --note "Tenant B, 2 concurrent streams, while tenant A bursts at 4x the knee ($x4 users)." \
    --out "$d/b-with-a" &
  b=$!
  "${sample[@]}" --out "$d/b-with-a/cpu.json" apphost=$apphost_pid load-a=$a load-b=$b
  wait $b
  wait $a || true
done
echo "uptime $(uptime)" | tee -a "$out/uptime.txt"
python3 loadtest/lib/summarize-isolation.py "$out" | tee "$out/summary.md"
gzip -f "$out"/gateway.log "$out"/warm-up/requests.csv "$out"/round-*/*/requests.csv
