#!/usr/bin/env bash
# Builds SliceServe (release) and runs it. With no arguments it runs the main job of this version:
# makes the default model on first use (MobileNetV2 with torchvision's ImageNet weights, in
# ~/.cache/sliceserve/models/mobilenet_v2), shows `sliceserve doctor`, then classifies real
# photographs on the CPU. With arguments, runs `sliceserve ARGS...` instead, e.g.
# `Scripts/run.sh classify photo.jpg` or `Scripts/run.sh preprocess photo.jpg --out t.npy`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash Scripts/setup.sh
.venv/bin/python Scripts/models.py
swift build -c release --product sliceserve 2>&1 | grep -vE "^\[[0-9]+/[0-9]+\]|^Building for|^Compiling plugin" || true
test -x .build/release/sliceserve || { echo "run: build failed" >&2; exit 1; }
bin="$root/.build/release/sliceserve"

if [ $# -gt 0 ]; then
    exec "$bin" "$@"
fi
"$bin" doctor
echo
photos=.cache/photos
"$bin" classify "$photos/grace_hopper.jpg" "$photos/china.jpg" "$photos/flower.jpg" "$photos/rocket.jpg" --top-k 3
