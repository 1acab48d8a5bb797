#!/usr/bin/env bash
# GPU tables of issue 17 on a lent GPU machine (the device tool): PyTorch on CUDA at fp32 and
# fp16, batch 1 and 64, and the onnxruntime CUDA/TensorRT and tensorrt backends where their
# runtimes can be imported there (as lent, they cannot: scripts/gpu_wheels.sh says why, and
# this script says which settings it skipped). First, here: bash scripts/gpu_wheels.sh; then
#
#   run(command="set -o pipefail; bash scripts/gpu_runtimes.sh 2>&1 | tee $OUT/gpu_log.txt",
#       carry=[".whl"], timeout_s=540)
#
# Tables go to D (default runs/gpu), resumable, each with its descriptor; where the device tool's
# $OUT is set they come back packed as $OUT/gpu_tables.tar.gz (at most 8 files return), with
# the log. N subnets per setting (default 100). DEVICE=cpu N=2 runs the same path here, as a
# check of the script itself (no GPU needed; fp16 then fails as the torch backend says).
set -uo pipefail
cd "$(dirname "$0")/.."
D=${D:-runs/gpu}
N=${N:-100}
DEVICE=${DEVICE:-cuda}
mkdir -p "$D"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
# the project as a user installs it (its shipped data as ofa_latency.data), built there with
# the image's setuptools; the source tree itself where that fails
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
if python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
     --upgrade --target /tmp/site . ; then
  OL="python3 /tmp/site/bin/ofa-latency"  # its own script: the installed copy, not ./ofa_latency
else
  echo "installing the project failed: running it from the source tree"
  OL="python3 -m ofa_latency.cli"
fi
# OFA's supernet weights are never fetched: the profiler times random-weight subnets
$OL --version || exit 1
python3 - <<'PY' | tee "$D/gpu_environment.txt"
import importlib.util, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
for m in ("onnxruntime", "tensorrt"):
    print(m, "importable" if importlib.util.find_spec(m) else "missing")
try:
    import onnxruntime as ort
    print("onnxruntime providers", ort.get_available_providers())
except ImportError:
    pass
PY
if [ "$DEVICE" = cuda ]; then
  name=$(python3 -c "import torch; print(torch.cuda.get_device_name().split()[-1].lower())")
else
  name=cpu
fi
G="profile --space ofa_mbv3_w1.2 --device $DEVICE --n $N --seed 0 --quiet --show 0 \
   --no-drift-correction --rounds 3 --runs-per-round 3 --max-rounds 6"
status=0
run() {  # one setting; a failure is reported and the next setting still runs
  local out=$1; shift
  echo "== $out"
  if ! $OL $G "$@" --out "$D/$out"; then echo "FAILED: $out"; status=1; fi
}
providers=$(python3 -c "import onnxruntime as o; print(' '.join(o.get_available_providers()))" \
            2>/dev/null || true)
for b in 1 64; do
  for p in fp32 fp16; do
    run "ofa_mbv3_w1.2_torch_${p}_${DEVICE}_${name}_b$b.csv" --backend torch --precision $p \
        --batch-size $b
  done
  if [[ " $providers " == *" CUDAExecutionProvider "* ]]; then
    run "ofa_mbv3_w1.2_onnxruntime_${DEVICE}_${name}_b$b.csv" --backend onnxruntime --batch-size $b
  else
    echo "skipped onnxruntime on CUDA, batch $b: no CUDAExecutionProvider ($providers)"
  fi
  for p in fp16 int8; do
    if [[ " $providers " == *" TensorrtExecutionProvider "* ]]; then
      run "ofa_mbv3_w1.2_onnxruntime-tensorrt_${p}_${DEVICE}_${name}_b$b.csv" \
          --backend onnxruntime-tensorrt --precision $p --batch-size $b
    else
      echo "skipped onnxruntime-tensorrt $p, batch $b: no TensorrtExecutionProvider"
    fi
    if python3 -c "import tensorrt" 2>/dev/null; then
      run "ofa_mbv3_w1.2_tensorrt_${p}_${DEVICE}_${name}_b$b.csv" --n 50 --backend tensorrt \
          --precision $p --batch-size $b
    else
      echo "skipped tensorrt $p, batch $b: tensorrt is not installed there"
    fi
  done
done
ls -la "$D"
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/gpu_tables.tar.gz" -C "$D" --exclude '*.lock' . && ls -la "$OUT"
fi
exit $status
