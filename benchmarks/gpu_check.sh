#!/usr/bin/env bash
# Every GPU check of wsgraph in one run, for a machine with one CUDA device (e.g. the
# project's lent H100): tests on CUDA, the layer and INR-fitting benchmarks, a short
# training run and an editing run. Results go under ${OUT:-runs/gpu-check}.
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh   (not yet run on a GPU: this project has had
#   none; sized to fit about 10 minutes of one H100, an estimate, not a measurement)
#
# MNIST must be readable at ${MNIST_ROOT:-data/mnist}: copy the four idx files into that
# git-ignored folder and carry it (only the checkout travels), or set MNIST_ROOT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-check}
MNIST_ROOT=${MNIST_ROOT:-data/mnist}
PY=${PY:-python}
mkdir -p "$OUT"
status=0
step() {
  local name=$1; shift
  echo "== $name: $*" | tee -a "$OUT/steps.log"
  local started=$SECONDS
  if "$@" > "$OUT/$name.log" 2>&1; then result=ok; else result="FAILED ($?)"; status=1; fi
  echo "   $result in $((SECONDS - started)) s" | tee -a "$OUT/steps.log"
}
step environment $PY -c "import torch, torch_geometric; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), torch_geometric.__version__)"
step tests-cuda $PY -m pytest -q -x -p no:cacheprovider tests/datasets/test_dataset.py tests/layers tests/training/test_models.py
step bench-layers $PY benchmarks/bench_layers.py --devices cuda --compile --steps 20 --out "$OUT/layers_gpu.json"
step bench-fit-inrs $PY benchmarks/bench_fit_inrs.py --root "$MNIST_ROOT" --device cuda --full 70000 --out "$OUT/fit_inrs_gpu.json"
step fit-mnist-subset $PY -m wsgraph fit-inrs --source mnist --root "$MNIST_ROOT" --out "$OUT/mnist-inrs" --limit 2000 --dilated --device cuda --no-progress
step train-dwsnet $PY -m wsgraph train --data "$OUT/mnist-inrs" --model dwsnet --out "$OUT/run-dwsnet" --epochs 5 --batch-size 512 --device cuda --amp --no-progress
step train-dilate $PY -m wsgraph train --data "$OUT/mnist-inrs" --model dwsnet --task dilate --out "$OUT/run-dilate" --epochs 2 --batch-size 256 --device cuda --no-progress
exit $status
