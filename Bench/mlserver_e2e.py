#!/usr/bin/env python3
"""End to end on one core: SliceServe vs MLServer + onnxruntime, JPEG in, top-5 out, same run.

Both servers get one pinned core each in turn (taskset -c SERVER_CORE; SliceServe sizes its
preprocessing and executor threads from that affinity, onnxruntime runs 1 intra-op thread) and
the same load generator (Bench/loadgen.py, pinned to the other core) posts the same 500x375
JPEGs to POST /v2/models/mobilenet_v2/classify: SliceServe's own route, and on MLServer a custom
runtime (Bench/mlserver/runtime.py: Pillow's decode and torchvision's eval transform, then
onnxruntime) with the same route. Closed loop at each --concurrency; the two servers alternate
for --rounds rounds and each keeps its best round. Prints requests/s, p50 and p99 per server and
the ratio, and writes Bench/results/mlserver-e2e-<host>-<time>.json.

MLServer runs in its own venv (.cache/bench-venvs/mlserver), which this script makes on first
use (pip: mlserver, onnxruntime, pillow, numpy); setup.sh and CI never install it.

Usage: .venv/bin/python Bench/mlserver_e2e.py [--seconds 15] [--concurrency 8,32] [--rounds 2]
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from preprocess import machine, make_sets, save_report  # noqa: E402
from serve_e2e import stop_server, wait_ready  # noqa: E402

MLSERVER_PACKAGES = ["mlserver==1.7.1", "onnxruntime==1.32.0", "pillow", "numpy"]


def mlserver_venv():
    venv = os.path.join(ROOT, ".cache", "bench-venvs", "mlserver")
    stamp = os.path.join(venv, ".packages")
    if not (os.path.exists(stamp) and open(stamp).read() == " ".join(MLSERVER_PACKAGES)):
        print(f"making MLServer's venv in {os.path.relpath(venv, ROOT)} ({' '.join(MLSERVER_PACKAGES)})", flush=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "--disable-pip-version-check"] + MLSERVER_PACKAGES, check=True)
        with open(stamp, "w") as f:
            f.write(" ".join(MLSERVER_PACKAGES))
    return venv


def mlserver_folder(model):
    """MLServer's settings and the model's settings, in a temporary folder."""
    folder = tempfile.mkdtemp(prefix="mlserver-e2e-")
    shutil.copy(os.path.join(ROOT, "Bench", "mlserver", "runtime.py"), os.path.join(folder, "runtime.py"))
    with open(os.path.join(folder, "settings.json"), "w") as f:
        # One process (no parallel inference workers: one core), no metrics server, quiet.
        json.dump({"http_port": 8021, "grpc_port": 8022, "metrics_port": 8023, "parallel_workers": 0,
                   "metrics_endpoint": None, "debug": False, "logging_level": "WARNING"}, f)
    os.makedirs(os.path.join(folder, "mobilenet_v2"))
    with open(os.path.join(folder, "mobilenet_v2", "model-settings.json"), "w") as f:
        json.dump({"name": "mobilenet_v2", "implementation": "runtime.JPEGClassifier", "parameters": {"uri": model}}, f)
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "sliceserve"))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    parser.add_argument("--model", default=os.path.join(cache, "sliceserve", "models", "mobilenet_v2"))
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", default="8,32")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server-core", default="0")
    parser.add_argument("--client-core", default="1")
    parser.add_argument("--executor", default="cpu", help="SliceServe's --executor (cpu or cpu-reference)")
    parser.add_argument("--out", default=os.path.join(ROOT, "Bench", "results"))
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    images = make_sets(os.path.join(ROOT, ".cache", "photos"), os.path.join(ROOT, ".cache", "bench"))["small_500x375"]
    venv = mlserver_venv()
    folder = mlserver_folder(args.model)
    pin = ["taskset", "-c", args.server_core]
    servers = {
        "sliceserve": (pin + [args.binary, "serve", "--model", args.model, "--port", "8020", "--executor", args.executor],
                       "http://127.0.0.1:8020", "/v2/health/ready", None, {}),
        "mlserver_onnxruntime": (pin + [os.path.join(venv, "bin", "mlserver"), "start", folder],
                                 "http://127.0.0.1:8021", "/v2/models/mobilenet_v2/ready", folder,
                                 {"BENCH_ORT_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": folder}),
    }
    best = {}
    try:
        for round_ in range(args.rounds):
            for name, (cmd, url, ready, cwd, env) in servers.items():
                log = open(os.path.join(tempfile.gettempdir(), f"mlserver-e2e-{name}.log"), "w")
                process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env={**os.environ, **env})
                try:
                    if not wait_ready(url + ready, seconds=120):
                        raise SystemExit(f"mlserver e2e: {name} never became ready (log: {log.name})")
                    # Warm-up: a few seconds at the lowest concurrency, not recorded.
                    subprocess.run(["taskset", "-c", args.client_core, sys.executable, os.path.join(ROOT, "Bench", "loadgen.py"),
                                    "--url", url, "--images", images, "--concurrency", str(levels[0]), "--seconds", "3"],
                                   check=True, capture_output=True)
                    for c in levels:
                        out = subprocess.run(["taskset", "-c", args.client_core, sys.executable, os.path.join(ROOT, "Bench", "loadgen.py"),
                                              "--url", url, "--images", images, "--concurrency", str(c), "--seconds", str(args.seconds)],
                                             check=True, capture_output=True, text=True).stdout
                        r = json.loads(out.strip().splitlines()[-1])
                        r.update(server=name, round=round_)
                        print(json.dumps(r), flush=True)
                        key = (name, c)
                        if key not in best or r["throughput_rps"] > best[key]["throughput_rps"]:
                            best[key] = r
                finally:
                    stop_server(process)
                    log.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    rows = []
    print()
    print(f"{'clients':>7} {'server':<22} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for c in levels:
        for name in servers:
            r = best[(name, c)]
            print(f"{c:>7} {name:<22} {r['throughput_rps']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8} {sum(r['errors'].values()):>7}")
        ratio = round(best[("sliceserve", c)]["throughput_rps"] / best[("mlserver_onnxruntime", c)]["throughput_rps"], 2)
        print(f"{c:>7} {'ratio (requests/s)':<22} {ratio:>8}")
        rows.append({"concurrency": c, "sliceserve": best[("sliceserve", c)], "mlserver_onnxruntime": best[("mlserver_onnxruntime", c)],
                     "ratio_requests_per_s": ratio})
    doctor = subprocess.run([args.binary, "doctor", "--json"], capture_output=True, text=True).stdout
    stamp = datetime.datetime.now(datetime.timezone.utc)
    report = {"benchmark": "mlserver_e2e_one_core", "date": stamp.isoformat(timespec="seconds"), "machine": machine(),
              "server_core": args.server_core, "client_core": args.client_core, "seconds_per_run": args.seconds,
              "rounds_best_of": args.rounds, "images": "500x375 JPEGs from .cache/photos", "mlserver_packages": MLSERVER_PACKAGES,
              "sliceserve_executor": args.executor,
              "sliceserve_cpu_executor": json.loads(doctor).get("cpuExecutor") if doctor else None, "results": rows}
    path = save_report(args.out, "mlserver-e2e", stamp, report)
    print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
