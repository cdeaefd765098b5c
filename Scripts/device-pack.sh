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
mkdir -p "$out/staticlib"

# Link libturbojpeg.a, not the .so: the linker looks in -L folders in order and takes the first
# libturbojpeg it finds, so a folder holding only the archive, named first, wins.
archive=$(dpkg -L libturbojpeg0-dev 2>/dev/null | grep '/libturbojpeg\.a$' | head -n1 || true)
[ -n "$archive" ] || { echo "device-pack: libturbojpeg.a not found (apt-get install libturbojpeg0-dev)" >&2; exit 1; }
ln -sf "$archive" "$out/staticlib/libturbojpeg.a"

echo "device-pack: building static release binary"
swift build -c release --static-swift-stdlib --product sliceserve -Xlinker -L"$out/staticlib"
bin="$(swift build -c release --show-bin-path)/sliceserve"

if ldd "$bin" | grep -Eq 'turbojpeg|libswift|libFoundation'; then
    echo "device-pack: $bin still links a library the GPU machine lacks:" >&2
    ldd "$bin" >&2
    exit 1
fi
strip -o "$out/sliceserve" "$bin"
xz -T0 -6 -f "$out/sliceserve"
# `swift test -c release` relinks the test build's binary; nothing else in .build changes.

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

shared="$root/../shared/bench"
for script in peers.py e2e_peer.py; do
    [ -f "$shared/$script" ] && cp -f "$shared/$script" "$out/$script"
done
ls -l "$out" | sed 's/^/device-pack: /'
echo "device-pack: done; run Scripts/device-check.sh on the GPU machine with carry [\".device\"]"
