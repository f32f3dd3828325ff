#!/usr/bin/env bash
# Fill .whl/ with the Python 3.12 x86-64 wheels that benchmarks/gpu_check.sh needs on a GPU
# machine with PyTorch but no internet (run here, where pip works; .whl/ is git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux1_x86_64 --platform any)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl \
    speechbrain==1.1.2 hyperpyyaml==1.2.3 "ruamel.yaml==0.18.17" "ruamel.yaml.clib" \
    jiwer==4.0.0 rapidfuzz soundfile==0.14.0 cffi pycparser espeakng-loader==0.2.4
du -sh .whl
