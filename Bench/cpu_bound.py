#!/usr/bin/env python3
"""How fast could any fp32 executor run a model on this core? A bound, beside onnxruntime.

Measures the core's fp32 multiply-add peak (Bench/fma_peak.c: independent FMA chains, the best
rate the core can issue), then takes SliceServe's oneDNN layer profile (`bench model --layers`,
each step's fastest of five runs inside the network, with depthwise convolutions as steps of
their own: SLICESERVE_DNNL_FUSE_DEPTHWISE=0) and asks: if every dense convolution and matrix
product run as direct arithmetic ran at that peak, and every other step (depthwise convolutions,
Winograd convolutions, pooling, reorders) kept oneDNN's measured time, how many images per second
would that be? No fp32 executor that multiplies as many times as direct convolution does and is no
faster than oneDNN on the other steps can beat it: dense layers at 100% of the FMA issue rate are
out of reach (loads, stores and edges cost issue slots; oneDNN's run at 75-85%). Beside it:
SliceServe (its default choices) and onnxruntime measured in the same run, and the ratio to
onnxruntime the bound allows. Writes Bench/results/cpu-bound-<host>-<time>.json.

Usage: .venv/bin/python Bench/cpu_bound.py [--models mobilenet_v2,efficientnet_lite0,resnet50] [--batch 1] [--threads 1]
"""
import datetime
import json
import os
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from preprocess import machine, save_report  # noqa: E402
from cpu_ops import graph_shapes, layers, model_arguments, model_paths  # noqa: E402
from executor import bench_ort  # noqa: E402


def fma_peak():
    out = os.path.join(ROOT, ".cache", "bench-bin", "fma_peak")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    subprocess.run(["gcc", "-O2", "-mavx512f", "-mfma", "-o", out, os.path.join(ROOT, "Bench", "fma_peak.c")], check=True)
    return json.loads(subprocess.run([out], check=True, capture_output=True, text=True).stdout)


def dense_flops(path, batch):
    """Multiply-add FLOPs of each dense (not depthwise) Conv and Gemm/MatMul node, by name."""
    model, dims, weights = graph_shapes(path, batch)
    flops = {}
    for node in model.graph.node:
        w = weights.get(node.input[1]) if len(node.input) > 1 else None
        if w is None or node.output[0] not in dims:
            continue
        out = dims[node.output[0]]
        if node.op_type == "Conv":
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if group > 1 and w[1] == 1:
                continue  # depthwise: memory-bound, kept at its measured time
            n, o, h, wd = out
            flops[node.name] = 2.0 * n * o * h * wd * w[1] * w[2] * w[3]
        elif node.op_type in ("Gemm", "MatMul"):
            flops[node.name] = 2.0 * out[0] * w[0] * w[1]
    return flops


def main():
    parser = model_arguments(__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="onnxruntime's timed seconds per model")
    args = parser.parse_args()
    peak = fma_peak()
    per_thread = peak["avx512_gflops"] or peak["avx2_gflops"]
    rate = per_thread * args.threads * 1e9
    print(f"fp32 FMA peak: {per_thread:.1f} GFLOP/s per core (AVX-512 {peak['avx512_gflops']}, AVX2 {peak['avx2_gflops']}), "
          f"{args.threads} thread(s)")
    rows = []
    for name in args.models.split(","):
        target, path = model_paths(name, args.models_dir)
        flops = dense_flops(path, args.batch)
        summary, _ = layers(args.binary, target, "cpu", args.batch, args.threads)
        os.environ["SLICESERVE_DNNL_FUSE_DEPTHWISE"] = "0"
        try:
            _, steps = layers(args.binary, target, "cpu", args.batch, args.threads)
        finally:
            del os.environ["SLICESERVE_DNNL_FUSE_DEPTHWISE"]
        measured = bound = dense_ms = other_ms = 0.0
        direct_flops = 0.0
        for step in steps:
            measured += step["ms"]
            nodes = step["node"].split("+")
            dense = sum(flops.get(n, 0) for n in nodes)
            if dense > 0 and "wino" not in step["implementation"]:
                direct_flops += dense
                bound += dense / rate * 1000
                dense_ms += step["ms"]
            else:
                bound += step["ms"]
                other_ms += step["ms"]
        ort = bench_ort(path, args.batch, args.threads, args.seconds)
        ours = summary["images_per_s"]
        best = args.batch / bound * 1000
        row = {"model": name, "batch": args.batch, "threads": args.threads,
               "direct_gflop_per_image": round(direct_flops / args.batch / 1e9, 3),
               "direct_ms": round(dense_ms, 3), "direct_gflops_measured": round(direct_flops / dense_ms / 1e6, 1),
               "other_ms": round(other_ms, 3), "steps_ms": round(measured, 3), "bound_ms": round(bound, 3),
               "bound_images_per_s": round(best, 1), "sliceserve_images_per_s": round(ours, 1),
               "onnxruntime_images_per_s": round(ort["images_per_s"], 1),
               "ratio_now": round(ours / ort["images_per_s"], 2), "ratio_bound": round(best / ort["images_per_s"], 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(f"{'model':<20} {'direct GF/s':>11} {'% peak':>7} {'other ms':>9} {'bound img/s':>12} {'ours':>7} {'onnxruntime':>12} {'now':>5} {'bound':>6}")
    for r in rows:
        print(f"{r['model']:<20} {r['direct_gflops_measured']:>11.1f} {100 * r['direct_gflops_measured'] / (per_thread * args.threads):>6.0f}%"
              f" {r['other_ms']:>9.2f} {r['bound_images_per_s']:>12.1f} {r['sliceserve_images_per_s']:>7.1f}"
              f" {r['onnxruntime_images_per_s']:>12.1f} {r['ratio_now']:>5.2f} {r['ratio_bound']:>6.2f}")
    print("(bound: direct dense layers at the FMA peak, the rest, depthwise and Winograd included, at oneDNN's time;"
          " now and bound are ratios to onnxruntime)")
    stamp = datetime.datetime.now(datetime.timezone.utc)
    report = {"benchmark": "cpu_bound", "date": stamp.isoformat(timespec="seconds"), "machine": machine(),
              "fma_peak_gflops_per_core": peak, "batch": args.batch, "threads": args.threads, "results": rows}
    path = save_report(args.out, "cpu-bound", stamp, report)
    print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
