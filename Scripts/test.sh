#!/usr/bin/env bash
# Runs SliceServe's whole test suite: set-up, Python oracles, then every Swift test in release mode
# (the SIMD preprocessing code is many times slower unoptimized). With CI=true, a missing oracle
# fails the run instead of skipping. Extra arguments go to `swift test` (e.g. --filter Fuzz).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash Scripts/setup.sh
bash Scripts/check-dnnl-abi.sh          # CKernels/dnnl.c's hand-declared oneDNN ABI against its header
# setup.sh installed oneDNN: the fast CPU path's tests must run, not skip.
export SLICESERVE_REQUIRE_ONEDNN="${SLICESERVE_REQUIRE_ONEDNN:-1}"
.venv/bin/python Scripts/models.py      # the real models (verified against a float64 reference)
.venv/bin/python Scripts/oracles.py     # Pillow / onnxruntime references

bash Scripts/build-plugins.sh            # the reference preprocessing plug-in and its broken builds
bash Scripts/package.sh                  # the release bundle (static binary, own build folder); tests unpack and run it
bash Scripts/deploy-venv.sh              # kserve + kubernetes (own venv) for the deployment manifest check
# The long reliability cases against the release binary (crash requests, two 63 MB JSON bodies
# with health and peak RSS watched, stalled connections); the fast ones are XCTests.
.venv/bin/python Scripts/soak.py --binary .build-static/release/sliceserve

# NVRTC from the nvidia-cuda-nvrtc wheel: the tests compile every CUDA kernel with it (no GPU
# needed). A user's own SLICESERVE_LIBNVRTC wins.
if [ -z "${SLICESERVE_LIBNVRTC:-}" ]; then
    nvrtc=$(ls .venv/lib/python3*/site-packages/nvidia/cu13/lib/libnvrtc.so.13 2>/dev/null | head -n1 || true)
    [ -n "$nvrtc" ] && export SLICESERVE_LIBNVRTC="$root/$nvrtc"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
swift test -c release --disable-swift-testing --disable-testable-imports "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# One plain closing line: "N passed, N failed" (from XCTest's summary).
summary=$(grep -E "^[[:space:]]*Executed [0-9]+ tests?, with [0-9]+ failures?" "$log" | tail -n 1 || true)
if [ -n "$summary" ]; then
    executed=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
    failed=$(echo "$summary" | sed -E 's/.*with ([0-9]+) failures?.*/\1/')
    skipped=$(grep -cE "^Test Case .* skipped" "$log" || true)
    echo "tests: $((executed - failed - skipped)) passed, $failed failed, $skipped skipped"
fi
exit "$status"
