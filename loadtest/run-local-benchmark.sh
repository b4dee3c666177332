#!/usr/bin/env bash
# Runs the documented local benchmark: starts XGenMM.AppHost (Local mode: gateway and silo in one process) on
# 127.0.0.1:5099 with the given model, runs loadtest/plans/local.plan against it, stops the gateway.
#   loadtest/run-local-benchmark.sh [MODEL_DIR] [OUT_DIR]
# MODEL_DIR defaults to models/xgenmm-nano; OUT_DIR to loadtest/results/<date>-local. MODEL_ID (default: the
# directory's name) is the id the gateway serves; NOTE adds a line to the report's machine section.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-models/xgenmm-nano}"
out="${2:-loadtest/results/$(date -u +%F)-local}"
port=5099

# shellcheck source=loadtest/lib/apphost.sh
. loadtest/lib/apphost.sh
build_apphost_and_loadtool

log=$(mktemp)
apphost_on_exit='rm -f "$log"'
start_apphost "http://127.0.0.1:$port" "$log" --Model:Path "$model" --Gateway:ModelId "${MODEL_ID:-$(basename "$model")}" \
  --Tenants:File "$PWD/loadtest/plans/bench-tenants.json" --Logging:LogLevel:Default Warning

notes=(--run-note "Server: XGenMM.AppHost (Local mode: gateway + one silo with the vision and decoder roles in one process, TorchSharp on the CPU) serving $model on 127.0.0.1:$port; the load generator ran on the same $(nproc)-core machine.")
[ -n "${NOTE:-}" ] && notes+=(--run-note "$NOTE")
dotnet loadtest/XGenMM.LoadTest/bin/Release/net10.0/xgenmm-loadtest.dll --plan loadtest/plans/local.plan --out "$out" "${notes[@]}"
