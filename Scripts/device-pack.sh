#!/usr/bin/env bash
# Builds what a run on a lent GPU machine needs, into .device/ (ignored by git; name it in the
# device tool's `carry`): a static, stripped, xz-compressed release `sliceserve` that needs only
# glibc, libstdc++, libm and libgcc there (the Swift runtime and libjpeg-turbo are linked in;
# CUDA is loaded at run time), and copies of the shared peer scripts. Scripts/device-check.sh
# runs it there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out="$root/.device"
mkdir -p "$out"

bin=$(bash Scripts/build-static.sh | tail -n1)
strip -o "$out/sliceserve" "$bin"
xz -T0 -6 -f "$out/sliceserve"

# Test photos and their variants (progressive, CMYK, YCCK, grayscale, RGB-stored, odd sizes) for
# the GPU preprocessing check; Scripts/test.sh makes them.
photos="$root/.cache/oracles/preprocess"
if ls "$photos"/*.jpg >/dev/null 2>&1; then
    rm -rf "$out/photos"
    mkdir -p "$out/photos"
    cp "$photos"/*.jpg "$out/photos/"
else
    echo "device-pack: warning: no test photos in $photos (run Scripts/test.sh first); the GPU preprocessing check will be skipped" >&2
fi

# The default model, for the end-to-end serving comparison there (no PyPI on that machine).
model="${XDG_CACHE_HOME:-$HOME/.cache}/sliceserve/models/mobilenet_v2"
if [ -f "$model/model.onnx" ]; then
    rm -rf "$out/models"
    mkdir -p "$out/models"
    cp -r "$model" "$out/models/"
else
    echo "device-pack: warning: no default model at $model (run Scripts/models.py); the serving comparison will be skipped" >&2
fi

# The GPU executor's checks: the operator cases (onnxruntime's answers) and the second real model.
ops="$root/.cache/oracles/ops"
if [ -f "$ops/manifest.json" ]; then
    rm -rf "$out/ops"
    cp -r "$ops" "$out/ops"
else
    echo "device-pack: warning: no operator cases in $ops (run Scripts/test.sh first); the executor check will skip them" >&2
fi
lite="${XDG_CACHE_HOME:-$HOME/.cache}/sliceserve/models/efficientnet_lite0"
[ -f "$lite/model.onnx" ] && [ -d "$out/models" ] && cp -r "$lite" "$out/models/"

# Convolution choices a previous --executor run measured (its tuning.json, saved here as
# Bench/results/tuning-<card>.json): the newest goes back so that the next run starts tuned.
tuning=$(ls -t "$root"/Bench/results/tuning-*.json 2>/dev/null | sed -n 1p || true)
[ -n "$tuning" ] && cp -f "$tuning" "$out/tuning.json" && echo "device-pack: tuning from $tuning"

shared="$root/../shared/bench"
for script in peers.py e2e_peer.py; do
    [ -f "$shared/$script" ] && cp -f "$shared/$script" "$out/$script"
done
ls -l "$out" | sed 's/^/device-pack: /'
echo "device-pack: $(du -sm "$out" | cut -f1) MiB in .device (the device tool carries 64 MiB at most)"
echo "device-pack: done; run Scripts/device-check.sh on the GPU machine with carry [\".device\"]"
