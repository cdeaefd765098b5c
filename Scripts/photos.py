#!/usr/bin/env python3
"""Fetch the real test photographs SliceServe uses, as data, from PyPI wheels.

The photos ship inside matplotlib, scikit-image and scikit-learn wheels. The wheels are
downloaded with `pip download --no-deps` (never installed) and only the photos are extracted, into
the folder given (default .cache/photos). Idempotent: does nothing when every photo is there.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import zipfile

# wheel requirement -> {path inside the wheel: file name}
SOURCES = {
    "matplotlib==3.11.2": {"matplotlib/mpl-data/sample_data/grace_hopper.jpg": "grace_hopper.jpg"},
    "scikit-image==0.26.0": {
        "skimage/data/rocket.jpg": "rocket.jpg",
        "skimage/data/retina.jpg": "retina.jpg",
        "skimage/data/hubble_deep_field.jpg": "hubble_deep_field.jpg",
        "skimage/data/coffee.png": "coffee.png",
        "skimage/data/chelsea.png": "chelsea.png",
        "skimage/data/camera.png": "camera.png",
        "skimage/data/astronaut.png": "astronaut.png",
        "skimage/data/motorcycle_left.png": "motorcycle_left.png",
    },
    "scikit-learn==1.9.1": {
        "sklearn/datasets/images/china.jpg": "china.jpg",
        "sklearn/datasets/images/flower.jpg": "flower.jpg",
    },
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", ".cache", "photos"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for requirement, files in SOURCES.items():
        if all(os.path.exists(os.path.join(args.out, name)) for name in files.values()):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            print(f"photos: downloading {requirement} (data only, not installed)", flush=True)
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                 "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_24_x86_64",
                 "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
                 "--python-version", "3.11",
                 "--implementation", "cp", "--abi", "cp311", "-d", tmp, requirement],
                check=True)
            wheel = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl"))
            with zipfile.ZipFile(wheel) as archive:
                for member, name in files.items():
                    with open(os.path.join(args.out, name), "wb") as out:
                        out.write(archive.read(member))


if __name__ == "__main__":
    main()
