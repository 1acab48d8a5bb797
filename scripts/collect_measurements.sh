#!/usr/bin/env bash
# Collect this machine's committed datasets (data/measurements/). Resumable: re-run the same
# command after an interruption and it continues where it stopped.
#
#   bash scripts/collect_measurements.sh            # all CPU settings of this machine
#
# The two single-thread jobs run side by side, each pinned to its own core; the 2-thread job
# runs alone afterwards. GPU rows (torch CUDA, batch 1 and 64) were collected on a lent
# NVIDIA H100 with the commands at the end of this file.
set -euo pipefail
cd "$(dirname "$0")/.."
D=data/measurements
P="profile --quiet --show 0 --seed 0"
taskset -c 0 sh -c "ofa-latency $P --space ofa_mbv3_w1.2 --backend onnxruntime --threads 1 --n 1500 --out $D/ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1.csv && \
                    ofa-latency $P --space ofa_mbv3_w1.0 --backend onnxruntime --threads 1 --n 500 --out $D/ofa_mbv3_w1.0_onnxruntime_cpu_t1_b1.csv" &
taskset -c 1 ofa-latency $P --space ofa_mbv3_w1.2 --backend torch --threads 1 --n 1500 --out $D/ofa_mbv3_w1.2_torch_cpu_t1_b1.csv &
wait
ofa-latency $P --space ofa_mbv3_w1.2 --backend onnxruntime --threads 2 --n 1500 --out $D/ofa_mbv3_w1.2_onnxruntime_cpu_t2_b1.csv
# the same 1,500 subnets again with nothing else running on the machine (about 30 min)
taskset -c 0 ofa-latency $P --space ofa_mbv3_w1.2 --backend onnxruntime --threads 1 --n 1500 --out $D/ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1_alone.csv

# A second CPU host: the first 500 subnets with onnxruntime and torch, 1 thread, on the machine
# of a later session (2026-11-23, afternoon), one after the other with nothing else running.
# Its descriptor is beside each table; it is another device (host2), never mixed with the above.
#   ofa-latency $P --space ofa_mbv3_w1.2 --backend onnxruntime --threads 1 --n 500 --out $D/ofa_mbv3_w1.2_onnxruntime_cpu_t1_b1_host2.csv
#   ofa-latency $P --space ofa_mbv3_w1.2 --backend torch --threads 1 --n 500 --out $D/ofa_mbv3_w1.2_torch_cpu_t1_b1_host2.csv

# GPU (run on the GPU machine; cheaper protocol, no drift correction: GPU timings are stable)
# G="profile --space ofa_mbv3_w1.2 --backend torch --device cuda --n 1500 --seed 0 --quiet --show 0 \
#    --no-drift-correction --rounds 3 --runs-per-round 3 --max-rounds 6"
# ofa-latency $G --batch-size 1  --out $D/ofa_mbv3_w1.2_torch_cuda_h100_b1.csv
# ofa-latency $G --batch-size 64 --out $D/ofa_mbv3_w1.2_torch_cuda_h100_b64.csv
