"""Summarises loadtest/run-target-pairs.sh: per run, admitted TTFT p50/p99 and goodput at 1x, 3x and 10x the knee,
and the 3x / 10x TTFT p99 over the run's own 1x p99 (issue 18 wants both within 2)."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1])
print("| run | 1x TTFT p50 / p99 ms | 3x | 10x | p99 3x / 1x | p99 10x / 1x | goodput 1x / 3x / 10x req/s | refused 1x / 3x / 10x |")
print("|---|---|---|---|---|---|---|---|")
by_setting: dict[str, list[tuple[float, float]]] = {}
for run in sorted(p for p in root.iterdir() if (p / "overload" / "results.json").exists()):
    points = json.loads((run / "overload" / "results.json").read_text())["experiments"][0]["points"]
    knee = points[0]["ttft"]["p99"]
    r3, r10 = points[1]["ttft"]["p99"] / knee, points[2]["ttft"]["p99"] / knee
    by_setting.setdefault(run.name.rsplit("-", 1)[0], []).append((r3, r10))
    ttft = " | ".join(f"{p['ttft']['p50']:.0f} / {p['ttft']['p99']:.0f}" for p in points)
    goodput = " / ".join(f"{p['goodput']:.0f}" for p in points)
    refused = " / ".join(str(p["failed"]) for p in points)
    print(f"| {run.name} | {ttft} | {r3:.2f} | {r10:.2f} | {goodput} | {refused} |")
print()
print("| setting | runs | p99 3x / 1x: mean (max) | p99 10x / 1x: mean (max) | runs with both within 2 |")
print("|---|---|---|---|---|")
for name, ratios in by_setting.items():
    n = len(ratios)
    m3, m10 = sum(r[0] for r in ratios) / n, sum(r[1] for r in ratios) / n
    ok = sum(1 for r in ratios if r[0] <= 2 and r[1] <= 2)
    print(f"| {name} | {n} | {m3:.2f} ({max(r[0] for r in ratios):.2f}) | {m10:.2f} ({max(r[1] for r in ratios):.2f}) | {ok} of {n} |")
