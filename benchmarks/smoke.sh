#!/usr/bin/env bash
# Every measurement script, run once with the smallest settings that exercise it: proof
# that each still runs after a change, not a measurement (the figures are meaningless).
# Usage: benchmarks/smoke.sh [RUN]   (RUN: a run folder; default: a 4-step demo run is trained)
# GPU-only scripts (gpu_check.py, gpu_methods.sh) only say there is no GPU on a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export TQDM_DISABLE=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run=${1:-}
if [ -z "$run" ]; then
  run="$work/run"
  "$PY" -m tasktune train configs/arith_lora.yaml "output_dir=$run" train.max_steps=4 train.max_minutes=null \
    eval.max_examples=16 eval.every=0 eval.base=false > "$work/train.log" 2>&1
fi
step() {  # name, command...
  local name=$1; shift
  local start=$SECONDS
  if "$@" > "$work/$name.log" 2>&1; then
    # the last line that is neither a progress bar nor a lone bracket of JSON
    echo "ok   $name ($((SECONDS - start)) s): $(tr '\r' '\n' < "$work/$name.log" | grep -av '%|' | grep -aE '.{4}' | tail -1 | cut -c1-140)"
  else
    echo "FAIL $name: $*"; tail -20 "$work/$name.log"; exit 1
  fi
}
step compare "$PY" benchmarks/compare.py --steps 1 --warmup 1 --rounds 1 --target-steps 2 --target-every 2 --target-rounds 1
git checkout -q benchmarks/results/latest.json 2>/dev/null || true  # a smoke run is not a result
step throughput "$PY" benchmarks/throughput.py --steps 1 --rounds 2 --warmup 1 "" "train.packing=true"
step profile_step "$PY" benchmarks/profile_step.py --steps 1 --warmup 1
step engine_levers "$PY" benchmarks/engine_levers.py fused --rows 64 --rounds 1
step tune_arith "$PY" benchmarks/tune_arith.py 2 train.max_steps=2 train.max_minutes=null eval.max_examples=16
step predict_unseen "$PY" benchmarks/predict_unseen.py "$run" -n 16
step generation "$PY" benchmarks/generation.py --run "$run" --rounds 1 --limit 16 --batch 16
step serve_load "$PY" benchmarks/serve_load.py "$run" --clients 4 --requests 12 --max-queue 4 --burst 8 --bursts 1 --settle 1
step model_load "$PY" benchmarks/model_load.py --rounds 1
if "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  step gpu_check "$PY" benchmarks/gpu_check.py --steps 4
  step gpu_methods bash benchmarks/gpu_methods.sh "$work/gpu"
else
  echo "skip gpu_check.py, gpu_methods.sh: no CUDA GPU here"
fi
