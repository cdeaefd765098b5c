#!/usr/bin/env bash
# Makes the release bundle: dist/sliceserve-VERSION-linux-ARCH.tar.gz (and .sha256), holding
#   bin/sliceserve                              static: Swift runtime and libjpeg-turbo linked in
#   lib/libdnnl.so.2, libgomp.so.1, libOpenCL.so.1  oneDNN for the fast CPU executor (loaded at run
#                                               time from here when the system has none)
#   share/sliceserve/models/mobilenet_v2/       the default model (found by the binary on its own)
#   README.md, LICENSE, THIRD_PARTY_NOTICES.md, BUILD-INFO
# It runs from any folder with no build tree, venv or Swift: glibc 2.31+ is all it needs; CUDA is
# loaded at run time when the machine has it. Scripts/test.sh makes it and the tests run it from
# an empty folder. Usage: Scripts/package.sh [--out DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out="$root/dist"
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "package: unknown argument '$1' (see --help)" >&2; exit 64 ;;
    esac
done

model="${XDG_CACHE_HOME:-$HOME/.cache}/sliceserve/models/mobilenet_v2"
for file in model.onnx config.json labels.txt; do
    [ -f "$model/$file" ] || { echo "package: no $model/$file: make the default model with .venv/bin/python Scripts/models.py (Scripts/run.sh does it)" >&2; exit 1; }
done

bin=$(bash Scripts/build-static.sh | tail -n1)
version=$("$bin" --version)
arch=$(uname -m)
name="sliceserve-$version-linux-$arch"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
dir="$stage/$name"
mkdir -p "$dir/bin" "$dir/share/sliceserve/models"

strip -o "$dir/bin/sliceserve" "$bin"
# oneDNN and the two libraries it needs beyond glibc and libstdc++ (Debian's packages).
mkdir -p "$dir/lib"
for so in libdnnl.so.2 libgomp.so.1 libOpenCL.so.1; do
    # awk reads to the end (no `exit`): an early exit would close the pipe on ldconfig, whose
    # SIGPIPE (141) fails the whole script under pipefail.
    path=$(ldconfig -p | awk -v so="$so" '!found && $1 == so && /x86-64|aarch64/ { print $NF; found = 1 }')
    [ -n "$path" ] || { echo "package: no $so on this machine (Scripts/setup.sh installs libdnnl-dev)" >&2; exit 1; }
    cp -L "$path" "$dir/lib/$so"
done
cp -r "$model" "$dir/share/sliceserve/models/mobilenet_v2"
cp LICENSE "$dir/LICENSE"

# The README's parts for users of the binary (not building, developing or benchmarking it).
awk '/^## / { skip = ($0 ~ /^## (Set up and run|Performance|Using the preprocessing interface from Swift|Repository|Development)/) }
     !skip { print }' README.md > "$dir/README.md"
cat >> "$dir/README.md" <<'TEXT'

## This bundle

`bin/sliceserve` is self-contained (the Swift runtime and libjpeg-turbo are linked in) and finds
the default model in `share/sliceserve/models/mobilenet_v2` by itself:

```sh
bin/sliceserve doctor
bin/sliceserve classify photo.jpg
bin/sliceserve serve --host 0.0.0.0 --port 8000
```

CUDA (driver, NVML, nvJPEG, NVRTC, ...) is loaded at run time when the machine has it; without
it everything runs on the CPU. The CPU executor's fast path, oneDNN 2.6, is in `lib/` with the
two libraries it needs (libgomp, the OpenCL ICD loader); a system libdnnl.so.2 is used first.
`bin/sliceserve doctor` says which one loaded, or why none did (then the CPU executor runs its
own kernels).
TEXT

{
    echo "# Third-party notices"
    echo
    echo "\`bin/sliceserve\` contains code from the projects below, under their licenses."
    echo
    echo "## libjpeg-turbo"
    echo
    echo '```'
    cat /usr/share/doc/libturbojpeg0-dev/copyright 2>/dev/null || cat /usr/share/doc/libturbojpeg0/copyright
    echo '```'
    for pkg in libdnnl2 libgomp1 ocl-icd-libopencl1; do
        echo
        echo "## $pkg (lib/)"
        echo
        echo '```'
        cat "/usr/share/doc/$pkg/copyright"
        echo '```'
    done
    swiftlicense=$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")/share/swift/LICENSE.txt
    if [ -f "$swiftlicense" ]; then
        echo
        echo "## The Swift standard library and runtime (swift.org)"
        echo
        echo '```'
        cat "$swiftlicense"
        echo '```'
    fi
    for checkout in .build-static/checkouts/*/; do
        license=$(ls "$checkout"LICENSE* 2>/dev/null | head -n1 || true)
        [ -n "$license" ] || continue
        echo
        echo "## $(basename "$checkout")"
        echo
        echo '```'
        cat "$license"
        echo '```'
    done
} > "$dir/THIRD_PARTY_NOTICES.md"

{
    echo "sliceserve $version"
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -srm)"
    echo "swift $(swift --version 2>/dev/null | sed -n 1p)"
    echo "glibc $(ldd --version | awk 'NR == 1 {print $NF}')"
    echo "needs: $(ldd "$dir/bin/sliceserve" | awk '/=>/ {print $1}' | tr '\n' ' ')"
} > "$dir/BUILD-INFO"

mkdir -p "$out"
tarball="$out/$name.tar.gz"
tar -C "$stage" --owner=0 --group=0 --numeric-owner -czf "$tarball.tmp" "$name"
mv "$tarball.tmp" "$tarball"
(cd "$out" && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")
echo "package: $tarball ($(du -h "$tarball" | cut -f1))"
