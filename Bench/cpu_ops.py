#!/usr/bin/env python3
"""Per operator: SliceServe's own CPU kernels (cpu-reference) against oneDNN (cpu), layer by layer.

Runs `sliceserve bench model --layers` with each executor on the same model, batch and threads
(each layer's fastest of five runs), groups the layers by operator kind (1x1 convolution, 3x3
depthwise, other kxk convolution, 1x1 + depthwise fused, inner product, the rest) and prints the
milliseconds per kind for both and their ratio: the measurement behind the choice of oneDNN as
the fast path (docs/cpu-executor.md). A fused step (node "a+b") is compared with the sum of its
two nodes on the reference kernels. Where XNNPACK's headers are installed (Debian's
libxnnpack-dev and libpthreadpool-dev; never by setup.sh or CI), every convolution also runs on
XNNPACK (Bench/xnnpack/conv_layers.c, NHWC, one thread) for a third column. Writes
Bench/results/cpu-ops-<host>-<time>.json.

Usage: .venv/bin/python Bench/cpu_ops.py [--models mobilenet_v2,efficientnet_lite0,resnet50] [--batch 1] [--threads 1]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
from collections import defaultdict

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from preprocess import machine, save_report  # noqa: E402


def kinds_by_node(path):
    """Each Conv/Gemm node's kind, from the ONNX graph."""
    import onnx
    model = onnx.load(path, load_external_data=False)
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    kinds = {}
    for node in model.graph.node:
        if node.op_type == "Conv":
            w = shapes.get(node.input[1], [0, 0, 0, 0])
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if group > 1 and w[1] == 1:
                kinds[node.name] = f"conv {w[2]}x{w[3]} depthwise"
            elif w[2] == 1 and w[3] == 1:
                kinds[node.name] = "conv 1x1"
            else:
                kinds[node.name] = f"conv {w[2]}x{w[3]}"
        elif node.op_type in ("Gemm", "MatMul"):
            kinds[node.name] = "inner product"
        else:
            kinds[node.name] = node.op_type.lower()
    return kinds


