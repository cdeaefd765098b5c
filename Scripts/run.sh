#!/usr/bin/env bash
# Builds SliceServe (release) and runs it. With no arguments it runs the main job of this version:
# `sliceserve doctor`, then preprocessing a real photo (grace_hopper.jpg) into a model input
# tensor (.cache/grace_hopper.npy, float32 [1,3,224,224]). With arguments, runs
# `sliceserve ARGS...` instead, e.g. `Scripts/run.sh preprocess photo.jpg --out t.npy`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash Scripts/setup.sh
swift build -c release --product sliceserve 2>&1 | grep -vE "^\[[0-9]+/[0-9]+\]|^Building for|^Compiling plugin" || true
test -x .build/release/sliceserve || { echo "run: build failed" >&2; exit 1; }
bin="$root/.build/release/sliceserve"

if [ $# -gt 0 ]; then
    exec "$bin" "$@"
fi
"$bin" doctor
echo
"$bin" preprocess .cache/photos/grace_hopper.jpg --out .cache/grace_hopper.npy
.venv/bin/python -c "
import numpy as np
t = np.load('.cache/grace_hopper.npy')
print(f'tensor {t.shape} {t.dtype}: mean {t.mean():.4f}, min {t.min():.4f}, max {t.max():.4f}')
"
