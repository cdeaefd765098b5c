#!/usr/bin/env python3
"""CPU executor benchmark: SliceServe vs onnxruntime on the same model, same threads, same run.

For each model (default: the converted MobileNetV2 and EfficientNet-Lite0, and ResNet-50 with
random weights from Scripts/oracles.py) and thread count
(1 and all cores), measures images/s and median latency at batch 1 and batch 16: SliceServe with
`sliceserve bench model`, onnxruntime (CPUExecutionProvider, intra_op_num_threads = the same)
with seeded random inputs. The two alternate for --rounds rounds and each keeps its best round,
so that a noisy neighbour slowing one measurement does not decide the ratio. Prints the ratios
and writes Bench/results/executor-<host>-<time>.json.

Usage: .venv/bin/python Bench/executor.py [--seconds 3] [--models mobilenet_v2,efficientnet_lite0]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from preprocess import machine, save_report  # noqa: E402
from cpu_ops import model_paths  # noqa: E402


def bench_ort(path, batch, threads, seconds):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(42).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    for _ in range(2):
        session.run(None, {"input": x})
    latencies = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        session.run(None, {"input": x})
        latencies.append((time.perf_counter() - t) * 1000)
    total = time.perf_counter() - start
    latencies.sort()
    return {"images_per_s": len(latencies) * batch / total, "median_ms": latencies[len(latencies) // 2]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "sliceserve"))
    parser.add_argument("--seconds", type=float, default=3.0)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    parser.add_argument("--models-dir", default=os.path.join(cache, "sliceserve", "models"))
    parser.add_argument("--models", default="mobilenet_v2,efficientnet_lite0,resnet50")
    parser.add_argument("--executor", default="cpu", help="SliceServe's executor: cpu (oneDNN where it loads) or cpu-reference")
    parser.add_argument("--out", default=os.path.join(ROOT, "Bench", "results"))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import onnxruntime
    cores = len(os.sched_getaffinity(0))
    rows = []
    for name in args.models.split(","):
        target, path = model_paths(name, args.models_dir)
        for threads in sorted({1, cores}):
            ours, peers = {}, {}
            for _ in range(args.rounds):
                out = subprocess.run([args.binary, "bench", "model", "--model", target, "--executor", args.executor, "--batch", "1,16",
                                      "--threads", str(threads), "--seconds", str(args.seconds)],
                                     check=True, capture_output=True, text=True).stdout
                for r in map(json.loads, out.strip().splitlines()):
                    if r["batch"] not in ours or r["images_per_s"] > ours[r["batch"]]["images_per_s"]:
                        ours[r["batch"]] = r
                for batch in (1, 16):
                    p = bench_ort(path, batch, threads, args.seconds)
                    if batch not in peers or p["images_per_s"] > peers[batch]["images_per_s"]:
                        peers[batch] = p
            for batch in (1, 16):
                peer = peers[batch]
                row = {"model": name, "threads": threads, "batch": batch,
                       "sliceserve_images_per_s": round(ours[batch]["images_per_s"], 1),
                       "sliceserve_median_ms": round(ours[batch]["median_ms"], 2),
                       "onnxruntime_images_per_s": round(peer["images_per_s"], 1),
                       "onnxruntime_median_ms": round(peer["median_ms"], 2)}
                row["ratio"] = round(row["sliceserve_images_per_s"] / row["onnxruntime_images_per_s"], 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    print(f"{'model':<20} {'threads':>7} {'batch':>5} {'sliceserve':>11} {'onnxruntime':>12} {'ratio':>6}")
    for r in rows:
        print(f"{r['model']:<20} {r['threads']:>7} {r['batch']:>5} {r['sliceserve_images_per_s']:>11.1f}"
              f" {r['onnxruntime_images_per_s']:>12.1f} {r['ratio']:>6.2f}")
    print("(images/s, float32, same threads; ratio = SliceServe / onnxruntime)")
    kernels = subprocess.run([args.binary, "doctor", "--json"], capture_output=True, text=True).stdout
    stamp = datetime.datetime.now(datetime.timezone.utc)
    report = {"benchmark": "cpu_executor", "date": stamp.isoformat(timespec="seconds"), "machine": machine(),
              "seconds_per_measurement": args.seconds, "rounds_best_of": args.rounds, "onnxruntime": onnxruntime.__version__,
              "sliceserve_kernels": json.loads(kernels).get("cpuKernels") if kernels else None,
              "sliceserve_executor": args.executor, "sliceserve_cpu_executor": json.loads(kernels).get("cpuExecutor") if kernels else None,
              "results": rows}
    path = save_report(args.out, "executor", stamp, report)
    print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
