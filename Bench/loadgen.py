#!/usr/bin/env python3
"""HTTP load generator for JPEG classification (SliceServe or any server with the same route).

Closed loop: N clients, each sends its next request when the previous answer arrives.
Open loop: requests are scheduled by a Poisson process at --rate per second and latency is
measured from each request's *scheduled* send time, so a server that stalls cannot hide its
queueing behind a slowed-down client (no coordinated omission). A progress line is printed every
second; a JSON summary (throughput, p50/p95/p99, errors by status) at the end.

Usage: loadgen.py --url http://127.0.0.1:8000 --images DIR (--concurrency 8 | --rate 50) [--seconds 10]
"""
import argparse
import asyncio
import glob
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100 * (len(sorted_values) - 1)))))
    return sorted_values[k]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = []
        self.errors = {}
        self.refused = []  # latencies of 429 answers: how fast overload is refused
        self.sent = 0

    def record(self, latency, status):
        with self.lock:
            if status == 200:
                self.latencies.append(latency)
            else:
                if status == 429:
                    self.refused.append(latency)
                self.errors[str(status)] = self.errors.get(str(status), 0) + 1


def make_sender(url, path):
    parsed = urllib.parse.urlparse(url)
    state = {"conn": None}

    def send(body):
        for attempt in range(2):
            if state["conn"] is None:
                state["conn"] = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
            try:
                state["conn"].request("POST", path, body=body, headers={"Content-Type": "image/jpeg"})
                response = state["conn"].getresponse()
                response.read()
                return response.status
            except (ConnectionError, http.client.HTTPException, OSError):
                state["conn"].close()
                state["conn"] = None
                if attempt == 1:
                    return "connection_error"
        return "connection_error"
    return send


async def open_loop(args, images, path, stats, start, end):
    """Poisson arrivals at args.rate, each sent at its scheduled time on a free keep-alive
    connection (at most args.workers); latency from the scheduled time. Returns requests sent."""
    parsed = urllib.parse.urlparse(args.url)
    host, port = parsed.hostname, parsed.port or 80
    work = asyncio.Queue()
    heads = {}

    def request(body):
        if len(body) not in heads:
            heads[len(body)] = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: image/jpeg\r\n"
                                f"Content-Length: {len(body)}\r\n\r\n").encode()
        return heads[len(body)] + body

    async def exchange(connection, body):
        reader, writer = connection
        writer.write(request(body))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            elif name.strip().lower() == "connection" and value.strip().lower() == "close":
                close = True
        await reader.readexactly(length)
        return status, close

    async def worker():
        connection = None
        while True:
            item = await work.get()
            if item is None:
                break
            scheduled, body = item
            status = "connection_error"
            for _ in range(2):
                try:
                    if connection is None:
                        connection = await asyncio.open_connection(host, port)
                    status, close = await exchange(connection, body)
                    if close:
                        connection[1].close()
                        connection = None
                    break
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
                    if connection is not None:
                        connection[1].close()
                    connection = None
            stats.record(time.perf_counter() - scheduled, status)
        if connection is not None:
            connection[1].close()

    workers = [asyncio.create_task(worker()) for _ in range(args.workers)]
    rng = random.Random(args.seed)
    t, sent = start, 0
    while True:
        t += rng.expovariate(args.rate)
        if t >= end:
            break
        wait = t - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        work.put_nowait((t, images[sent % len(images)]))
        sent += 1
    for _ in workers:
        work.put_nowait(None)
    await asyncio.gather(*workers)
    return sent


def run(args, images):
    stats = Stats()
    path = f"/v2/models/{args.model}/classify?top_k=5"
    start = time.perf_counter()
    end = start + args.seconds
    stop = threading.Event()

    def progress():
        last = 0
        while not stop.wait(1.0):
            with stats.lock:
                done = len(stats.latencies) + sum(stats.errors.values())
                lat = sorted(stats.latencies[-2000:])
            p99 = percentile(lat, 99)
            print(f"  {time.perf_counter() - start:5.1f}s  done {done}  {done - last}/s  "
                  f"p99 {p99 * 1000 if p99 else 0:.1f} ms  errors {sum(stats.errors.values())}", file=sys.stderr, flush=True)
            last = done

    threading.Thread(target=progress, daemon=True).start()
    threads = []
    if args.rate:
        # Open loop on one asyncio thread (a pool of Python threads contends for the GIL and adds
        # milliseconds of its own to every latency at high rates).
        stats.sent = asyncio.run(open_loop(args, images, path, stats, start, end))
    else:
        def client(index):
            send = make_sender(args.url, path)
            i = index
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                status = send(images[i % len(images)])
                stats.record(time.perf_counter() - t0, status)
                i += args.concurrency

        for c in range(args.concurrency):
            t = threading.Thread(target=client, args=(c,))
            t.start()
            threads.append(t)
    for t in threads:
        t.join()
    stop.set()
    elapsed = time.perf_counter() - start
    lat = sorted(stats.latencies)
    return {
        "mode": "open" if args.rate else "closed", "rate": args.rate, "concurrency": None if args.rate else args.concurrency,
        "seconds": round(elapsed, 2), "ok": len(lat), "errors": stats.errors,
        "throughput_rps": round(len(lat) / elapsed, 1),
        "p50_ms": round(percentile(lat, 50) * 1000, 2) if lat else None,
        "p95_ms": round(percentile(lat, 95) * 1000, 2) if lat else None,
        "p99_ms": round(percentile(lat, 99) * 1000, 2) if lat else None,
        "sent": stats.sent if args.rate else None,
        "refused_p99_ms": round(percentile(sorted(stats.refused), 99) * 1000, 2) if stats.refused else None,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--images", required=True, help="folder of .jpg files sent in turn")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=0, help="open loop: Poisson arrivals per second")
    parser.add_argument("--workers", type=int, default=64, help="open loop: most keep-alive connections (one request each at a time)")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    images = [open(f, "rb").read() for f in sorted(glob.glob(f"{args.images}/*.jpg"))]
    if not images:
        sys.exit(f"loadgen: no .jpg files in {args.images}")
    print(json.dumps(run(args, images)))


if __name__ == "__main__":
    main()
