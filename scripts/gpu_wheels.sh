#!/usr/bin/env bash
# The wheels the lent GPU machine (the device tool) lacks for scripts/gpu_runtimes.sh, fetched
# HERE into .whl/ (git-ignored; the device machine reaches no package registry, and what it
# gets travels with the working tree, at most 64 MiB a call). Its image holds PyTorch, ONNX,
# onnxruntime (CPU), pandas, scikit-learn, scipy, safetensors, psutil, matplotlib, pyyaml,
# requests and tqdm; OFA, gdown (which OFA imports) and its beautifulsoup4 are not (profiling
# needs no XGBoost).
#
#   bash scripts/gpu_wheels.sh      # then the device call at the top of gpu_runtimes.sh
#
# Not carried, because they cannot be: onnxruntime-gpu (a 256 MB
# wheel, four times the limit) and TensorRT (its libraries come from NVIDIA's own index, about
# 1-2 GB): the onnxruntime-tensorrt and tensorrt backends cannot run on that machine as lent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 \
  -d .whl ofa==0.1.0.post202307202001 gdown beautifulsoup4 soupsieve
du -sh .whl
ls .whl
