#!/usr/bin/env bash
# The GPU table of the inference backends in one run, under 8 minutes on one H100:
# images/s at 512^2 and 1024^2, batch 1/8/32, torch fp32/bf16/fp16, ONNX Runtime CUDA EP,
# TensorRT EP (512^2, batch 1 and 8: engines build per shape), big-lama-shaped random
# weights. Rows whose provider is missing say so instead of failing the run.
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
# 420 s of rows at most (bench_gpu.py --budget-s), plus start-up and the export: < 8 min.
timeout 470 "$PYTHON" benchmarks/bench_gpu.py --budget-s 360 "$@"
