"""Summarises loadtest/run-isolation.sh: per round and phase, B's throughput, TTFT and TPOT, A's admitted and refused
requests, and where the CPU went (cores: CPU seconds per second of the window, out of the machine's cores)."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1])


def point(path):
    return json.loads(path.read_text())["experiments"][0]["points"][0]


def cores(cpu, group, name):
    entry = cpu[group].get(name)
    return entry["cores"] if entry else 0.0


print("| round | phase | B req/s | B TTFT p50 / p99 ms | B TPOT p50 ms | A ok / refused | passes/s | pass ms | rows/pass "
      "| prompt pos./pass | engine in passes | steps protecting B (mean row limit; A rows held a step) | AppHost cores: decode / kernel workers / rest | load A | load B | machine busy |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
ratios = []
for rnd in sorted(p for p in root.iterdir() if p.name.startswith("round-")):
    alone = None
    for phase in ("b-alone", "b-with-a"):
        b = point(rnd / phase / "results.json")
        cpu = json.loads((rnd / phase / "cpu.json").read_text())
        decode = sum(v["cores"] for k, v in cpu["threads"].items() if k.startswith("decode-"))
        kernel = sum(v["cores"] for k, v in cpu["threads"].items() if k.startswith("xgenmm-kernel"))
        rest = cores(cpu, "processes", "apphost") - decode - kernel
        a_cell = "-"
        if (rnd / "a-burst" / "results.json").exists() and phase == "b-with-a":
            a = point(rnd / "a-burst" / "results.json")
            a_cell = f"{a['succeeded']} / {a['failed']}"
        load_a = f"{cores(cpu, 'processes', 'load-a'):.2f}" if "load-a" in cpu["processes"] else "-"
        p = cpu.get("passes") or {}
        passes = " | ".join(f"{p[k]:{f}}" if k in p else "-" for k, f in
                            (("per_second", ".0f"), ("mean_ms", ".3f"), ("mean_rows", ".1f"), ("mean_prefill_tokens", ".1f"), ("busy", ".2f")))
        protected = "-" if "protected_share" not in p else f"{p['protected_share']:.0%}" + (
            f" ({p['protected_row_limit']:.1f}" + (f"; {p['held_rows_per_protected_step']:.2f}" if p.get("held_rows_per_protected_step") is not None else "")
            + ")" if p.get("protected_row_limit") is not None else "")
        print(f"| {rnd.name} | {phase} | {b['requestsPerSecond']:.1f} | {b['ttft']['p50']:.1f} / {b['ttft']['p99']:.1f} "
              f"| {b['tpot']['p50']:.2f} | {a_cell} | {passes} | {protected} | {decode:.2f} / {kernel:.2f} / {rest:.2f} | {load_a} "
              f"| {cores(cpu, 'processes', 'load-b'):.2f} | {cpu['machine_busy_cores']:.2f} of {cpu['cores']} |")
        if phase == "b-alone":
            alone = b
        else:
            ratios.append((b["requestsPerSecond"] / alone["requestsPerSecond"], b["ttft"]["p99"] / alone["ttft"]["p99"]))
print()
for i, (tput, ttft) in enumerate(ratios, 1):
    print(f"round {i}: B beside A / alone: throughput {tput:.2f} ({(tput - 1) * 100:+.0f}%), TTFT p99 {ttft:.2f}x")
