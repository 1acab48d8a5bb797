#!/usr/bin/env bash
# GPU settings of issue 17, for a session lent a CUDA GPU (the device tool). NOT run yet: no
# GPU was lent when this was written, so the onnxruntime-tensorrt and tensorrt backends are
# untested on a GPU.
# Each table is resumable; sizes fit a 15-minute device budget (200 subnets per setting; 50 for
# the tensorrt backend, which builds an engine per subnet).
#
#   pip install -e '.[test,tensorrt]' && pip uninstall -y onnxruntime && pip install onnxruntime-gpu
#   bash scripts/gpu_runtimes.sh data/measurements
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-data/measurements}
G="profile --space ofa_mbv3_w1.2 --device cuda --n 200 --seed 0 --quiet --show 0 \
   --no-drift-correction --rounds 3 --runs-per-round 3 --max-rounds 6"
gpu=$(python -c "import torch; print(torch.cuda.get_device_name().split()[-1].lower())")
for b in 1 64; do
  ofa-latency $G --backend torch --precision fp16 --batch-size $b --out $D/ofa_mbv3_w1.2_torch_fp16_cuda_${gpu}_b$b.csv
  ofa-latency $G --backend onnxruntime --batch-size $b --out $D/ofa_mbv3_w1.2_onnxruntime_cuda_${gpu}_b$b.csv
  for p in fp16 int8; do
    ofa-latency $G --backend onnxruntime-tensorrt --precision $p --batch-size $b \
      --out $D/ofa_mbv3_w1.2_onnxruntime-tensorrt_${p}_cuda_${gpu}_b$b.csv
    ofa-latency $G --n 50 --backend tensorrt --precision $p --batch-size $b \
      --out $D/ofa_mbv3_w1.2_tensorrt_${p}_cuda_${gpu}_b$b.csv
  done
done
