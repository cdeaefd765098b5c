#!/usr/bin/env bash
# The one script run on a lent GPU machine (see docs/DEVELOPERS.md). Needs .device/ from
# Scripts/device-pack.sh (carried). Reads the card, never changes it: no MIG mode, clock, power
# or reset commands. Writes logs and JSON under $OUT (at most 8 files) and prints a short
# table last.
#
#   Scripts/device-check.sh            everything (about 3 minutes)
#   Scripts/device-check.sh --quick    doctor, kernel compile and conformance only
#   Scripts/device-check.sh --mig      also record the card's MIG profiles and placements as JSON
#   Scripts/device-check.sh --preba    the PREBA ablation (Bench/preba/experiment.py): MobileNetV2 on
#                                      the whole GPU and on 7 SM partitions of 16 SMs, ResNet-50 on the
#                                      partitions (about 8 minutes; JSON under $OUT, plotted here
#                                      with Bench/preba/experiment.py --replot)
#   Scripts/device-check.sh --executor the GPU executor only (issues 6 and 19, about 8 minutes):
#                                      operator cases (each convolution implementation forced in
#                                      turn) and whole models against the reference CPU executor
#                                      (ResNet-50 also with each implementation forced; the cases
#                                      under compute-sanitizer memcheck and racecheck, and their
#                                      outputs saved bit for bit to executor-outputs.json for
#                                      `selftest --executor --fake --compare` against the CUDA
#                                      emulator here), top-1 on the photos, `tune` (saved to
#                                      tuning.json: carry it back as .device/tuning.json), then
#                                      images/s per batch size for ResNet-50, MobileNetV2 and
#                                      EfficientNet-B0 beside PyTorch fp16 (eager, CUDA graphs)
#                                      and torch.compile max-autotune, and ResNet-50 layer by layer
# Every mode but --preba and --quick also runs `selftest --gpu` under compute-sanitizer.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
OUT=${OUT:-/tmp/sliceserve-device-out}
mkdir -p "$OUT"
quick=0
mig=0
executor=0
preba=0
for arg in "$@"; do
    case "$arg" in
        --preba) preba=1 ;;
        --quick) quick=1 ;;
        --mig) mig=1 ;;
        --executor) executor=1 ;;
    esac
done
exec > >(tee -a "$OUT/device-check.log") 2>&1
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

# compute-sanitizer (installed on the lent machines) over a self-test: memcheck (out-of-bounds
# and misaligned accesses, leaks) and racecheck (shared-memory hazards), each a pass/fail line in
# the log. Usage: sanitize REQUIRED_PATH LABEL COMMAND...; skipped when REQUIRED_PATH is missing.
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n1)
sanitize() {
    local required=$1 label=$2
    shift 2
    [ -e "$required" ] || { echo "compute-sanitizer $label: skipped ($required missing)"; return 0; }
    [ -n "$sanitizer" ] || { echo "compute-sanitizer $label: skipped (not installed)"; return 0; }
    for tool in memcheck racecheck; do
        step "compute-sanitizer --tool $tool: $label"
        timeout 300 "$sanitizer" --tool "$tool" --error-exitcode 9 --print-limit 20 "$@" > "$work/sanitizer-$tool.log" 2>&1
        local rc=$?
        tail -n 25 "$work/sanitizer-$tool.log"
        echo "compute-sanitizer $tool $label: $([ $rc -eq 0 ] && echo clean || echo "FAILED (exit $rc)")"
        [ $rc -eq 0 ] || sanitizer_rc=$rc
    done
}
sanitizer_rc=0

work=/tmp/sliceserve-device
mkdir -p "$work"
bin="$work/sliceserve"
xz -dc .device/sliceserve.xz > "$bin" && chmod +x "$bin" || { echo "no .device/sliceserve.xz: run Scripts/device-pack.sh and carry .device"; exit 1; }

# CUDA's libraries (FACTS.md): libcuda and NVML are on the loader's path; the toolkit's are not.
for dir in /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/targets/x86_64-linux/lib; do
    [ -d "$dir" ] && LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export LD_LIBRARY_PATH
