#!/usr/bin/env python3
"""Serving on slices, CPU tier: one model served as one instance on all cores vs several smaller
instances ("fake slices": K instances of T threads behind SliceServe's router), same run.

Every figure here is labelled "CPU fake slices (threads of one CPU), not GPU slices": it measures
the router and per-slice batchers, not MIG or SM partitions. Layouts: cpu:1xN (the peer: one
instance on all N cores), then cpu:KxT with K*T = N. For each: closed loop with 8 clients, then
open-loop Poisson arrivals at 80% of the slowest layout's closed-loop rate (p99 at equal load).
Writes Bench/results/slices-cpu-<host>-<time>.json.

A layout ending in "+workers" runs each slice in its own worker process (serve --workers).

Usage: .venv/bin/python Bench/slices.py [--seconds 6] [--layouts cpu:1x2,cpu:2x1,cpu:2x1+workers]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from preprocess import machine, make_sets, save_report  # noqa: E402
from serve import load, wait_ready  # noqa: E402

LABEL = "CPU fake slices (threads of one CPU), not GPU slices"


def main():
    cores = os.cpu_count() or 2
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "sliceserve"))
    parser.add_argument("--seconds", type=float, default=6)
    default_layouts = [f"cpu:1x{cores}"] + [f"cpu:{k}x{cores // k}" for k in (2, 4, 8) if k <= cores and cores % k == 0]
    if len(default_layouts) > 1:
        default_layouts.append(default_layouts[1] + "+workers")  # the same slices, each in a worker process
    parser.add_argument("--layouts", default=",".join(default_layouts))
    parser.add_argument("--out", default=os.path.join(ROOT, "Bench", "results"))
    args = parser.parse_args()
    images = make_sets(os.path.join(ROOT, ".cache", "photos"), os.path.join(ROOT, ".cache", "bench"))["small_500x375"]
    layouts = args.layouts.split(",")
    url = "http://127.0.0.1:8012"
    rows = []

    def measure(layout, runs):
        slices, _, mode = layout.partition("+")
        cmd = [args.binary, "serve", "--port", "8012", "--slices", slices, "--max-batch", "16", "--max-queue-delay-us", "3000",
               "--preprocess", "cpu"] + (["--workers"] if mode == "workers" else [])
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(url + "/v2/health/ready")
            for kwargs in runs:
                r = load(url, images, args.seconds, **kwargs)
                r.update(layout=layout, label=LABEL)
                rows.append(r)
                print(json.dumps(r), flush=True)
        finally:
            process.terminate()
            process.wait(timeout=30)

    for layout in layouts:
        measure(layout, [{"concurrency": 8}])
    rate = round(0.8 * min(r["throughput_rps"] for r in rows), 1)
    for layout in layouts:
        measure(layout, [{"rate": rate}])

    peer = layouts[0]
    base = {r["mode"]: r for r in rows if r["layout"] == peer}
    print(f"\n{LABEL}; peer = {peer} (one instance on all cores)")
    print(f"{'layout':<18} {'load':<14} {'req/s':>8} {'x peer':>7} {'p50 ms':>8} {'p99 ms':>8} {'p99 x peer':>10} {'errors':>7}")
    for r in rows:
        b = base[r["mode"]]
        load_name = f"open {r['rate']}/s" if r["mode"] == "open" else f"closed {r['concurrency']}"
        r["throughput_vs_peer"] = round(r["throughput_rps"] / b["throughput_rps"], 3) if b["throughput_rps"] else None
        r["p99_vs_peer"] = round(r["p99_ms"] / b["p99_ms"], 3) if b["p99_ms"] else None
        print(f"{r['layout']:<18} {load_name:<14} {r['throughput_rps']:>8} {r['throughput_vs_peer']:>7} {r['p50_ms']:>8} "
              f"{r['p99_ms']:>8} {r['p99_vs_peer']:>10} {sum(r['errors'].values()):>7}")
    stamp = datetime.datetime.now(datetime.timezone.utc)
    report = {"benchmark": "serve_on_cpu_fake_slices", "label": LABEL, "peer": peer, "date": stamp.isoformat(timespec="seconds"),
              "machine": machine(), "seconds_per_run": args.seconds, "results": rows}
    path = save_report(args.out, "slices-cpu", stamp, report)
    print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
