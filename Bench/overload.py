#!/usr/bin/env python3
"""Overload: does admission keep the latency of admitted requests under the SLO?

Starts `sliceserve serve --slo-ms SLO` on one core (taskset), measures its capacity (closed loop,
4 clients), then sends open-loop Poisson arrivals of single JPEGs at 1x, 4x and 16x that capacity
with Bench/loadgen.py pinned to another core. For each load it reports the admitted requests/s,
p50/p99 of the admitted ones (from each request's scheduled send time), how many were refused
(429) and the p99 of a refusal. Goal: admitted p99 <= SLO at every load, refusals fast (p99 < 5 ms).
If the load generator cannot send at the asked rate, the row says so ("sent").

Writes Bench/results/overload-<host>-<time>.json.
Usage: .venv/bin/python Bench/overload.py [--slo-ms 100] [--seconds 8] [--binary .build/release/sliceserve]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "preba"))
from preprocess import machine, save_report  # noqa: E402
from serve_e2e import stop_server, wait_ready  # noqa: E402
from experiment import make_images  # noqa: E402
import serve  # noqa: E402


def load(args, url, images, rate=None, concurrency=None):
    return serve.load(url, images, args.seconds, concurrency=concurrency, rate=rate,
                      prefix=["taskset", "-c", args.client_cores], extra=["--workers", "256"])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "sliceserve"))
    p.add_argument("--slo-ms", type=float, default=100)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--multiples", default="1,4,16")
    p.add_argument("--port", type=int, default=8471)
    p.add_argument("--server-cores", default="0")
    p.add_argument("--client-cores", default=str(max(0, (os.cpu_count() or 2) - 1)))
    p.add_argument("--photos", default=os.path.join(ROOT, ".cache", "photos"))
    p.add_argument("--out", default=os.path.join(ROOT, "Bench", "results"))
    args = p.parse_args()

    images = make_images(args.photos)
    url = f"http://127.0.0.1:{args.port}"
    threads = len(args.server_cores.split(","))
    server = subprocess.Popen(["taskset", "-c", args.server_cores, args.binary, "serve", "--port", str(args.port),
                               "--slices", f"cpu:{threads}", "--slo-ms", str(args.slo_ms), "--batching", "profile"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_ready(url + "/v2/health/ready"):
            sys.exit("overload: the server never became ready")
        load(args, url, images, concurrency=4)  # warm-up, and a first batch-time measurement
        # Few enough clients that admission refuses none (refused clients would spin and steal CPU).
        capacity = load(args, url, images, concurrency=4)["throughput_rps"]
        print(f"capacity (closed loop, 4 clients): {capacity} req/s", file=sys.stderr)
        rows = []
        for multiple in [float(m) for m in args.multiples.split(",")]:
            rate = round(capacity * multiple, 1)
            summary = load(args, url, images, rate=rate)
            refused = int(summary["errors"].get("429", 0))
            other = {k: v for k, v in summary["errors"].items() if k != "429"}
            row = {"multiple": multiple, "rate": rate, "sent": summary["sent"], "admitted_rps": summary["throughput_rps"],
                   "admitted_p50_ms": summary["p50_ms"], "admitted_p99_ms": summary["p99_ms"], "refused": refused,
                   "refused_p99_ms": summary["refused_p99_ms"], "other_errors": other,
                   "admitted_p99_within_slo": summary["p99_ms"] is not None and summary["p99_ms"] <= args.slo_ms,
                   "refusals_fast": summary["refused_p99_ms"] is None or summary["refused_p99_ms"] < 5}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    finally:
        stop_server(server)

    stamp = datetime.datetime.now()
    report = {"benchmark": "overload", "date": stamp.isoformat(timespec="seconds"), "machine": machine(),
              "server": f"sliceserve serve --slices cpu:{threads} --slo-ms {args.slo_ms} --batching profile (taskset {args.server_cores})",
              "client": f"Bench/loadgen.py open loop, Poisson, taskset {args.client_cores}", "capacity_rps": capacity,
              "slo_ms": args.slo_ms, "rows": rows}
    path = save_report(args.out, "overload", stamp, report, indent=2)
    print(f"{'load':>6} {'rate':>8} {'sent':>6} {'ok/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'429s':>6} {'429 p99':>8}")
    for r in rows:
        print(f"{r['multiple']:>5}x {r['rate']:>8} {r['sent']:>6} {r['admitted_rps']:>7} {r['admitted_p50_ms'] or 0:>8} "
              f"{r['admitted_p99_ms'] or 0:>8} {r['refused']:>6} {r['refused_p99_ms'] or 0:>8}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