export SLICESERVE_CACHE="$work/cache"

step "card (read-only)"
nvidia-smi --query-gpu=name,uuid,driver_version,memory.total,mig.mode.current,clocks.sm,clocks.mem,temperature.gpu,power.draw \
    --format=csv

step "sliceserve doctor"
"$bin" doctor
"$bin" doctor --json > "$OUT/doctor.json"

step "slices list (read-only: NVML MIG discovery; apply/destroy are never run here)"
"$bin" slices list
"$bin" slices list --json > "$work/slices-list.json" && echo "slices list --json: ok"
"$bin" slices destroy --dry-run || echo "slices destroy --dry-run: exit $? (expected 4 with MIG disabled)"

step "kernels: NVRTC compile of every embedded kernel (PTX sm_80/sm_90, CUBIN sm_90)"
"$bin" selftest --kernels --arch compute_80,compute_90,sm_90
kernels_rc=$?

if [ $preba -eq 1 ]; then
    step "PREBA ablation: cpu+fixed -> gpu+fixed -> gpu+auto, MobileNetV2 on the whole GPU and on sm:7x16 (SM partition, shared NVJPG/L2/HBM, not MIG), server on cores 0-11, load on 12-15"
    jpegs="$work/bench-jpegs"
    rm -rf "$jpegs"; mkdir -p "$jpegs"
    python3 -c "
import sys; sys.path.insert(0, '.device'); import peers
for i, blob in enumerate(peers.make_jpegs(256)): open('$jpegs/%03d.jpg' % i, 'wb').write(blob)
"
    PYTHONUNBUFFERED=1 timeout 120 python3 Bench/export_torchvision.py "$work/models" --models resnet50 || echo "export failed: exit $?"
    preba_rc=0
    # MobileNetV2 on the whole GPU and on 7 SM partitions; ResNet-50 on the partitions (the paper's pair).
    for run in "mobilenet_v2 .device/models/mobilenet_v2 gpu:0" "mobilenet_v2 .device/models/mobilenet_v2 sm:7x16" \
               "resnet50 $work/models/resnet50 sm:7x16"; do
        set -- $run
        [ -d "$2" ] || continue
        PYTHONUNBUFFERED=1 timeout 170 python3 Bench/preba/experiment.py --binary "$bin" --model "$2" \
            --images "$jpegs" --slices "$3" --offload gpu --slo-ms 50 --server-cores 0-11 --client-cores 12-15 \
            --step-seconds 3 --max-steps 6 --start-rate 200 --client-workers 128 --label "$1-$(echo $3 | tr : -)" --out "$OUT" --svg-out "$work" \
            || preba_rc=$?
    done
    exit $preba_rc
fi

if [ $executor -eq 1 ]; then
    bench_rc=0
    models="$work/models"
    mkdir -p "$models"
    step "export ResNet-50 and EfficientNet-B0 (torchvision, random weights, classic exporter, opset 13)"
    PYTHONUNBUFFERED=1 timeout 180 python3 Bench/export_torchvision.py "$models" || echo "export failed: exit $?"

    # Convolution choices measured by an earlier run on this kind of card (carried back as
    # .device/tuning.json) start this one tuned; the tune step below measures what is missing.
    if [ -f .device/tuning.json ]; then
        python3 - .device/tuning.json "$SLICESERVE_CACHE/tuning" <<'PY'
import json, os, sys
files = json.load(open(sys.argv[1])); os.makedirs(sys.argv[2], exist_ok=True)
for name, content in files.items():
    if name.startswith("conv-") and name.endswith(".json") and "/" not in name:
        open(os.path.join(sys.argv[2], name), "w").write(content)
