#!/usr/bin/env python3
"""The PREBA ablation, reproduced with SliceServe: the highest Poisson request rate each server
configuration sustains with p95 under an SLO, and what it costs.

The chain (as in the paper, arXiv 2411.19114):
  1. cpu+fixed      JPEG preprocessing on the CPU, fixed batching (--batching manual --max-batch 8)
  2. offload+fixed  preprocessing offloaded (--preprocess gpu on a GPU machine; the plug-in
                    boundary, --preprocess plugin:PATH, on a CPU machine), the same fixed batching
  3. offload+auto   the same offload, batching from the measured knee (--batching profile --slo-ms)
Each configuration: `sliceserve serve` pinned to --server-cores, the load generator
(Bench/loadgen.py, open loop, Poisson arrivals of single JPEG requests) pinned to --client-cores
with taskset; the rate is doubled until p95 exceeds the SLO (or >1% errors), then bisected, with
--step-seconds per step. At the best rate it records throughput, p95/p99, the server's CPU use
(cores, from /proc/<pid>/stat) and, where the server exposes it, GPU joules per image.

Writes Bench/results/preba-<label>-<host>-<time>.json and an SVG per figure (throughput vs p95 per
configuration; ablation bars); prints a table. Figures from CPU slices measure the plug-in
boundary and the batching policy on this machine; they are not comparable to the paper's GPU
figures and are labelled so.

Usage: .venv/bin/python Bench/preba/experiment.py --slices cpu:2x1 --offload plugin:.build/sliceserve-plugins/libsliceserve_turbojpeg.so
       python3 Bench/preba/experiment.py --binary BIN --model DIR --slices gpu:0x7 --offload gpu --slo-ms 50   (GPU machine)
"""
import argparse
import datetime
import glob
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "Bench"))
from serve_e2e import stop_server, wait_ready  # noqa: E402


def cpu_seconds(pid):
    """utime + stime of a process and its threads, in seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(text, name, label_filter=""):
    values = []
    for line in text.splitlines():
        if line.startswith(name) and label_filter in line:
            try:
                values.append(float(line.rsplit(" ", 1)[1]))
            except ValueError:
                pass
    return values


def step(args, port, rate, pid):
    """One load step at `rate` req/s; returns the load summary and the server's CPU cores used."""
    before, t0 = cpu_seconds(pid), time.time()
    load = subprocess.run(["taskset", "-c", args.client_cores, sys.executable, os.path.join(ROOT, "Bench", "loadgen.py"),
                           "--url", f"http://127.0.0.1:{port}", "--model", args.model_name, "--images", args.images,
                           "--rate", str(rate), "--seconds", str(args.step_seconds), "--workers", str(args.client_workers),
                           "--seed", str(int(rate))],
                          capture_output=True, text=True, timeout=args.step_seconds + 120)
    cores = (cpu_seconds(pid) - before) / max(time.time() - t0, 1e-6)
    lines = [l for l in load.stdout.splitlines() if l.startswith("{")]
    summary = json.loads(lines[-1]) if lines else {"error": load.stderr[-400:], "p95_ms": None, "ok": 0, "throughput_rps": 0}
    summary["server_cores_used"] = round(cores, 2)
    return summary


def good(summary, slo):
    sent = summary.get("ok", 0) + sum(summary.get("errors", {}).values())
    errors = sum(summary.get("errors", {}).values())
    return summary.get("p95_ms") is not None and summary["p95_ms"] <= slo and errors <= 0.01 * max(sent, 1)


