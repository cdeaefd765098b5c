#!/usr/bin/env python3
"""Serving benchmark: JPEG classification over HTTP, SliceServe vs a Python peer, same run.

Starts `sliceserve serve` (CPU, dynamic batching) and Bench/peer_server.py (onnxruntime +
Pillow, one request at a time) on the same model, drives each with Bench/loadgen.py on the same
500x375 photos (closed loop at 1 and 8 clients, then open-loop Poisson arrivals at a rate both
should sustain), and writes Bench/results/serve-<host>-<time>.json with a table of requests/s and
latency percentiles. The load generator runs on the same machine and takes CPU from both.

Usage: .venv/bin/python Bench/serve.py [--seconds 8]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from preprocess import machine, make_sets, save_report  # noqa: E402


def wait_ready(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"serve bench: {url} never became ready")


def load(url, images, seconds, concurrency=None, rate=None, prefix=(), extra=()):
    """One Bench/loadgen.py run (under `prefix`, e.g. taskset); its JSON summary."""
    cmd = list(prefix) + [sys.executable, os.path.join(ROOT, "Bench", "loadgen.py"), "--url", url, "--images", images,
                          "--seconds", str(seconds)] + list(extra)
    cmd += ["--rate", str(rate)] if rate else ["--concurrency", str(concurrency)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "sliceserve"))
    parser.add_argument("--seconds", type=float, default=8)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    parser.add_argument("--model", default=os.path.join(cache, "sliceserve", "models", "mobilenet_v2"))
    parser.add_argument("--out", default=os.path.join(ROOT, "Bench", "results"))
    args = parser.parse_args()
    images = make_sets(os.path.join(ROOT, ".cache", "photos"), os.path.join(ROOT, ".cache", "bench"))["small_500x375"]

    servers = {
        "sliceserve": ([args.binary, "serve", "--model", args.model, "--port", "8010", "--max-batch", "16",
                        "--max-queue-delay-us", "3000"], "http://127.0.0.1:8010", "/v2/health/ready"),
        "python_ort_pillow": ([sys.executable, os.path.join(ROOT, "Bench", "peer_server.py"), "--model", args.model, "--port", "8011"],
                              "http://127.0.0.1:8011", None),
    }
    rows = []

    def measure(name, **load_args):
        cmd, url, ready = servers[name]
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if ready:
                wait_ready(url + ready)
            else:
                time.sleep(3)
            results = []
            for kwargs in load_args["runs"]:
                r = load(url, images, args.seconds, **kwargs)
                r["server"] = name
                rows.append(r)
                results.append(r)
                print(json.dumps(r), flush=True)
            return results
        finally:
            process.terminate()
            process.wait(timeout=30)

    for name in servers:
        measure(name, runs=[{"concurrency": 1}, {"concurrency": 8}])
    # Open loop at a rate both sustained in the closed-loop runs (80% of the slower).
    closed8 = {r["server"]: r["throughput_rps"] for r in rows if r["concurrency"] == 8}
    rate = round(0.8 * min(closed8.values()), 1)
    for name in servers:
        measure(name, runs=[{"rate": rate}])

    print()
    print(f"{'server':<20} {'load':<14} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for r in rows:
        load_name = f"open {r['rate']}/s" if r["mode"] == "open" else f"closed {r['concurrency']}"
        print(f"{r['server']:<20} {load_name:<14} {r['throughput_rps']:>8} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['p99_ms']:>8} {sum(r['errors'].values()):>7}")
    stamp = datetime.datetime.now(datetime.timezone.utc)
    report = {"benchmark": "serve_jpeg_classify", "date": stamp.isoformat(timespec="seconds"), "machine": machine(),
              "seconds_per_run": args.seconds, "results": rows}
    path = save_report(args.out, "serve", stamp, report)
    print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
