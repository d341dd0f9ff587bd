#!/usr/bin/env bash
# The GPU check, one prepared call (issue 17): run it on a GPU machine from the repository root.
#
#   bash benchmarks/gpu_check.sh [OUTPUT_DIR]
#   bash benchmarks/gpu_check.sh --dry-run [OUTPUT_DIR]   # CPU, toy sizes: the tests run this
#
# Needs a python with torch (CUDA) and numpy. Whatever else the network parts need (lightning,
# PyYAML, ...) is installed from wheels in .gpu-wheels/ when that folder exists (made here by
# `bash benchmarks/gpu_check.sh --prepare`), else from the package index. The real scan is read
# from .gpu-data/ or ../shared/data when present. Prints every figure as it comes and writes
# OUTPUT_DIR/gpu_check.json (default: $OUT, else benchmarks/results); under 8 minutes on one
# H100 or H200.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAR=siemens-star-small.npz.bz2

if [ "${1:-}" = "--prepare" ]; then  # on the development machine: wheels and data to carry
    mkdir -p .gpu-wheels .gpu-data
    pip download -q --no-deps -d .gpu-wheels lightning lightning-utilities torchmetrics fsspec tqdm \
        packaging typing-extensions
    for version in 3.10 3.11 3.12 3.13; do
        pip download -q --no-deps --only-binary=:all: --python-version "$version" \
            --platform manylinux2014_x86_64 -d .gpu-wheels pyyaml h5py safetensors
    done
    cp "../shared/data/velociprobe-siemens-star/$STAR" .gpu-data/ 2>/dev/null || true
    du -sh .gpu-wheels .gpu-data
    exit 0
fi

if [ "${1:-}" = "--dry-run" ]; then  # on any machine, CPU only, toy sizes: checks the script (tests)
    OUTPUT=${2:-${OUT:-benchmarks/results}}
    mkdir -p "$OUTPUT"
    PYTHONPATH=src timeout 300 "$PY" benchmarks/gpu_bench.py --dry-run --output "$OUTPUT/gpu_check_dry_run.json"
    status=$?
    echo "== wrote $OUTPUT/gpu_check_dry_run.json"
    exit $status
fi

OUTPUT=${1:-${OUT:-benchmarks/results}}
mkdir -p "$OUTPUT"
echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
"$PY" --version
if ! "$PY" -c "import torch, numpy; assert torch.cuda.is_available()"; then
    echo "needs a python with a CUDA torch and numpy (PYTHON=...)"; exit 1
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
# missing packages go to a folder of their own (never into the machine's python)
SITE=$PWD/.gpu-site
for module in lightning yaml tqdm h5py safetensors; do
    if ! PYTHONPATH=$SITE "$PY" -c "import $module" 2>/dev/null; then
        if [ -d .gpu-wheels ]; then
            for wheel in .gpu-wheels/*.whl; do  # one by one: PyYAML's wheels for other pythons fail
                "$PY" -m pip install -q --no-index --no-deps --target "$SITE" "$wheel" >/dev/null 2>&1 || true
            done
        else
            "$PY" -m pip install -q --target "$SITE" lightning pyyaml tqdm 2>&1 | tail -2
        fi
        break
    fi
done
REAL=""
for candidate in ".gpu-data/$STAR" "../shared/data/velociprobe-siemens-star/$STAR"; do
    [ -f "$candidate" ] && REAL="--real $candidate --real-output $OUTPUT/real_scan_gpu" && break
done
echo "== benchmarks"
PYTHONPATH=src:$SITE timeout 450 "$PY" benchmarks/gpu_bench.py --output "$OUTPUT/gpu_check.json" $REAL
echo "== wrote $OUTPUT/gpu_check.json"
