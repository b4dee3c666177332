# Sourced by the loadtest scripts (run from the repository root): builds XGenMM.AppHost and the load tool, starts the
# AppHost in Local mode with the caller's flags, and stops it when the script exits.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

build_apphost_and_loadtool() {
  dotnet build src/XGenMM.AppHost -c Release --nologo -v q
  dotnet build loadtest/XGenMM.LoadTest -c Release --nologo -v q
}

# start_apphost URL LOG [FLAG...]: runs the built AppHost (not "dotnet run", whose parent process the trap would
# stop instead of the gateway) with --urls URL and the flags, its output to LOG; returns once URL/readyz answers
# (exits with the log when the process dies, or after 180 s). The EXIT trap stops it (and runs $apphost_on_exit).
start_apphost() {
  local url=$1 log=$2
  shift 2
  dotnet src/XGenMM.AppHost/bin/Release/net10.0/XGenMM.AppHost.dll --urls "$url" "$@" >"$log" 2>&1 &
  apphost_pid=$!
  trap 'kill $apphost_pid 2>/dev/null; wait $apphost_pid 2>/dev/null || true; eval "${apphost_on_exit:-}"' EXIT
  for _ in $(seq 1 180); do
    curl -sf "$url/readyz" >/dev/null && return 0
    kill -0 $apphost_pid 2>/dev/null || { cat "$log"; exit 1; }
    sleep 1
  done
  echo "the AppHost at $url was not ready after 180 s" >&2
  exit 1
}

# start_bench_apphost LOG MODEL [FLAG...]: start_apphost on a free loopback port (its address in "url") with the flags
# every bench script uses (the model served as xgenmm-nano, the two bench tenants of plans/bench-tenants.json, warnings
# only, free silo and gateway ports), then the given flags, then $TTFT_TARGET as the admission target and the words of
# $EXTRA, where set.
start_bench_apphost() {
  local log=$1 model=$2
  shift 2
  url="http://127.0.0.1:$(free_port)"
  local flags=(--Model:Path "$model" --Gateway:ModelId xgenmm-nano --Tenants:File "$PWD/loadtest/plans/bench-tenants.json"
    --Logging:LogLevel:Default Warning --Cluster:SiloPort "$(free_port)" --Cluster:GatewayPort "$(free_port)" "$@")
  [ -n "${TTFT_TARGET:-}" ] && flags+=(--Cluster:Admission:TtftTargetSeconds "$TTFT_TARGET")
  # shellcheck disable=SC2206
  [ -n "${EXTRA:-}" ] && flags+=($EXTRA)
  start_apphost "$url" "$log" "${flags[@]}"
}
