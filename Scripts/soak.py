#!/usr/bin/env python3
"""Reliability soak against the real binary over loopback (the long cases the XCTests leave out).

1. The four small requests that once crashed the server (overflow traps) each answer 4xx, and
   the server lives.
2. Two 63 MB JSON tensor bodies sent at once: /v2/health/ready answers within 1 s throughout,
   both are answered (400: more values than the model takes) and peak RSS stays under 1 GiB.
3. 200 connections that send half a header and stall: health still answers within 1 s.

Prints one line per check and a closing "soak: N passed, M failed"; exits 1 on any failure.
Usage: .venv/bin/python Scripts/soak.py --binary PATH [--port 8491]
"""
import argparse
import http.client
import json
import socket
import subprocess
import sys
import threading
import time

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"soak: {'ok  ' if ok else 'FAIL'} {name}{(': ' + detail) if detail else ''}", flush=True)


def request(port, method, path, body=None, headers=None, timeout=120):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def peak_rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True)
    p.add_argument("--port", type=int, default=8491)
    args = p.parse_args()
    port = args.port
    server = subprocess.Popen([args.binary, "serve", "--port", str(port), "--slices", "cpu:1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if request(port, "GET", "/v2/health/ready", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            check("server ready", False)
            return

        infer = "/v2/models/mobilenet_v2/infer"
        header = "Inference-Header-Content-Length"
        huge = [100_000_000_000_000, 3, 224, 224]
        crashers = {
            "timeout 1e17 µs": json.dumps({"parameters": {"timeout": 10 ** 17},
                                            "inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [0]}]}).encode(),
            "shape 1e14 with JSON data": json.dumps({"inputs": [{"name": "input", "shape": huge, "datatype": "FP32", "data": [0, 1]}]}).encode(),
        }
        for name, body in crashers.items():
            status, data = request(port, "POST", infer, body)
            check(name, 400 <= status < 500, f"{status} {data[:100]!r}")
        for name, inputs in {
            "shape 1e14 with binary_data_size 0": [{"name": "input", "shape": huge, "datatype": "FP32", "parameters": {"binary_data_size": 0}}],
            "two binary_data_size of 2^63-1": [{"name": n, "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 2 ** 63 - 1}}
                                               for n in "ab"],
        }.items():
            body = json.dumps({"inputs": inputs}).encode()
            status, data = request(port, "POST", infer, body, {header: str(len(body))})
            check(name, 400 <= status < 500, f"{status} {data[:100]!r}")
        check("server alive after them", server.poll() is None and request(port, "GET", "/v2/health/ready")[0] == 200)

        # Two 63 MB JSON tensors at once (33 M numbers, data before shape so no shape bounds the parse).
        n = 33_000_000
        big = b'{"inputs":[{"name":"input","datatype":"FP32","data":[' + b",".join([b"1"] * n) + b'],"shape":[219,3,224,224]}]}'
        answers = []

        def send():
            try:
                answers.append(request(port, "POST", infer, big)[0])
            except OSError as e:
                answers.append(str(e))

        threads = [threading.Thread(target=send) for _ in range(2)]
        [t.start() for t in threads]
        worst = 0.0
        while any(t.is_alive() for t in threads):
            t0 = time.time()
            status, _ = request(port, "GET", "/v2/health/ready", timeout=10)
            worst = max(worst, time.time() - t0)
            time.sleep(0.05)
        [t.join() for t in threads]
        rss = peak_rss_mib(server.pid)
        check("two 63 MB JSON bodies answered 400", answers == [400, 400], f"{answers}")
        check("health within 1 s during them", worst < 1.0, f"worst {worst * 1000:.0f} ms")
        check("peak RSS under 1 GiB", rss < 1024, f"{rss:.0f} MiB")

        # Stalled half-headers.
        stalled = []
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST " + infer.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Le")
            stalled.append(s)
        t0 = time.time()
        status, _ = request(port, "GET", "/v2/health/ready", timeout=10)
        check("health with 200 stalled connections", status == 200 and time.time() - t0 < 1.0, f"{(time.time() - t0) * 1000:.0f} ms")
        for s in stalled:
            s.close()
        check("server alive at the end", server.poll() is None)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        failed = results.count(False)
        print(f"soak: {len(results) - failed} passed, {failed} failed")
        if failed or not results:
            sys.exit(1)


if __name__ == "__main__":
    main()
