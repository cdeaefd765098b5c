#!/usr/bin/env bash
# Builds SliceServe (release) and runs it. With no arguments it runs the main job: makes the
# default model on first use (MobileNetV2 with torchvision's ImageNet weights, in
# ~/.cache/sliceserve/models/mobilenet_v2), shows `sliceserve doctor`, then serves the model on
# http://127.0.0.1:8000 (KServe v2 / Triton HTTP protocol) on the CPU until Ctrl-C.
# With arguments, runs `sliceserve ARGS...` instead, e.g. `Scripts/run.sh classify photo.jpg`
# or `Scripts/run.sh serve --port 9000`.
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
exec "$bin" serve
