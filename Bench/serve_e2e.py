#!/usr/bin/env python3
"""End to end on one machine: `sliceserve serve` with each preprocessing backend, the same model
and the same JPEG requests from Bench/loadgen.py, so the only difference is where JPEG decode and
resize run. The server and the load generator are pinned to separate cores (taskset), so the
load generator takes no CPU from the server.

Used by Scripts/device-check.sh on a lent GPU machine (the model runs on the CPU executor there
until the GPU executor lands; GPU preprocessing then frees the server's cores for the model).
Prints one JSON object: per backend, closed-loop throughput and latency percentiles.

Usage: serve_e2e.py --binary BIN --model DIR --images DIR [--backends cpu,gpu] [--server-cores 0-11]
                    [--client-cores 12-15] [--threads 12] [--concurrency 64] [--seconds 8]
"""
import argparse, json, os, subprocess, sys, time, urllib.request

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))


def stop_server(server):
    """SIGTERM (the server drains and exits 0), then SIGKILL after 30 s."""
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


def wait_ready(url, seconds=90):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return True
        except Exception:
            time.sleep(0.2)
    return False


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--backends", default="cpu,gpu")
    p.add_argument("--server-cores", default="0-11")
    p.add_argument("--client-cores", default="12-15")
    p.add_argument("--threads", type=int, default=12)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--port", type=int, default=8100)
    args = p.parse_args()
    results = {"server_cores": args.server_cores, "client_cores": args.client_cores, "threads": args.threads,
               "concurrency": args.concurrency, "seconds": args.seconds, "runs": []}
    for backend in args.backends.split(","):
        cmd = ["taskset", "-c", args.server_cores, args.binary, "serve", "--model", args.model, "--port", str(args.port),
               "--slices", f"cpu:{args.threads}", "--max-batch", "32", "--preprocess", backend]
        log_path = "/tmp/serve-" + "".join(c if c.isalnum() else "_" for c in backend) + ".log"
        log = open(log_path, "w")
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        run = {"preprocess": backend}
        try:
            if not wait_ready(f"http://127.0.0.1:{args.port}/v2/health/ready"):
                run["error"] = "server not ready: " + open(log_path).read()[-600:]
            else:
                load = subprocess.run(["taskset", "-c", args.client_cores, sys.executable, os.path.join(ROOT, "Bench", "loadgen.py"),
                                       "--url", f"http://127.0.0.1:{args.port}", "--images", args.images,
                                       "--concurrency", str(args.concurrency), "--seconds", str(args.seconds)],
                                      capture_output=True, text=True, timeout=args.seconds + 120)
                lines = [l for l in load.stdout.splitlines() if l.startswith("{")]
                run["load"] = json.loads(lines[-1]) if lines else {"error": load.stderr[-600:]}
                with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/metrics", timeout=5) as r:
                    metrics = r.read().decode()
                run["metrics"] = [l for l in metrics.splitlines() if l.startswith(("sliceserve_preprocess_images_total",
                                  "sliceserve_preprocess_backend_seconds_total", "nv_inference_exec_count", "nv_inference_count"))]
        finally:
            stop_server(server)
        results["runs"].append(run)
        print(json.dumps(run), file=sys.stderr, flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
