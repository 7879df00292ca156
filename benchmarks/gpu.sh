#!/usr/bin/env bash
# The GPU figures of issue 15, in one run on a CUDA machine (about 5-8 minutes): nnU-Net's default 3d_fullres
# architecture, planned for the clinical-size case (300 x 512 x 512 at 2.5 x 0.9 x 0.9 mm, made by the phantom
# generator) and untrained (benchmarks/full_models.py), through benchmarks/inference_grid.py --device cuda:
#   1. the whole 12-configuration grid and the peer, nnU-Net's nnUNetPredictor (DE+TTA: the same case, the same
#      folds, mirroring), with peak CUDA memory                                  -> $OUT/grid_peer.json, .log
#   2. the largest configuration alone (DE+TTA), if time is left                  -> $OUT/largest.json, .log
# plus the GPU and software it ran on (-> $OUT/environment.txt). Prepared on a machine without a GPU: on the device
# machine, whose image lacks nnU-Net and SimpleITK, first run benchmarks/gpu_deps.sh here, then
#   run(command="bash benchmarks/gpu.sh", carry=["var/gpu-site"], timeout_s=540)
# Elsewhere: OUT=folder bash benchmarks/gpu.sh with the project's requirements installed (a CUDA build of torch).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-var/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -f var/gpu-site/site.tar.xz ]; then
    mkdir -p /tmp/qa-gpu-site && tar -xJf var/gpu-site/site.tar.xz -C /tmp/qa-gpu-site
    export PYTHONPATH=/tmp/qa-gpu-site${PYTHONPATH:+:$PYTHONPATH}
fi
PYTHON=${PYTHON:-python3}
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    nproc
    "$PYTHON" -c 'import sys, torch, nnunetv2, SimpleITK; print(sys.version); print("torch", torch.__version__,
"cuda", torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))'
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"
"$PYTHON" -c 'import torch; raise SystemExit(0 if torch.cuda.is_available() else 1)' || {
    echo "no CUDA device: nothing measured" | tee "$OUT/error.txt"; exit 1; }
models=/tmp/qa-gpu-models
SECONDS=0
"$PYTHON" -m benchmarks.full_models --out "$models" --shape 300,512,512 --spacing 2.5,0.9,0.9 2>&1 \
    | tee "$OUT/models.log" || exit 1
cp "$models/manifest.json" "$OUT/models_manifest.json"
timeout 330 "$PYTHON" -m benchmarks.inference_grid --size clinical --models "$models/manifest.json" --device cuda \
    --only grid,peer --json "$OUT/grid_peer.json" 2>&1 | tee "$OUT/grid_peer.log"
left=$((480 - SECONDS))
if [ "$left" -gt 90 ]; then
    timeout "$left" "$PYTHON" -m benchmarks.inference_grid --size clinical --models "$models/manifest.json" \
        --device cuda --only largest --json "$OUT/largest.json" 2>&1 | tee "$OUT/largest.log"
fi
echo "gpu.sh done in ${SECONDS} s"
