#!/usr/bin/env bash
# The GPU table of the inference backends in one run, under 8 minutes on one H100:
# images/s at 512^2 and 1024^2, batch 1/8/32, torch fp32/bf16/fp16, ONNX Runtime CUDA EP,
# TensorRT EP (512^2, batch 1 and 8: engines build per shape), big-lama-shaped random
# weights, and the bulk job's images/s per GPU on 512^2 inputs (bench_bulk_gpu.py). Rows
# whose provider is missing say so instead of failing the run.
#
#   bash benchmarks/device_check.sh [extra bench_gpu.py arguments]
#
# Installs nothing beyond `pip install -e '.[test,onnx]'`, and only when torch or
# onnxruntime cannot be imported. The ORT rows need the CUDA build of onnxruntime
# (onnxruntime-gpu); with the CPU build they are printed as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
if ! "$PYTHON" -c "import torch, onnxruntime, onnxscript" 2>/dev/null; then
    "$PYTHON" -m pip install -q -e '.[test,onnx]'
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# 300 s of rows at most (bench_gpu.py --budget-s), plus start-up and the export, then the
# bulk job's row (bench_bulk_gpu.py, ~1 min): < 8 min in all.
timeout 380 "$PYTHON" benchmarks/bench_gpu.py --budget-s 300 "$@" || echo "bench_gpu.py stopped (status $?)"
timeout 90 "$PYTHON" benchmarks/bench_bulk_gpu.py --images 256 --batch 16 || echo "bench_bulk_gpu.py stopped (status $?)"