print("tuning files restored:", len(files))
PY
    fi

    step "GPU executor vs onnxruntime (operator cases, each convolution implementation forced in turn) and vs the CPU executor (whole models), fp16 tolerance"
    check_args=()
    [ -f .device/ops/manifest.json ] && check_args+=(--cases .device/ops)
    for m in .device/models/mobilenet_v2 .device/models/efficientnet_lite0 "$models/resnet50" "$models/efficientnet_b0"; do
        [ -d "$m" ] && check_args+=(--executor-model "$m")
    done
    # The operator cases' outputs, bit for bit, for the comparison with the CUDA emulator back home:
    #   sliceserve selftest --executor --cases .cache/oracles/ops --fake --compare executor-outputs.json
    outputs_flag=()
    [ -f .device/ops/manifest.json ] && outputs_flag=(--outputs "$OUT/executor-outputs.json")
    "$bin" selftest --executor "${check_args[@]}" "${outputs_flag[@]}" --json > "$OUT/executor-check.json"
    check_rc=$?
    sanitize .device/ops "operator cases" "$bin" selftest --executor --cases .device/ops
    python3 - "$OUT/executor-check.json" <<'PY'
import json, sys
try: rs = json.load(open(sys.argv[1]))["executor"]
except Exception as e: print("no executor results:", e); sys.exit(0)
for r in rs:
    if not r["passed"] or r["kind"] == "model":
        print(("ok  " if r["passed"] else "FAIL"), r["kind"], r["name"], "batch", r["batch"], "rel L2", r["relative_l2"], r["milliseconds"], "ms", r["detail"][:200])
print(sum(r["passed"] for r in rs), "passed,", sum(not r["passed"] for r in rs), "failed")
PY
    step "ResNet-50 against the reference CPU executor with each convolution implementation forced in turn (SLICESERVE_CONV)"
    forced_rc=0
    : > "$work/executor-forced.jsonl"
    if [ -d "$models/resnet50" ]; then
        for impl in tc128x128 tc128x64 tc64x64 tc64x64+split8 simt cudnn0 cublaslt0; do
            SLICESERVE_CONV=$impl timeout 120 "$bin" selftest --executor --executor-model "$models/resnet50" --json \
                | python3 -c "import json,sys; [print(json.dumps(dict(r, forced='$impl'))) for r in json.load(sys.stdin)['executor']]" \
                >> "$work/executor-forced.jsonl" || forced_rc=1
        done
        python3 - "$work/executor-forced.jsonl" "$OUT/executor-check.json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for r in rows:
    print(("ok  " if r["passed"] else "FAIL"), r["forced"], r["name"], "batch", r["batch"], "rel L2", r["relative_l2"], r["detail"][:120])
try:
    report = json.load(open(sys.argv[2])); report["forced"] = rows; json.dump(report, open(sys.argv[2], "w"), indent=1)
