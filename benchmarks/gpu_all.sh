#!/usr/bin/env bash
# Every GPU check of the project in one run, sized for the ~15 minutes of device time a session
# is lent: the ASR port's gpu_check (benchmarks/gpu_check.sh, at most 290 s) and the ranking
# trainer's end-to-end vs model-step throughput (benchmarks/recsys_gpu_train.py, at most
# RECSYS_SECONDS). Results and logs are copied to $OUT (the device tool's return folder) or
# /tmp/gpu_all. Name `.whl` in the device tool's `carry` (benchmarks/gpu_wheels.sh fills it).
#   bash benchmarks/gpu_all.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu_all}
mkdir -p "$out"
nvidia-smi -L 2>&1 | tee "$out/nvidia_smi.txt"
bash benchmarks/gpu_check.sh 2>&1 | tee "$out/gpu_check.log"
cp results/asr/synthetic/gpu_check.json "$out/" || echo "gpu_all: gpu_check wrote no JSON"
# 6M rows (~1 GB of shards, generated there): 60 timed steps at batch 65536 fit in one epoch.
PYTHONUNBUFFERED=1 timeout "${RECSYS_SECONDS:-300}" python3 benchmarks/recsys_gpu_train.py \
    --rows 6000000 --batch-sizes 65536 8192 --steps 60 --warmup 10 \
    --out "$out/throughput_train_gpu.json" 2>&1 | tee "$out/recsys_gpu_train.log"
