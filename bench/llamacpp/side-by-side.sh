#!/usr/bin/env bash
# Side-by-side CPU benchmark: llama.cpp against our engine and model benchmarks on the SAME random weights (the
# benchmarks' "small" Phi-3-shaped text side: hidden 512, 8 layers, 8 heads, ff 1536, vocab 32064), alternating
# runs for several rounds, then medians and ratios. Never run in CI: it builds llama.cpp from source, which only
# happens when asked (--llama-src DIR or --fetch-llama), and takes minutes.
#
#   bench/llamacpp/side-by-side.sh --llama-src ~/src/llama.cpp [--rounds 3] [--threads 2] [--work DIR]
#   bench/llamacpp/side-by-side.sh --fetch-llama            # clones llama.cpp at the pinned commit into the work dir
#   bench/llamacpp/side-by-side.sh --llama-bin DIR           # llama-bench and llama-batched-bench already built
#
# Needs: cmake, a C/C++ compiler, git (for --fetch-llama), python3 (to parse and summarise), the .NET SDK.
set -euo pipefail

# llama.cpp commit the figures in bench/README.md were measured with (master of 2025-07-24).
LLAMA_CPP_COMMIT=e4868d16d24dec55e61bcaadaca28feed8f98b13
LLAMA_CPP_REPO=https://github.com/ggml-org/llama.cpp

repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${TMPDIR:-/tmp}/xgenmm-side-by-side
rounds=3
threads=$(nproc)
llama_src="" llama_bin="" fetch=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --llama-src) llama_src=$2; shift 2 ;;
    --llama-bin) llama_bin=$2; shift 2 ;;
    --fetch-llama) fetch=1; shift ;;
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [[ "${CI:-}" == "true" ]]; then
  echo "side-by-side.sh builds llama.cpp and runs for many minutes: not in CI." >&2
  exit 2
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)

# ---------------------------------------------------------------- llama.cpp (only when asked)
if [[ -z "$llama_bin" ]]; then
  if [[ $fetch == 1 ]]; then
    llama_src=$work/llama.cpp
    if [[ ! -d $llama_src/.git ]]; then
      git init -q "$llama_src"
      git -C "$llama_src" fetch -q --depth 1 "$LLAMA_CPP_REPO" "$LLAMA_CPP_COMMIT"
      git -C "$llama_src" checkout -q FETCH_HEAD
    fi
  fi
  if [[ -z "$llama_src" ]]; then
    echo "say where llama.cpp comes from: --llama-src DIR, --fetch-llama or --llama-bin DIR" >&2
    exit 2
  fi
  llama_src=$(cd "$llama_src" && pwd)
  build=$work/llama-build
  if [[ ! -x $build/bin/llama-bench || ! -x $build/bin/llama-batched-bench ]]; then
    echo "building llama.cpp (CPU only, native) in $build"
    cmake -S "$llama_src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
      -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_CUDA=OFF >"$work/cmake.log"
    nice cmake --build "$build" -j "$(nproc)" --target llama-bench llama-batched-bench >"$work/build.log"
  fi
  llama_bin=$build/bin
fi

# ---------------------------------------------------------------- the same weights for both
echo "building our benchmarks and the exporter (Release)"
for p in bench/XGenMM.LlamaCpp.Export bench/XGenMM.Model.Benchmarks bench/XGenMM.Engine.Benchmarks; do
  dotnet build "$repo/$p" -c Release -v quiet -nologo >"$work/dotnet-build.log"
done
dll() { echo "$repo/bench/$1/bin/Release/net10.0/$1.dll"; }
if [[ ! -f $work/xgenmm-small-q8_0.gguf ]]; then
  dotnet "$(dll XGenMM.LlamaCpp.Export)" "$work" --types=f32,q8_0 --checkpoint
fi

# ---------------------------------------------------------------- alternating rounds
export OMP_NUM_THREADS=$threads
results=$work/results.jsonl
: >"$results"
record() { echo "{\"round\": $1, \"tool\": \"$2\", \"measure\": \"$3\", \"value\": $4}" >>"$results"; }
echo "load before: $(uptime)"
for round in $(seq 1 "$rounds"); do
  echo "round $round/$rounds ($(uptime | sed 's/.*load/load/'))"
  for type in f32 q8_0; do
    "$llama_bin/llama-bench" -m "$work/xgenmm-small-$type.gguf" -p 512 -n 128 -t "$threads" -r 1 -o jsonl >"$work/llama-bench-$type-$round.jsonl" 2>"$work/llama-bench-$type-$round.log"
    python3 - "$work/llama-bench-$type-$round.jsonl" "$round" "$type" >>"$results" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    measure = "prefill512" if r["n_prompt"] > 0 else "decode_b1"
    print(json.dumps({"round": int(sys.argv[2]), "tool": "llama.cpp " + sys.argv[3], "measure": measure, "value": r["avg_ts"]}))