except Exception as e: print("could not add the forced runs to executor-check.json:", e)
sys.exit(0 if rows and all(r["passed"] for r in rows) else 1)
PY
        forced_rc=$(( forced_rc | $? ))
    fi

    step "top-1 on the photos: GPU executor vs CPU executor (real weights)"
    for m in mobilenet_v2 efficientnet_lite0; do
        [ -d .device/models/$m ] || continue
        "$bin" classify --model .device/models/$m --executor gpu --top-k 1 --json .device/photos/*.jpg > "$work/top1-gpu-$m.json"
        "$bin" classify --model .device/models/$m --top-k 1 --json .device/photos/*.jpg > "$work/top1-cpu-$m.json"
        python3 - "$work/top1-gpu-$m.json" "$work/top1-cpu-$m.json" "$m" <<'PY'
import json, sys
g, c = (json.load(open(p)) for p in sys.argv[1:3])
same = sum(a["predictions"][0]["index"] == b["predictions"][0]["index"] for a, b in zip(g, c))
print(f"{sys.argv[3]}: top-1 GPU = CPU on {same} of {len(c)} photos")
for a, b in zip(g, c):
    if a["predictions"][0]["index"] != b["predictions"][0]["index"]:
        print("  differs:", a["image"], a["predictions"][0], b["predictions"][0])
PY
    done

    step "serving on SM partitions: serve --slices sm:7x16 --check (7 green contexts of 16 SMs, graphs captured on each)"
    SLICESERVE_TUNE=0 timeout 120 "$bin" serve --model .device/models/mobilenet_v2 --slices sm:7x16 --max-batch 8 --check || echo "sm:7x16 serve check: exit $?"

    step "tune: each convolution's implementation measured on this card (buckets up to 256; 30 s for ResNet-50, 15 s for each other model)"
    for m in "$models/resnet50:30" .device/models/mobilenet_v2:15 "$models/efficientnet_b0:15"; do
        [ -d "${m%:*}" ] || continue
        timeout 120 "$bin" tune --model "${m%:*}" --max-batch 256 --budget "${m##*:}" || echo "tune ${m%:*}: exit $?"
    done
    python3 - "$SLICESERVE_CACHE/tuning" "$OUT/tuning.json" <<'PY'
import json, os, sys
d = sys.argv[1]
files = {n: open(os.path.join(d, n)).read() for n in sorted(os.listdir(d))} if os.path.isdir(d) else {}
json.dump(files, open(sys.argv[2], "w"))
print("tuning files saved to tuning.json (carry it back as .device/tuning.json):", len(files))
PY

    step "GPU executor images/s per batch size (tensor cores, CUDA graphs, tuned convolutions), then PyTorch fp16 channels_last in the same call"
    # The benchmarks use the choices `tune` stored and measure nothing more (a bounded run time).
    export SLICESERVE_TUNE=0
    : > "$OUT/bench-model.jsonl"
    for m in "$models/resnet50" .device/models/mobilenet_v2 "$models/efficientnet_b0"; do
        [ -d "$m" ] || continue
        # Inputs already on the device, as PyTorch's figures assume; then from host memory at 1 and 256.
        timeout 120 "$bin" bench model --executor gpu --model "$m" --batch 1,8,64,256 --seconds 2 --input device | tee -a "$OUT/bench-model.jsonl" || bench_rc=$?
        timeout 60 "$bin" bench model --executor gpu --model "$m" --batch 1,256 --seconds 1 --input host | tee -a "$OUT/bench-model.jsonl" || bench_rc=$?
    done
    # Without CUDA graphs, and without tensor cores, at batch 1 and 256 on ResNet-50: what each buys.
    timeout 60 "$bin" bench model --executor gpu --model "$models/resnet50" --batch 1,256 --seconds 1 --input device --no-graphs | tee -a "$OUT/bench-model.jsonl"
    SLICESERVE_TENSOR_CORES=0 timeout 90 "$bin" bench model --executor gpu --model "$models/resnet50" --batch 1,256 --seconds 1 --input device \
        | sed 's/"executor":"gpu"/"executor":"gpu-simt"/' | tee -a "$OUT/bench-model.jsonl"
    # Layer by layer at batch 1 and 256: which implementation each convolution ran and its TFLOP/s.
    timeout 90 "$bin" bench model --executor gpu --model "$models/resnet50" --batch 1,256 --seconds 1 --input device --layers \
        | grep '"step"' >> "$OUT/bench-model.jsonl" || true
    PYTHONUNBUFFERED=1 OUT="$work" timeout 240 python3 .device/peers.py bench_models > "$OUT/bench-model-peer.jsonl" || bench_rc=$?
    # The second peer: torch.compile max-autotune, ResNet-50 at batch 256, compilation capped at 120 s.
    # Only with room left under the run's 8 minutes (bash's SECONDS counts from the script's start).
    if [ "$SECONDS" -lt 300 ]; then
        PYTHONUNBUFFERED=1 timeout 200 python3 Bench/torch_compile_peer.py --batch 256 --compile-seconds 120 | tee -a "$OUT/bench-model-peer.jsonl" || true
    else
        echo "{\"figure\": \"torch_compile\", \"model\": \"resnet50\", \"batch\": 256, \"skipped\": \"no time left: $SECONDS s into the run\"}" | tee -a "$OUT/bench-model-peer.jsonl"
    fi
    grep '^{' "$OUT/bench-model-peer.jsonl" || true

    step "summary"
    python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def lines(name):
    try: return [json.loads(l) for l in open(os.path.join(out, name)) if l.startswith("{")]
    except Exception: return []
ours, peer = lines("bench-model.jsonl"), lines("bench-model-peer.jsonl")
layers = [r for r in ours if "step" in r]
ours = [r for r in ours if "images_per_s" in r]
ref = {(r["model"], r["batch"]): r for r in peer if r.get("figure") == "model_fp16"}
dense = 989.0  # H100/H200 SXM dense fp16 tensor TFLOP/s (spec sheet)
print(f"{'model':<16} {'batch':>5} {'ours img/s':>11} {'ms':>8} {'TFLOP/s':>8} {'torch graph':>12} {'ratio':>6} {'torch eager':>12}")
for r in ours:
    name = r["model"] + ("" if r.get("cuda_graphs", True) else " nograph") + (" simt" if r["executor"] == "gpu-simt" else "") + (" host-in" if r.get("input") == "host" else "")
    p = ref.get((r["model"], r["batch"]))
    ratio = f"{r['images_per_s'] / p['graph_img_s']:.2f}" if p else "-"
    print(f"{name:<16} {r['batch']:>5} {r['images_per_s']:>11.0f} {r['median_ms']:>8.3f} {r.get('tflops') or 0:>8.1f} "
          f"{(p or {}).get('graph_img_s', '-'):>12} {ratio:>6} {(p or {}).get('eager_img_s', '-'):>12}"
          f"  {100 * (r.get('tflops') or 0) / dense:.1f}% of dense fp16")
for c in (r for r in peer if r.get("figure") == "torch_compile"):
    mine = next((r for r in ours if r["model"] == "resnet50" and r["batch"] == c["batch"] and r.get("input") == "device"
                 and r.get("cuda_graphs", True) and r["executor"] == "gpu"), None)
    if "skipped" in c: print("torch.compile max-autotune:", c["skipped"])
    elif mine: print(f"torch.compile max-autotune resnet50 batch {c['batch']}: {c['compiled_img_s']} img/s (compiled in {c['compile_s']} s); ours {mine['images_per_s']:.0f}: {mine['images_per_s'] / c['compiled_img_s']:.2f}x")
for b in sorted({r["batch"] for r in layers}):
    rows = sorted((r for r in layers if r["batch"] == b and r.get("tflops")), key=lambda r: -r["ms"])[:8]
    print(f"resnet50 batch {b}: slowest convolutions:", "; ".join(f"{r['node']} {r['implementation']} {r['ms']:.3f} ms {r['tflops']:.0f} TF/s" for r in rows))
PY
    [ $check_rc -eq 0 ] && [ $kernels_rc -eq 0 ] && [ $bench_rc -eq 0 ] && [ $sanitizer_rc -eq 0 ] && [ $forced_rc -eq 0 ]
    exit $?
fi

photos_flag=()
[ -d .device/photos ] && photos_flag=(--photos .device/photos)
[ $quick -eq 0 ] && sanitize "$bin" "GPU conformance" "$bin" selftest --gpu

step "GPU conformance (selftest --gpu) and GPU preprocessing vs the CPU path, twice: the second run loads kernels from the disk cache"
"$bin" selftest --gpu "${photos_flag[@]}"
gpu_rc=$?
"$bin" selftest --gpu "${photos_flag[@]}" --json > "$OUT/selftest.json"
gpu_json_rc=$?

bench_rc=0
if [ $quick -eq 0 ]; then
    step "bench gpu (SliceServe) and the PyTorch/CuPy peer, same card, same call"
    "$bin" bench gpu --copy-mib 256 > "$OUT/bench-gpu.json" || bench_rc=$?
    cat "$OUT/bench-gpu.json"
    PYTHONUNBUFFERED=1 timeout 120 python3 Bench/gpu_peer.py --copy-mib 256 > "$OUT/bench-gpu-peer.json" || bench_rc=$?
    cat "$OUT/bench-gpu-peer.json"

    step "preprocessing throughput: JPEG bytes → 224x224 model input (CPU on all cores, GPU), and the peers"
    jpegs="$work/bench-jpegs"
    rm -rf "$jpegs"; mkdir -p "$jpegs"
    # The peers' own image set (500x375 / 375x500, quality 90, from grace_hopper), written as files.
    python3 -c "
import sys; sys.path.insert(0, '.device'); import peers
for i, blob in enumerate(peers.make_jpegs(256)): open('$jpegs/%03d.jpg' % i, 'wb').write(blob)
" || echo "could not make the benchmark JPEGs"
    : > "$OUT/bench-preprocess.json"
    "$bin" bench preprocess "$jpegs" --backend cpu --batch 64 --seconds 4 | tee -a "$OUT/bench-preprocess.json" || bench_rc=$?
    for instances in 1 4 8; do
        "$bin" bench preprocess "$jpegs" --backend gpu --batch 128 --instances $instances --seconds 4 | tee -a "$OUT/bench-preprocess.json" || bench_rc=$?
    done
    "$bin" bench preprocess "$jpegs" --backend gpu --batch 256 --instances 8 --seconds 4 | tee -a "$OUT/bench-preprocess.json" || bench_rc=$?
    "$bin" bench preprocess "$jpegs" --backend gpu --batch 128 --instances 8 --seconds 4 --layout nhwc-f16 | tee -a "$OUT/bench-preprocess.json" || bench_rc=$?
    # One 16-SM green-context partition: SM partition (shared NVJPG/L2/HBM), not MIG.
    for instances in 1 4; do
        "$bin" bench preprocess "$jpegs" --backend gpu --batch 128 --instances $instances --sm-partition 16 --seconds 4 | tee -a "$OUT/bench-preprocess.json" || bench_rc=$?
    done
    # peers.py also writes $OUT/peers.json: keep that out of $OUT (8 files come back at most).
    PYTHONUNBUFFERED=1 OUT="$work" timeout 240 python3 .device/peers.py bench_cpu bench_gpu_decode > "$OUT/bench-preprocess-peer.jsonl" || bench_rc=$?

    if [ -d .device/models/mobilenet_v2 ]; then
        step "serving end to end: sliceserve serve (CPU executor, 12 cores) with CPU vs GPU preprocessing, loadgen on 4 other cores"
        PYTHONUNBUFFERED=1 timeout 200 python3 Bench/serve_e2e.py --binary "$bin" --model .device/models/mobilenet_v2 \
            --images "$jpegs" --backends cpu,gpu --server-cores 0-11 --client-cores 12-15 --threads 12 --seconds 8 \
            > "$OUT/bench-serve.json" || bench_rc=$?
        cat "$OUT/bench-serve.json"
    fi
    grep '^{' "$OUT/bench-preprocess-peer.jsonl" || true

fi
if [ $mig -eq 1 ]; then
    step "MIG profiles and placements (read-only; MIG mode is left as found)"
    nvidia-smi mig -lgip > "$work/lgip.txt" 2>&1
    nvidia-smi mig -lgipp > "$work/lgipp.txt" 2>&1
    python3 Scripts/mig_tables.py "$work/lgip.txt" "$work/lgipp.txt" > "$OUT/mig-profiles.json"
    head -c 1500 "$OUT/mig-profiles.json"; echo
fi

step "summary"
python3 - "$OUT" "$kernels_rc" "$gpu_rc" "$gpu_json_rc" "$bench_rc" <<'PY'
import json, os, sys
out, kernels_rc, gpu_rc, gpu_json_rc, bench_rc = sys.argv[1], *map(int, sys.argv[2:])
def load(name):
    try:
        with open(os.path.join(out, name)) as f: return json.load(f)
    except Exception: return None
rows = [("kernel compile", "ok" if kernels_rc == 0 else f"FAILED ({kernels_rc})")]
st = load("selftest.json")
if st and st.get("devices"):
    for d in st["devices"]:
        rows.append((f"conformance {d['device']['name']}", f"{d['passed']} passed, {d['failed']} failed, {d['skipped']} skipped"))
        for r in d["results"]:
            if r["status"] != "passed": rows.append(("  " + r["name"], r["status"] + ": " + r["detail"][:90]))
else:
    rows.append(("conformance", f"no result (exit {gpu_rc}/{gpu_json_rc})"))
b, p = load("bench-gpu.json"), load("bench-gpu-peer.json")
if b and p:
    for key, label, better in [("hostToDeviceGBps", "H2D pinned GB/s", "higher"), ("deviceToHostGBps", "D2H pinned GB/s", "higher"),
                               ("deviceToDeviceGBps", "D2D GB/s (r+w)", "higher"), ("launchMicroseconds", "launch us (device)", "lower"),
                               ("cachedAllocFreeMicroseconds", "1MiB alloc+free us (cached)", "lower"),
                               ("deviceAllocFreeMicroseconds", "1MiB alloc+free us (driver)", "lower")]:
        ours, peer = b.get(key), p.get(key)
        if ours is None or peer is None: continue
        ratio = (ours / peer) if better == "higher" else (peer / ours if ours else float("nan"))
        rows.append((label, f"ours {ours:.3g}  peer {peer:.3g}  ({ratio:.2f}x, >1 = ours better; peer: {p.get('peers', {}).get(key, '?')})"))
def lines(name):
    try:
        with open(os.path.join(out, name)) as f: return [json.loads(l) for l in f if l.startswith("{")]
    except Exception: return []
pre, peer = lines("bench-preprocess.json"), lines("bench-preprocess-peer.jsonl")
tv = max([r["images_per_s"] for r in peer if r.get("figure") == "gpu_nvjpeg_preprocess"] or [0])
cv16 = max([r["images_per_s"] for r in peer if r.get("figure") == "cpu_preprocess_all_cores" and r.get("lib") == "opencv"] or [0])
for r in pre:
    label = f"preprocess {r['backend']}" + (f" x{r['instances']} {r['layout']}" if r.get("instances") else f" {r['threads']} threads")
    if r.get("sm_partition"): label += f" on {r['sm_partition'].split(':')[0]}" 
    ratio = f"  ({r['images_per_s'] / tv:.2f}x torchvision nvJPEG {tv:.0f}/s, {r['images_per_s'] / cv16:.2f}x OpenCV 16 procs {cv16:.0f}/s)" if tv and cv16 else ""
    rows.append((label, f"{r['images_per_s']:.0f} img/s{ratio}"))
for r in peer:
    if r.get("figure", "").startswith(("cpu_preprocess", "gpu_nvjpeg")):
        rows.append(("  peer " + r["figure"], f"{r.get('lib', '')} {r.get('cores', r.get('decode_batch', ''))}: {r['images_per_s']} img/s"))
st = load("selftest.json")
if st and st.get("preprocess"):
    for group in st["preprocess"]:
        ok = sum(1 for a in group if a["passed"])
        nv = [a for a in group if a["decoder"].startswith("nvjpeg")]
        worst = max([a["maxSteps"] for a in nv] or [0]); mean = max([a["meanSteps"] for a in nv] or [0])
        rows.append(("GPU preprocessing check", f"{ok}/{len(group)} within tolerance; nvJPEG-decoded {len(nv)}: worst max {worst} steps, worst mean {mean:.3f}"))
sv = load("bench-serve.json")
if sv:
    for run in sv.get("runs", []):
        l = run.get("load", {})
        rows.append((f"serve e2e, {run['preprocess']} preprocessing", f"{l.get('throughput_rps')} req/s, p50 {l.get('p50_ms')} ms, p99 {l.get('p99_ms')} ms, errors {l.get('errors')}" if l else run.get("error", "?")[:120]))
m = load("mig-profiles.json")
if m: rows.append(("MIG profiles read", f"{len(m.get('profiles', []))} profiles, {len(m.get('placements', []))} placement lists"))
w = max(len(r[0]) for r in rows)
for k, v in rows: print(f"{k:<{w}}  {v}")
PY
[ $kernels_rc -eq 0 ] && [ $gpu_rc -eq 0 ] && [ $bench_rc -eq 0 ] && [ $sanitizer_rc -eq 0 ]
