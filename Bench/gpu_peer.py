"""The peer for `sliceserve bench gpu`: the same measurements through PyTorch (and CuPy for
raw driver allocations), on the same card in the same call (Scripts/device-check.sh).

  * pinned host->device / device->host and device->device copy bandwidth, GB/s (D2D counting
    bytes read plus written), best of three rounds of five copies, CUDA events;
  * the device time per launch of a minimal kernel (torch.cuda._sleep(0), a one-thread spin of
    zero cycles) back to back on one stream;
  * the host cost of a 1 MiB allocate+free: PyTorch's caching allocator (torch.empty), and raw
    cudaMalloc/cudaFree through CuPy's runtime bindings.
Prints one JSON object with the same keys as `sliceserve bench gpu`.
"""
import argparse, json, time

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--copy-mib", type=int, default=256)
parser.add_argument("--launches", type=int, default=20000)
parser.add_argument("--allocations", type=int, default=2000)
args = parser.parse_args()

dev = torch.device("cuda")
n = args.copy_mib << 20
host = torch.empty(n, dtype=torch.uint8, pin_memory=True).fill_(0x3C)
a = torch.empty(n, dtype=torch.uint8, device=dev)
b = torch.empty(n, dtype=torch.uint8, device=dev)
stream = torch.cuda.Stream()
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)


def timed(repeats, body):
    with torch.cuda.stream(stream):
        body()
        stream.synchronize()
        best = float("inf")
        for _ in range(3):
            start.record(stream)
            for _ in range(repeats):
                body()
            end.record(stream)
            end.synchronize()
            best = min(best, start.elapsed_time(end) / repeats)
    return best  # ms per repetition


h2d = timed(5, lambda: a.copy_(host, non_blocking=True))
d2h = timed(5, lambda: host.copy_(a, non_blocking=True))
d2d = timed(5, lambda: b.copy_(a, non_blocking=True))
launch = timed(args.launches, lambda: torch.cuda._sleep(0))

torch.empty(1 << 20, dtype=torch.uint8, device=dev)
t0 = time.perf_counter()
for _ in range(args.allocations):
    x = torch.empty(1 << 20, dtype=torch.uint8, device=dev)
    del x
cached = (time.perf_counter() - t0) / args.allocations * 1e6

direct = None
direct_peer = "cupy.cuda.runtime.malloc/free"
try:
    import cupy
    cupy.cuda.runtime.free(cupy.cuda.runtime.malloc(1 << 20))
    t0 = time.perf_counter()
    for _ in range(args.allocations):
        cupy.cuda.runtime.free(cupy.cuda.runtime.malloc(1 << 20))
    direct = (time.perf_counter() - t0) / args.allocations * 1e6
except Exception as error:  # CuPy missing: leave the figure out
    direct_peer = f"unavailable: {error}"


def rate(nbytes, ms):
    return nbytes / (ms / 1000) / 1e9


print(json.dumps({
    "device": torch.cuda.get_device_name(0),
    "torch": torch.__version__,
    "copyBytes": n,
    "hostToDeviceGBps": rate(n, h2d),
    "deviceToHostGBps": rate(n, d2h),
    "deviceToDeviceGBps": rate(2 * n, d2d),
    "launchMicroseconds": launch * 1000,
    "cachedAllocFreeMicroseconds": cached,
    "deviceAllocFreeMicroseconds": direct,
    "peers": {
        "hostToDeviceGBps": "torch copy_ non_blocking from pinned",
        "deviceToHostGBps": "torch copy_ non_blocking to pinned",
        "deviceToDeviceGBps": "torch copy_",
        "launchMicroseconds": "torch.cuda._sleep(0)",
        "cachedAllocFreeMicroseconds": "torch.empty (caching allocator)",
        "deviceAllocFreeMicroseconds": direct_peer,
    },
}, indent=2))
