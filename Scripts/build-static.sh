#!/usr/bin/env bash
# Builds the self-contained `sliceserve`: release, the Swift runtime linked in
# (--static-swift-stdlib) and libjpeg-turbo linked in (libturbojpeg.a). It needs only glibc,
# libstdc++, libm and libgcc at run time; CUDA is loaded at run time when it is there.
# Own build folder (.build-static), so it does not rebuild the test build in .build and back.
# Prints the binary's path on its last line. Used by Scripts/package.sh and Scripts/device-pack.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scratch="$root/.build-static"
mkdir -p "$scratch/staticlib"

# Link libturbojpeg.a, not the .so: the linker looks in -L folders in order and takes the first
# libturbojpeg it finds, so a folder holding only the archive, named first, wins.
archive=$(dpkg -L libturbojpeg0-dev 2>/dev/null | grep '/libturbojpeg\.a$' | head -n1 || true)
[ -n "$archive" ] || { echo "build-static: libturbojpeg.a not found (apt-get install libturbojpeg0-dev)" >&2; exit 1; }
ln -sf "$archive" "$scratch/staticlib/libturbojpeg.a"

echo "build-static: building the static release binary in .build-static (a few minutes the first time)" >&2
swift build -c release --static-swift-stdlib --scratch-path "$scratch" --product sliceserve \
    -Xlinker -L"$scratch/staticlib" >&2
bin="$(swift build -c release --static-swift-stdlib --scratch-path "$scratch" --show-bin-path)/sliceserve"

if ldd "$bin" | grep -Eq 'turbojpeg|libswift|libFoundation|libdispatch|libBlocksRuntime'; then
    echo "build-static: $bin still links a library a machine without Swift lacks:" >&2
    ldd "$bin" >&2
    exit 1
fi
echo "$bin"
