#!/usr/bin/env python3
"""CPU preprocessing benchmark: SliceServe vs Pillow and OpenCV, same images, same run.

Pipeline for everyone: JPEG bytes in memory -> RGB -> resize shorter side to 256 -> center crop
224 -> scale to [0, 1] -> normalize with ImageNet mean/std -> float32 CHW.
  * SliceServe: `sliceserve bench preprocess` (libjpeg-turbo + Pillow-exact SIMD resize).
  * Pillow: torchvision's eval transform written with Pillow + numpy (the reference).
  * OpenCV: imdecode, INTER_AREA resize (its antialiased downscale), cvtColor, normalize.
Each runs on one core and on all cores (SliceServe with N worker threads, the peers with a
multiprocessing pool of N processes). Image sets, made from the real photos (.cache/photos):
  * small: 500x375 quality-90 crops/resizes of the photos;
  * large: 1-2 megapixel quality-90 images made from the photos.
Prints a table with ratios and writes Bench/results/preprocess-<host>-<date>.json.

Usage: .venv/bin/python Bench/preprocess.py [--seconds 3] [--binary .build/release/sliceserve]
"""
import argparse
import datetime
import glob
import io
import json
import multiprocessing as mp
import os
import platform
import socket
import subprocess
import sys
import time

import numpy as np
from PIL import Image

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def make_sets(photos, out):
    """Writes the two image sets (once) and returns {name: folder}."""
    sources = []
    for path in sorted(glob.glob(os.path.join(photos, "*"))):
        img = Image.open(path).convert("RGB")
        if min(img.size) >= 256:
            sources.append(img)
    sets = {"small_500x375": (500, 375, 48), "large_1-2MP": (None, None, 24)}
    folders = {}
    rng = np.random.default_rng(0)
    for name, (w, h, count) in sets.items():
        folder = os.path.join(out, name)
        folders[name] = folder
        if len(glob.glob(os.path.join(folder, "*.jpg"))) == count:
            continue
        os.makedirs(folder, exist_ok=True)
        for i in range(count):
            img = sources[i % len(sources)]
            if i % 2:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            if w is None:
                # 1 to 2 megapixels, landscape or portrait, aspect 4:3 or 3:2.
                mp_target = 1.0e6 + 1.0e6 * rng.random()
                aspect = (4 / 3, 3 / 2)[i % 2]
                tw = int((mp_target * aspect) ** 0.5)
                th = int(tw / aspect)
                if i % 3 == 0:
                    tw, th = th, tw
                img = img.resize((tw, th), Image.LANCZOS)
            else:
                tw, th = (w, h) if i % 3 else (h, w)
                # Crop to the aspect, then resize: a real photo at 500x375.
                sw, sh = img.size
                scale = min(sw / tw, sh / th)
                cw, ch = int(tw * scale), int(th * scale)
                left = int(rng.integers(0, sw - cw + 1))
                top = int(rng.integers(0, sh - ch + 1))
                img = img.crop((left, top, left + cw, top + ch)).resize((tw, th), Image.LANCZOS)
            img.save(os.path.join(folder, f"{i:03d}.jpg"), quality=90)
    return folders


def pil_pipeline(blob):
    img = Image.open(io.BytesIO(blob)).convert("RGB")
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    nw, nh = (256, int(256 * long / short)) if w <= h else (int(256 * long / short), 256)
    img = img.resize((nw, nh), Image.BILINEAR)
    left, top = int(round((nw - 224) / 2.0)), int(round((nh - 224) / 2.0))
    img = img.crop((left, top, left + 224, top + 224))
    a = np.asarray(img, np.uint8).astype(np.float32) / np.float32(255)
    return ((a - MEAN) / STD).transpose(2, 0, 1)


def cv_pipeline(blob):
    import cv2
    a = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
    h, w = a.shape[:2]
    short, long = (w, h) if w <= h else (h, w)
    nw, nh = (256, int(256 * long / short)) if w <= h else (int(256 * long / short), 256)
    a = cv2.resize(a, (nw, nh), interpolation=cv2.INTER_AREA)
    left, top = int(round((nw - 224) / 2.0)), int(round((nh - 224) / 2.0))
    a = cv2.cvtColor(a[top:top + 224, left:left + 224], cv2.COLOR_BGR2RGB)
    a = a.astype(np.float32) / np.float32(255)
    return ((a - MEAN) / STD).transpose(2, 0, 1)


