#!/usr/bin/env bash
# Starts a local multi-process XGenMM cluster on loopback: redis-server (membership), N vision silos, M decoder
# silos and the gateway (when built), every HTTP port on 127.0.0.1 only. Stop it with `deploy/local/cluster.sh stop`.
#   deploy/local/cluster.sh start [vision=1] [decoders=2]     MODEL=/path/to/checkpoint (default: embedded nano)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=.tools/local-cluster
mkdir -p "$RUN"
REDIS_PORT=${REDIS_PORT:-6390}

start() {
  local vision=${1:-1} decoders=${2:-2}
  command -v redis-server >/dev/null || bash build/install-test-deps.sh
  dotnet build src/XGenMM.Silo -c Release -v quiet -nologo >/dev/null
  [ -d src/XGenMM.Gateway ] && dotnet build src/XGenMM.Gateway -c Release -v quiet -nologo >/dev/null
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$RUN/redis.log" 2>&1 &
  echo $! >"$RUN/redis.pid"
  local common=(Cluster__Clustering=Redis Cluster__RedisConnectionString=127.0.0.1:$REDIS_PORT Cluster__ClusterId=local Model__Path="${MODEL:-}")
  local n=0
  launch() { # name roles
    env "${common[@]}" Silo__Roles="$2" Silo__HttpAddress=127.0.0.1 Silo__HttpPort=$((18080 + n)) Cluster__SiloPort=$((11111 + n)) Cluster__GatewayPort=$((30000 + n)) \
      Cluster__SiloName="$1" dotnet src/XGenMM.Silo/bin/Release/net10.0/XGenMM.Silo.dll >"$RUN/$1.log" 2>&1 &
    echo $! >"$RUN/$1.pid"
    echo "silo $1 ($2): http://127.0.0.1:$((18080 + n))/readyz  log $RUN/$1.log"
    n=$((n + 1))
  }
  for i in $(seq 1 "$vision"); do launch "vision-$i" vision; done
  for i in $(seq 1 "$decoders"); do launch "decoder-$i" decoder; done
  if [ -f src/XGenMM.Gateway/bin/Release/net10.0/XGenMM.Gateway.dll ]; then
    # A Cluster-mode gateway needs tenants: one "local" tenant whose key is stored hashed, as in production.
    local key="xg-local-$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
    local hash
    hash=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)
    printf '{"tenants":[{"id":"local","keySha256":["%s"]}]}\n' "$hash" >"$RUN/tenants.json"
    env "${common[@]}" Gateway__Mode=Cluster Tenants__File="$RUN/tenants.json" ASPNETCORE_URLS=http://127.0.0.1:8080 dotnet src/XGenMM.Gateway/bin/Release/net10.0/XGenMM.Gateway.dll >"$RUN/gateway.log" 2>&1 &
    echo $! >"$RUN/gateway.pid"
    echo "gateway: http://127.0.0.1:8080/  log $RUN/gateway.log"
    echo "API key (tenant 'local'): $key"
  fi
}

stop() {
  # SIGTERM first: silos drain their decoders and leave the cluster cleanly.
  for pid in "$RUN"/*.pid; do [ -f "$pid" ] && kill -TERM "$(cat "$pid")" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    alive=0
    for pid in "$RUN"/*.pid; do [ -f "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 1
  done
  for pid in "$RUN"/*.pid; do [ -f "$pid" ] && kill -KILL "$(cat "$pid")" 2>/dev/null || true; rm -f "$pid"; done
  echo "stopped"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  *) echo "usage: $0 start [vision] [decoders] | stop" >&2; exit 2 ;;
esac
