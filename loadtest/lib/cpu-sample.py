#!/usr/bin/env python3
"""CPU seconds spent by processes (and, for one of them, by thread name) over a window, read from /proc.

    cpu-sample.py --delay 5 --window 20 --out cpu.json --threads apphost [--metrics URL/metrics] apphost=PID load-b=PID

Waits --delay seconds, reads utime+stime of every process and of every thread of the --threads process, waits
--window seconds, reads them again and writes the differences (seconds of CPU, and cores: seconds / window) as JSON.
Threads are grouped by name with trailing digits dropped (xgenmm-kernel-0 and -1 count as xgenmm-kernel-), so the
decode loop, the kernel workers and the rest of the process (gateway, Orleans, the runtime) can be told apart.
A process or thread that ends inside the window counts what it had spent at the first read as spent.
With --metrics, the decoder's forward-pass counters (xgenmm_decoder_pass*) are read at both ends too: passes per
second, mean pass milliseconds, mean decode rows and prompt positions per pass, the seconds per second the engine
thread spent in passes, and the share of steps run with a light tenant protected, the mean row limit then and the heavy
tenants' rows held back per such step.
"""
import argparse
import json
import os
import re
import time
import urllib.request

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(stat_path):
    try:
        with open(stat_path) as f:
            text = f.read()
    except OSError:
        return None
    # comm may hold spaces and parentheses: the fields after it start after the last ')'.
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def thread_ticks(pid):
    groups = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return groups
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        ticks = cpu_ticks(f"/proc/{pid}/task/{tid}/stat")
        if ticks is None:
            continue
        groups[(tid, re.sub(r"\d+$", "", name))] = ticks
    return groups


PASS_COUNTERS = ("xgenmm_decoder_passes_total", "xgenmm_decoder_pass_seconds_total", "xgenmm_decoder_pass_rows_total",
                 "xgenmm_decoder_pass_prefill_tokens_total", "xgenmm_decoder_protected_steps_total",
                 "xgenmm_decoder_protected_row_limit_total", "xgenmm_decoder_held_rows_total")


def pass_counters(url):
    """The pass counters summed over devices (Prometheus text)."""
    totals = dict.fromkeys(PASS_COUNTERS, 0.0)
    with urllib.request.urlopen(url, timeout=10) as response:
        for line in response.read().decode().splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in totals:
                totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0)
    parser.add_argument("--window", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", help="label of the process whose threads are grouped by name")
    parser.add_argument("--metrics", help="the AppHost's /metrics URL, for the decoder's pass counters")
    parser.add_argument("procs", nargs="+", help="label=PID")
    args = parser.parse_args()
    procs = dict(p.split("=", 1) for p in args.procs)

    time.sleep(args.delay)
    start = time.monotonic()
    before = {label: cpu_ticks(f"/proc/{pid}/stat") for label, pid in procs.items()}
    threads_before = thread_ticks(procs[args.threads]) if args.threads else {}
    total_before = cpu_ticks_all()
    metrics_before = pass_counters(args.metrics) if args.metrics else None
    time.sleep(args.window)
    after = {label: cpu_ticks(f"/proc/{pid}/stat") for label, pid in procs.items()}
    threads_after = thread_ticks(procs[args.threads]) if args.threads else {}
    total_after = cpu_ticks_all()
    metrics_after = pass_counters(args.metrics) if args.metrics else None
    wall = time.monotonic() - start

    def seconds(a, b):
        return None if a is None else ((b if b is not None else a) - a) / TICKS

    result = {"window_seconds": round(wall, 3), "cores": os.cpu_count(), "processes": {}, "threads": {}}
    for label in procs:
        s = seconds(before[label], after[label])
        result["processes"][label] = None if s is None else {"cpu_seconds": round(s, 3), "cores": round(s / wall, 3)}
    groups = {}
    for key, ticks in threads_before.items():
        groups[key[1]] = groups.get(key[1], 0) + (threads_after.get(key, ticks) - ticks)
    for key, ticks in threads_after.items():
        if key not in threads_before:  # a thread started inside the window
            groups[key[1]] = groups.get(key[1], 0) + ticks
    for name, ticks in sorted(groups.items(), key=lambda kv: -kv[1]):
        if ticks > 0:
            result["threads"][name] = {"cpu_seconds": round(ticks / TICKS, 3), "cores": round(ticks / TICKS / wall, 3)}
    result["machine_busy_cores"] = round((total_after - total_before) / TICKS / wall, 3)
    if metrics_before:
        d = {k: metrics_after[k] - metrics_before[k] for k in PASS_COUNTERS}
        passes = d["xgenmm_decoder_passes_total"] or 1
        result["passes"] = {
            "per_second": round(d["xgenmm_decoder_passes_total"] / wall, 1),
            "mean_ms": round(1000 * d["xgenmm_decoder_pass_seconds_total"] / passes, 4),
            "mean_rows": round(d["xgenmm_decoder_pass_rows_total"] / passes, 3),
            "mean_prefill_tokens": round(d["xgenmm_decoder_pass_prefill_tokens_total"] / passes, 3),
            "busy": round(d["xgenmm_decoder_pass_seconds_total"] / wall, 3),
            # Steps, not passes: a step is one pass in the mixed policy (the default).
            "protected_share": round(d["xgenmm_decoder_protected_steps_total"] / passes, 3),
            "protected_row_limit": round(d["xgenmm_decoder_protected_row_limit_total"] / d["xgenmm_decoder_protected_steps_total"], 2)
            if d["xgenmm_decoder_protected_steps_total"] else None,
            # Decode rows of the heavy tenants held back a step (their time credit spent), per protected step.
            "held_rows_per_protected_step": round(d["xgenmm_decoder_held_rows_total"] / d["xgenmm_decoder_protected_steps_total"], 2)
            if d["xgenmm_decoder_protected_steps_total"] else None,
        }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


def cpu_ticks_all():
    """Busy ticks of the whole machine: /proc/stat's first line (user nice system idle iowait irq softirq steal ...)
    less idle and iowait."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4]


if __name__ == "__main__":
    main()