def graph_shapes(path, batch):
    """The ONNX graph with its shapes inferred, each value's dimensions (the batch dimension
    as `batch`) and each initializer's, by name."""
    import onnx
    from onnx import shape_inference
    model = shape_inference.infer_shapes(onnx.load(path))
    dims = {v.name: [d.dim_value or batch for d in v.type.tensor_type.shape.dim]
            for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    return model, dims, weights


def conv_specs(path, batch):
    """Each Conv node's shape as Bench/xnnpack/conv_layers.c reads it (NHWC), by node name."""
    model, dims, weights = graph_shapes(path, batch)
    specs = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or node.input[0] not in dims or node.input[1] not in weights:
            continue
        n, c, h, w = dims[node.input[0]]
        o, _, kh, kw = weights[node.input[1]]
        attrs = {a.name: (list(a.ints) if a.ints else a.i) for a in node.attribute}
        pads = attrs.get("pads", [0, 0, 0, 0])
        stride = attrs.get("strides", [1, 1])[0]
        group = attrs.get("group", 1)
        specs[node.name] = f"{batch} {h} {w} {c} {o} {kh} {kw} {stride} {pads[0]} {pads[1]} {pads[2]} {pads[3]} {group} -inf inf"
    return specs


def xnnpack_harness():
    """Builds Bench/xnnpack/conv_layers.c where XNNPACK's headers are; its path, or None."""
    if not (os.path.exists("/usr/include/xnnpack.h") and os.path.exists("/usr/include/pthreadpool.h")):
        return None
    out = os.path.join(ROOT, ".cache", "bench-bin", "xnnpack_conv_layers")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    subprocess.run(["gcc", "-O2", "-o", out, os.path.join(ROOT, "Bench", "xnnpack", "conv_layers.c"), "-lXNNPACK", "-lm"], check=True)
    return out


def xnnpack_times(harness, specs):
    names = list(specs)
    out = subprocess.run([harness], input="\n".join(specs[n] for n in names) + "\n", capture_output=True, text=True, check=True).stdout
    times = {}
    for name, line in zip(names, out.strip().splitlines()):
        if not line.startswith("error"):
            times[name] = float(line)
    return times


def layers(binary, model, executor, batch, threads):
    out = subprocess.run([binary, "bench", "model", "--model", model, "--executor", executor, "--batch", str(batch),
                          "--threads", str(threads), "--seconds", "1", "--layers"], check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.strip().splitlines()]
    return rows[0], [r for r in rows[1:] if "step" in r]


def model_arguments(doc):
    """The options the per-layer benchmarks share: binary, models, batch, threads, output folder."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "sliceserve"))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    parser.add_argument("--models-dir", default=os.path.join(cache, "sliceserve", "models"))
    parser.add_argument("--models", default="mobilenet_v2,efficientnet_lite0,resnet50")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(ROOT, "Bench", "results"))
    return parser


def model_paths(name, models_dir):
    """What `bench model --model` takes for a model (a directory, or ResNet-50's oracle file)
    and its ONNX file."""
    if name == "resnet50":
        path = os.path.join(ROOT, ".cache", "oracles", "resnet50", "model.onnx")
        return path, path
    return os.path.join(models_dir, name), os.path.join(models_dir, name, "model.onnx")


def main():
    args = model_arguments(__doc__).parse_args()
    report_rows = []
    harness = xnnpack_harness() if args.threads == 1 else None
    if harness is None:
        print("XNNPACK: not measured (needs libxnnpack-dev and libpthreadpool-dev, and --threads 1)")
    for name in args.models.split(","):
        target, path = model_paths(name, args.models_dir)
        kinds = kinds_by_node(path)
        _, ours = layers(args.binary, target, "cpu-reference", args.batch, args.threads)
        summary, dnnl = layers(args.binary, target, "cpu", args.batch, args.threads)
        ours_ms = {r["node"]: r["ms"] for r in ours}
        xnn = xnnpack_times(harness, conv_specs(path, args.batch)) if harness else {}
        table = defaultdict(lambda: {"reference_ms": 0.0, "onednn_ms": 0.0, "xnnpack_ms": 0.0, "layers": 0, "onednn_implementations": set()})
        for r in dnnl:
            nodes = r["node"].split("+")
            kind = " + ".join(dict.fromkeys(kinds.get(n, "other") for n in nodes)) if len(nodes) > 1 else kinds.get(r["node"], r["primitive"])
            if r["primitive"] == "reorder":
                kind = "layout reorder"
            entry = table[kind]
            entry["onednn_ms"] += r["ms"]
            entry["onednn_implementations"].add(r["implementation"])
            if r["primitive"] != "reorder":
                entry["layers"] += len(nodes)
                entry["reference_ms"] += sum(ours_ms.pop(n, 0.0) for n in nodes)
                entry["xnnpack_ms"] += sum(xnn.get(n, 0.0) for n in nodes)
        for node, ms in ours_ms.items():  # nodes oneDNN folded away (e.g. a reshape that is a view)
            table[kinds.get(node, "other")]["reference_ms"] += ms
        print(f"\n{name}, batch {args.batch}, {args.threads} thread(s), oneDNN: {summary.get('kernels')}")
        print(f"{'operator':<32} {'layers':>6} {'ours ms':>9} {'oneDNN ms':>10} {'XNNPACK ms':>11} {'ours/oneDNN':>12} {'XNNPACK/oneDNN':>15}  oneDNN implementation")
        for kind, e in sorted(table.items(), key=lambda kv: -kv[1]["reference_ms"]):
            ratio = e["reference_ms"] / e["onednn_ms"] if e["onednn_ms"] > 0 else float("nan")
            xratio = e["xnnpack_ms"] / e["onednn_ms"] if e["onednn_ms"] > 0 and e["xnnpack_ms"] > 0 else float("nan")
            xms = f"{e['xnnpack_ms']:>11.3f}" if e["xnnpack_ms"] > 0 else f"{'-':>11}"
            print(f"{kind:<32} {e['layers']:>6} {e['reference_ms']:>9.3f} {e['onednn_ms']:>10.3f} {xms} {ratio:>12.2f} {xratio:>15.2f}  {', '.join(sorted(e['onednn_implementations']))}")
            report_rows.append({"model": name, "batch": args.batch, "threads": args.threads, "operator": kind, "layers": e["layers"],
                                "reference_ms": round(e["reference_ms"], 4), "onednn_ms": round(e["onednn_ms"], 4),
                                "reference_over_onednn": round(ratio, 2),
                                "xnnpack_ms": round(e["xnnpack_ms"], 4) if e["xnnpack_ms"] > 0 else None,
                                "xnnpack_over_onednn": round(xratio, 2) if e["xnnpack_ms"] > 0 else None,
                                "onednn_implementations": sorted(e["onednn_implementations"])})
        total_ours, total_dnnl = sum(r["ms"] for r in ours), sum(r["ms"] for r in dnnl)
        print(f"{'all layers':<32} {'':>6} {total_ours:>9.3f} {total_dnnl:>10.3f} {sum(xnn.values()) or float('nan'):>11.3f} {total_ours / total_dnnl:>12.2f}"
              f"   (XNNPACK: convolutions only)")
    stamp = datetime.datetime.now(datetime.timezone.utc)
    report = {"benchmark": "cpu_operators", "date": stamp.isoformat(timespec="seconds"), "machine": machine(),
              "note": "each layer's fastest of five runs; ours = cpu-reference, oneDNN = cpu; XNNPACK (Debian's 2022 snapshot, NHWC, "
                      "one thread, convolutions only) where its headers are installed",
              "batch": args.batch, "threads": args.threads, "results": report_rows}
    path = save_report(args.out, "cpu-ops", stamp, report)
    print(f"\nwrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