PIPELINES = {"pillow": pil_pipeline, "opencv": cv_pipeline}


def _init_worker():
    import cv2
    cv2.setNumThreads(1)


def _run_chunk(args):
    kind, blobs, seconds = args
    f = PIPELINES[kind]
    for b in blobs[:4]:
        f(b)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for b in blobs:
            f(b)
        done += len(blobs)
    return done, time.perf_counter() - start


def bench_peer(kind, blobs, processes, seconds):
    if processes == 1:
        _init_worker()
        done, elapsed = _run_chunk((kind, blobs, seconds))
        return done / elapsed
    with mp.Pool(processes, initializer=_init_worker) as pool:
        results = pool.map(_run_chunk, [(kind, blobs, seconds)] * processes)
    # Each process ran for about `seconds`; the total rate is the sum of their rates.
    return sum(done / elapsed for done, elapsed in results)


def bench_sliceserve(binary, folder, threads, seconds, extra=()):
    out = subprocess.run([binary, "bench", "preprocess", folder, "--threads", str(threads),
                          "--seconds", str(seconds), "--batch", "32", *extra],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def save_report(out, name, stamp, report, indent=1):
    """Writes `report` (with its "machine") to OUT/NAME-HOST-YYYYmmdd-HHMM.json; returns the path."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}-{report['machine']['host']}-{stamp:%Y%m%d-%H%M}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=indent)
    return path


def machine():
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host": socket.gethostname(), "cpu": model, "cores": len(os.sched_getaffinity(0)),
            "os": platform.platform(), "python": platform.python_version()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "sliceserve"))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--photos", default=os.path.join(ROOT, ".cache", "photos"))
    parser.add_argument("--out", default=os.path.join(ROOT, "Bench", "results"))
    args = parser.parse_args()

    import cv2
    import PIL.features
    cores = len(os.sched_getaffinity(0))
    folders = make_sets(args.photos, os.path.join(ROOT, ".cache", "bench"))
    rows = []
    for set_name, folder in folders.items():
        files = sorted(glob.glob(os.path.join(folder, "*.jpg")))
        blobs = [open(f, "rb").read() for f in files]
        for workers in sorted({1, cores}):
            ours = bench_sliceserve(args.binary, folder, workers, args.seconds)["images_per_s"]
            exact = bench_sliceserve(args.binary, folder, workers, args.seconds, ["--no-dct-scaling"])["images_per_s"]
            row = {"set": set_name, "images": len(files), "workers": workers, "sliceserve": round(ours, 1),
                   "sliceserve_no_dct_scaling": round(exact, 1)}
            for kind in PIPELINES:
                rate = bench_peer(kind, blobs, workers, args.seconds)
                row[kind] = round(rate, 1)
                row[f"ratio_vs_{kind}"] = round(ours / rate, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)

    print()
    print(f"{'set':<15} {'workers':>7} {'sliceserve':>11} {'(exact)':>9} {'pillow':>9} {'opencv':>9} {'x pillow':>9} {'x opencv':>9}")
    for r in rows:
        print(f"{r['set']:<15} {r['workers']:>7} {r['sliceserve']:>11.1f} {r['sliceserve_no_dct_scaling']:>9.1f}"
              f" {r['pillow']:>9.1f} {r['opencv']:>9.1f} {r['ratio_vs_pillow']:>9.2f} {r['ratio_vs_opencv']:>9.2f}")
    print("(images/s; JPEG bytes in memory -> normalized float32 224x224 CHW; 'exact' = --no-dct-scaling,")
    print(" equal to Pillow bit for bit; ratios use the default, which DCT-scales only the large set)")

    stamp = datetime.datetime.now(datetime.timezone.utc)
    report = {"benchmark": "cpu_preprocess", "date": stamp.isoformat(timespec="seconds"),
              "machine": machine(), "seconds_per_measurement": args.seconds,
              "versions": {"pillow": Image.__version__, "opencv": cv2.__version__, "numpy": np.__version__,
                           "pillow_libjpeg_turbo": PIL.features.version("libjpeg_turbo")},
              "results": rows}
    path = save_report(args.out, "preprocess", stamp, report)
    print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