PY
  done
  for type in f32 q8_0; do
    "$llama_bin/llama-batched-bench" -m "$work/xgenmm-small-$type.gguf" -c 4096 -b 2048 -ub 512 -npp 32 -ntg 64 -npl 1,4,16 \
      -t "$threads" --output-format jsonl >"$work/batched-$type-$round.jsonl" 2>"$work/batched-$type-$round.log"
    python3 - "$work/batched-$type-$round.jsonl" "$round" "$type" >>"$results" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"): continue
    r = json.loads(line)
    print(json.dumps({"round": int(sys.argv[2]), "tool": "llama.cpp " + sys.argv[3], "measure": f"decode_streams{r['pl']}", "value": r["speed_tg"]}))
PY
  done

  # Ours: the serving engine with the decoder packed for the CPU kernels (f32 and int8), the same weights.
  dotnet "$(dll XGenMM.Engine.Benchmarks)" weights formats=f32,int8 streams=1,4,16 rounds=1 --threads="$threads" >"$work/engine-$round.txt" 2>&1
  python3 - "$work/engine-$round.txt" "$round" >>"$results" <<'PY'
import json, sys
rnd = int(sys.argv[2])
for line in open(sys.argv[1]):
    if not line.startswith("RESULT "): continue
    kind = line.split()[1]
    f = dict(kv.split("=") for kv in line.split()[2:])
    tool = "ours " + f["format"]
    if kind == "prefill":
        print(json.dumps({"round": rnd, "tool": tool, "measure": "prefill512", "value": float(f["tps"])}))
        continue
    s = f["streams"]
    for measure, key in ((f"decode_streams{s}", "decode_tps"), (f"itl_p50_ms_streams{s}", "itl_p50_ms"), (f"itl_p99_ms_streams{s}", "itl_p99_ms")):
        print(json.dumps({"round": rnd, "tool": tool, "measure": measure, "value": float(f[key])}))
PY
done
echo "load after: $(uptime)"

# ---------------------------------------------------------------- medians and ratios
python3 - "$results" "$rounds" "$threads" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = {}
for r in rows:
    if r["value"] is None: continue
    med.setdefault((r["tool"], r["measure"]), []).append(r["value"])
m = {k: statistics.median(v) for k, v in med.items()}
def get(tool, measure): return m.get((tool, measure))
print(f"\nMedians of {sys.argv[2]} alternating rounds, {sys.argv[3]} threads (tok/s unless marked):\n")
print("| measure | llama.cpp f32 | ours f32 | ours / llama.cpp f32 | llama.cpp q8_0 | ours int8 | ours int8 / llama.cpp q8_0 |")
print("|---|---|---|---|---|---|---|")
labels = [("decode_b1", "decode_streams1", "batch-1 decode (llama-bench tg128 / engine, 1 stream)"),
          ("decode_streams1", "decode_streams1", "1 sequence, decode-only"),
          ("decode_streams4", "decode_streams4", "4 sequences, decode-only aggregate"),
          ("decode_streams16", "decode_streams16", "16 sequences, decode-only aggregate"),
          ("prefill512", "prefill512", "prefill, 512-token prompt")]
fmt = lambda v: "-" if v is None else f"{v:.1f}"
ratio = lambda o, a: "-" if a is None or o is None else f"{o / a:.2f}"
for llama_key, our_key, label in labels:
    a, q = get("llama.cpp f32", llama_key), get("llama.cpp q8_0", llama_key)
    o, o8 = get("ours f32", our_key), get("ours int8", our_key)
    print(f"| {label} | {fmt(a)} | {fmt(o)} | {ratio(o, a)} | {fmt(q)} | {fmt(o8)} | {ratio(o8, q)} |")
print("\nEngine inter-token latency at 16 streams (32-token prompts, 64 new tokens, mixed steps), ms:\n")
print("| weights | ITL p50 | ITL p99 | p99 / p50 |")
print("|---|---|---|---|")
for tool in ("ours f32", "ours int8"):
    p50, p99 = get(tool, "itl_p50_ms_streams16"), get(tool, "itl_p99_ms_streams16")
    if p50 and p99: print(f"| {tool[5:]} | {p50:.1f} | {p99:.1f} | {p99 / p50:.2f} |")
PY
echo "raw results: $results"
