#!/usr/bin/env python3
"""The second GPU peer of issue 19: torch.compile(mode="max-autotune") of ResNet-50 (torchvision,
random weights, fp16 channels_last) at batch 256, compiled in a child process that is killed
when compilation passes --compile-seconds (120 by default): then one JSON line says it was
skipped. Otherwise one JSON line with images/s of the compiled model (median of 5 timed blocks,
CUDA events), beside the same model's eager figure, so that Scripts/device-check.sh can print
our ratio to it. Runs on the lent GPU machine only (PyTorch is there, not here).
"""
import argparse
import json
import multiprocessing as mp
import sys
import time


def measure(batch, queue):
    import torch
    import torchvision

    torch.backends.cudnn.benchmark = True
    model = torchvision.models.resnet50(weights=None).eval().cuda().half().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 224, 224, device="cuda").half().to(memory_format=torch.channels_last)

    def timed(fn, iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        blocks = []
        for _ in range(5):
            start.record()
            for _ in range(iters):
                fn(x)
            end.record()
            torch.cuda.synchronize()
            blocks.append(start.elapsed_time(end) / iters)
        return sorted(blocks)[2]

    with torch.inference_mode():
        for _ in range(3):
            model(x)
        eager = timed(model, 10)
        queue.put({"stage": "eager", "eager_ms": eager})
        t0 = time.time()
        compiled = torch.compile(model, mode="max-autotune")
        for _ in range(3):
            compiled(x)
        torch.cuda.synchronize()
        queue.put({"stage": "compiled", "compile_s": time.time() - t0})
        ms = timed(compiled, 10)
    queue.put({"stage": "done", "eager_ms": eager, "compiled_ms": ms})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--compile-seconds", type=float, default=120)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=measure, args=(args.batch, queue), daemon=True)
    child.start()
    info = {}
    # Deadlines per stage: loading and the eager timing, compilation (capped), the compiled timing.
    limits = {"start": 120, "eager": args.compile_seconds, "compiled": 60}
    stage = "start"
    while stage != "done":
        try:
            message = queue.get(timeout=limits[stage])
        except Exception:
            child.kill()
            why = f"max-autotune compilation passed {args.compile_seconds:.0f} s" if stage == "eager" else f"no answer after stage {stage}"
            print(json.dumps({"figure": "torch_compile", "model": "resnet50", "batch": args.batch, "skipped": why,
                              **{k: round(v, 3) for k, v in info.items()}}), flush=True)
            return 0
        stage = message.pop("stage")
        info.update(message)
    child.join(5)
    print(json.dumps({"figure": "torch_compile", "model": "resnet50", "batch": args.batch, "mode": "max-autotune",
                      "compile_s": round(info.get("compile_s", 0), 1), "eager_ms": round(info["eager_ms"], 3),
                      "compiled_ms": round(info["compiled_ms"], 3),
                      "compiled_img_s": round(args.batch / info["compiled_ms"] * 1000, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
