#!/usr/bin/env bash
# usage: loadtest/results/2026-12-06-overload-wait/step-bound/iso.sh OUT SLOWDOWN (after loadtest/run-overload.sh built the AppHost and the load tool)
set -euo pipefail
cd "$(dirname "$0")/../../../.."
. loadtest/lib/apphost.sh
out=$1; mkdir -p "$out"
port=$(free_port); url=http://127.0.0.1:$port
start_apphost "$url" "$out/gateway.log" --Model:Path models/xgenmm-nano --Gateway:ModelId xgenmm-nano --Tenants:File "$PWD/loadtest/plans/bench-tenants.json" \
  --Logging:LogLevel:Default Warning --Cluster:SiloPort "$(free_port)" --Cluster:GatewayPort "$(free_port)" --Engine:Decode:SharedStepSlowdown "$2"
lt=(dotnet loadtest/XGenMM.LoadTest/bin/Release/net10.0/xgenmm-loadtest.dll)
common=(--url "$url" --input-words 32 --output-tokens 32 --slo-ttft-ms 1000 --slo-tpot-ms 50 --warmup 4 --requests 100000
  --duration 30 --drain-timeout 30 --request-timeout 60 --quiet --honor-retry-after)
"${lt[@]}" "${common[@]}" --tenant team-a:bench-key --mode closed --concurrency 16 --duration 20 --experiment warm --out "$out/warm" >/dev/null
"${lt[@]}" "${common[@]}" --tenant team-b:team-b-key --mode closed --concurrency 2 --experiment b-alone --out "$out/b-alone" >/dev/null
"${lt[@]}" "${common[@]}" --tenant team-a:bench-key --mode closed --concurrency 64 --duration 60 --warmup 0 --experiment a-burst --out "$out/a-burst" >/dev/null &
b=$!
sleep 5
"${lt[@]}" "${common[@]}" --tenant team-b:team-b-key --mode closed --concurrency 2 --experiment b-with-a --out "$out/b-with-a" >/dev/null
wait $b
python3 - "$out" <<'PY'
import json,sys
d=sys.argv[1]
def p(n): return json.load(open(f"{d}/{n}/results.json"))["experiments"][0]["points"][0]
a,w,ab=p("b-alone"),p("b-with-a"),p("a-burst")
print(d, "B alone %.1f req/s p99 %.1f | with A %.1f req/s p99 %.1f | ratio thr %.2f ttft %.2f | TPOT p50 %.2f -> %.2f | A %.1f req/s" % (
  a["throughput"] if "throughput" in a else a["requestsPerSecond"], a["ttft"]["p99"], w.get("throughput", w.get("requestsPerSecond")), w["ttft"]["p99"],
  w.get("throughput", w.get("requestsPerSecond"))/a.get("throughput", a.get("requestsPerSecond")), w["ttft"]["p99"]/a["ttft"]["p99"], a["tpot"]["p50"], w["tpot"]["p50"], ab.get("throughput", ab.get("requestsPerSecond"))))
PY