def find_rate(args, port, pid):
    """Doubling, then bisection: the highest rate whose step keeps p95 under the SLO."""
    steps = []
    rate, best = args.start_rate, None
    while len(steps) < args.max_steps:
        s = step(args, port, rate, pid)
        steps.append({"rate": rate, **s})
        print(f"    rate {rate:8.1f}/s: {s.get('throughput_rps')} ok/s, p95 {s.get('p95_ms')} ms, errors {s.get('errors')}, "
              f"server {s['server_cores_used']} cores", file=sys.stderr, flush=True)
        if not good(s, args.slo_ms):
            break
        best = (rate, s)
        rate *= 2
    lo = best[0] if best else 0.0
    hi = rate
    while len(steps) < args.max_steps and hi - lo > max(1.0, 0.05 * hi):
        mid = (lo + hi) / 2
        s = step(args, port, mid, pid)
        steps.append({"rate": mid, **s})
        print(f"    rate {mid:8.1f}/s: {s.get('throughput_rps')} ok/s, p95 {s.get('p95_ms')} ms, errors {s.get('errors')}",
              file=sys.stderr, flush=True)
        if good(s, args.slo_ms):
            lo, best = mid, (mid, s)
        else:
            hi = mid
    return best, steps


def run_config(args, name, preprocess, batching, port):
    cmd = ["taskset", "-c", args.server_cores, args.binary, "serve", "--model", args.model, "--port", str(port),
           "--slices", args.slices, "--preprocess", preprocess] + batching
    log_path = f"/tmp/preba-{name}.log"
    log = open(log_path, "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    run = {"config": name, "preprocess": preprocess, "batching": " ".join(batching), "command": " ".join(cmd)}
    try:
        if not wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", seconds=args.ready_seconds):
            run["error"] = "server not ready: " + open(log_path).read()[-800:]
            return run
        best, steps = find_rate(args, port, server.pid)
        run["steps"] = steps
        if best:
            rate, s = best
            run.update({"rate_at_slo": round(rate, 1), "throughput_rps": s.get("throughput_rps"), "p50_ms": s.get("p50_ms"),
                        "p95_ms": s.get("p95_ms"), "p99_ms": s.get("p99_ms"), "server_cores_used": s.get("server_cores_used")})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        joules = metric(text, "sliceserve_energy_joules_per_image")
        run["gpu_joules_per_image"] = round(sum(joules) / len(joules), 4) if joules else None
        batches, items = sum(metric(text, "nv_inference_exec_count")), sum(metric(text, "nv_inference_count"))
        run["mean_batch"] = round(items / batches, 2) if batches else None
        run["auto_batching"] = [l for l in open(log_path).read().splitlines() if "auto batching" in l or "batching as set" in l][-1:]
    finally:
        stop_server(server)
    return run


def svg_bars(path, title, labels, values, unit):
    w, h, left, top, bar = 640, 320, 160, 40, 36
    peak = max([v for v in values if v] or [1])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="13">',
           f'<text x="10" y="22" font-size="15">{title}</text>']
    for i, (label, v) in enumerate(zip(labels, values)):
        y = top + i * (bar + 14)
        length = 0 if not v else (w - left - 90) * v / peak
        out.append(f'<text x="10" y="{y + bar * 0.65}">{label}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{bar}" fill="#4a78b5"/>')
        out.append(f'<text x="{left + length + 6:.1f}" y="{y + bar * 0.65}">{"-" if not v else f"{v:.1f} {unit}"}</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


def svg_curves(path, title, runs, slo):
    """Throughput (x) against p95 (y) for every step of every configuration."""
    w, h, left, bottom = 640, 400, 60, 50
    points = [(s.get("throughput_rps") or 0, s.get("p95_ms") or 0) for r in runs for s in r.get("steps", [])]
    xmax = max([p[0] for p in points] or [1]) * 1.1 or 1
    ymax = max([p[1] for p in points] + [slo]) * 1.1 or 1
    colors = ["#c0392b", "#2e86c1", "#27ae60", "#8e44ad"]
    X = lambda v: left + (w - left - 20) * v / xmax
    Y = lambda v: h - bottom - (h - bottom - 40) * v / ymax
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="22" font-size="15">{title}</text>',
           f'<line x1="{left}" y1="{Y(0)}" x2="{w - 20}" y2="{Y(0)}" stroke="black"/>',
           f'<line x1="{left}" y1="{Y(0)}" x2="{left}" y2="40" stroke="black"/>',
           f'<line x1="{left}" y1="{Y(slo):.1f}" x2="{w - 20}" y2="{Y(slo):.1f}" stroke="gray" stroke-dasharray="4"/>',
           f'<text x="{w - 120}" y="{Y(slo) - 4:.1f}">SLO {slo} ms</text>',
           f'<text x="{w / 2 - 60}" y="{h - 12}">throughput (requests/s)</text>',
           f'<text x="8" y="{h / 2}" transform="rotate(-90 14 {h / 2})">p95 latency (ms)</text>',
           f'<text x="{left}" y="{h - 30}">0</text><text x="{w - 60}" y="{h - 30}">{xmax:.0f}</text>',
           f'<text x="{left - 40}" y="44">{ymax:.0f}</text>']
    for i, r in enumerate(runs):
        steps = sorted(((s.get("throughput_rps") or 0, s.get("p95_ms") or 0) for s in r.get("steps", [])))
        c = colors[i % len(colors)]
        if steps:
            out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="' + " ".join(f"{X(a):.1f},{Y(b):.1f}" for a, b in steps) + '"/>')
        out.append(f'<text x="{w - 200}" y="{60 + 16 * i}" fill="{c}">{r["config"]}</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


def plot(base, result):
    """The two figures of a result: p95 against throughput per configuration, and the bars."""
    runs, label, slo = result["runs"], result["label"], result["slo_ms"]
    os.makedirs(os.path.dirname(base) or ".", exist_ok=True)
    svg_curves(base + "-curves.svg", f"PREBA ablation ({label}, {result['slices']}): p95 vs throughput", runs, slo)
    svg_bars(base + "-bars.svg", f"Throughput at p95 ≤ {slo} ms ({label})", [r["config"] for r in runs],
             [r.get("throughput_rps") for r in runs], "req/s")


def make_images(source):
    """Every photo in `source` as a 500-pixel-wide RGB baseline JPEG, quality 90, in a temp folder."""
    import tempfile
    from PIL import Image
    out = tempfile.mkdtemp(prefix="preba-jpegs-")
    for i, path in enumerate(sorted(glob.glob(os.path.join(source, "*")))):
        try:
            img = Image.open(path).convert("RGB")
        except Exception:
            continue
        img = img.resize((500, max(1, round(img.height * 500 / img.width))), Image.BICUBIC)
        img.save(os.path.join(out, f"{i:03d}.jpg"), quality=90)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    p.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "sliceserve"))
    p.add_argument("--model", default=os.path.join(cache, "sliceserve", "models", "mobilenet_v2"))
    p.add_argument("--model-name", default=None, help="the served name (default: the model folder's name)")
    p.add_argument("--images", default=None, help="a folder of .jpg request bodies (default: the test photos, re-encoded "
                   "as 500-pixel-wide baseline quality-90 JPEGs, like the peers' set)")
    p.add_argument("--slices", default="cpu:2x1", help="serve --slices: cpu:KxT here, gpu:0xK on a GPU machine")
    p.add_argument("--offload", default=None, help="the offloaded preprocessing: gpu, or plugin:PATH[?CONFIG]")
    p.add_argument("--configs", default="cpu+fixed,offload+fixed,offload+auto")
    p.add_argument("--fixed-batch", default="8")
    p.add_argument("--slo-ms", type=float, default=100)
    p.add_argument("--step-seconds", type=float, default=3)
    p.add_argument("--max-steps", type=int, default=8)
    p.add_argument("--start-rate", type=float, default=10)
    p.add_argument("--server-cores", default=None, help="taskset list for the server (default: all but the last core)")
    p.add_argument("--client-cores", default=None, help="taskset list for the load generator (default: the last core)")
    p.add_argument("--client-workers", type=int, default=32)
    p.add_argument("--ready-seconds", type=float, default=180)
    p.add_argument("--port", type=int, default=8190)
    p.add_argument("--label", default=None, help="what the slices are, for the file name and report (e.g. cpu-fake-slices)")
    p.add_argument("--out", default=os.path.join(ROOT, "Bench", "results"))
    p.add_argument("--svg-out", default=None, help="where the SVGs go (default: --out)")
    p.add_argument("--replot", default=None, help="only draw the SVGs (next to it) from a result JSON of an earlier run")
    args = p.parse_args()
    if args.replot:
        result = json.load(open(args.replot))
        plot(os.path.splitext(args.replot)[0], result)
        return
    if not args.offload:
        p.error("--offload is required: gpu, or plugin:PATH")
    cores = sorted(os.sched_getaffinity(0))
    args.server_cores = args.server_cores or (",".join(map(str, cores[:-1])) if len(cores) > 1 else str(cores[0]))
    args.client_cores = args.client_cores or str(cores[-1])
    args.model_name = args.model_name or os.path.basename(os.path.normpath(args.model))
    label = args.label or ("cpu-fake-slices" if args.slices.startswith("cpu") else "gpu")
    if args.images is None:
        args.images = make_images(os.path.join(ROOT, ".cache", "photos"))
    if not glob.glob(os.path.join(args.images, "*.jpg")):
        sys.exit(f"no .jpg files in {args.images}")
    # The auto configuration stores its profile next to the model: work on a copy, so that the
    # experiment leaves the user's model folder (and other servers' --batching auto) as it was.
    import shutil
    import tempfile
    scratch = tempfile.mkdtemp(prefix="preba-")
    copy = os.path.join(scratch, args.model_name)
    shutil.copytree(args.model, copy, ignore=shutil.ignore_patterns("profiles"))
    args.model = copy
    fixed = ["--batching", "manual", "--max-batch", args.fixed_batch]
    auto = ["--batching", "profile", "--slo-ms", str(args.slo_ms)]
    table = {"cpu+fixed": ("cpu", fixed), "offload+fixed": (args.offload, fixed), "offload+auto": (args.offload, auto)}
    from preprocess import machine
    result = {"experiment": "preba-ablation", "label": label, "slices": args.slices, "slo_ms": args.slo_ms,
              "step_seconds": args.step_seconds, "server_cores": args.server_cores, "client_cores": args.client_cores,
              "machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "note": "SM partition (shared NVJPG/L2/HBM), not MIG" if args.slices.startswith("sm") else
                      ("CPU fake slices: measures the plug-in boundary and the batching policy, not comparable to the paper's GPU figures"
                       if args.slices.startswith("cpu") else ""),
              "runs": []}
    for i, name in enumerate(args.configs.split(",")):
        preprocess, batching = table[name]
        print(f"== {name}: --preprocess {preprocess} {' '.join(batching)} on {args.slices}", file=sys.stderr, flush=True)
        result["runs"].append(run_config(args, name, preprocess, batching, args.port + i))
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M")
    base = os.path.join(args.out, f"preba-{label}-{socket.gethostname()}-{stamp}")
    json.dump(result, open(base + ".json", "w"), indent=1)
    runs = result["runs"]
    plot(os.path.join(args.svg_out or args.out, os.path.basename(base)), result)
    first = runs[0].get("throughput_rps") if runs else None
    print(f"{'config':<16} {'req/s @SLO':>10} {'x cpu+fixed':>11} {'p95 ms':>8} {'p99 ms':>8} {'cores':>6} {'mean batch':>10} {'J/img':>7}")
    for r in runs:
        ratio = f"{r['throughput_rps'] / first:.2f}" if first and r.get("throughput_rps") else "-"
        print(f"{r['config']:<16} {r.get('throughput_rps') or '-':>10} {ratio:>11} {r.get('p95_ms') or '-':>8} {r.get('p99_ms') or '-':>8} "
              f"{r.get('server_cores_used') or '-':>6} {r.get('mean_batch') or '-':>10} {r.get('gpu_joules_per_image') or '-':>7}")
        if r.get("error"):
            print("  error:", r["error"][:300])
    print(f"wrote {base}.json and two SVGs (in {args.svg_out or args.out})")


if __name__ == "__main__":
    main()
