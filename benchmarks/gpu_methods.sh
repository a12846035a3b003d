#!/usr/bin/env bash
# One short run of every method, and of LoRA on int8 and int4 (NF4) bases, on a CUDA GPU.
# Needs a CUDA build of torch and bitsandbytes in the environment (pip install -e '.[cuda]').
# Usage: benchmarks/gpu_methods.sh [OUT_DIR]   (default: runs/gpu_check); prints one line per run.
set -euo pipefail
OUT=${1:-runs/gpu_check}
TASKTUNE=${TASKTUNE:-$(command -v tasktune || echo .venv/bin/tasktune)}
python=$(dirname "$TASKTUNE")/python
"$python" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device: this script checks the GPU paths"
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
PY
short=(train.max_steps=40 train.max_minutes=null train.warmup_steps=5 eval.max_examples=100 dtype=bfloat16)
run() {  # name, config, overrides...
  local name=$1 config=$2; shift 2
  local start=$SECONDS
  if "$TASKTUNE" train "$config" "output_dir=$OUT/$name" "${short[@]}" "$@" > "$OUT/$name.log" 2>&1; then
    "$python" - "$OUT/$name" "$name" $((SECONDS - start)) <<'PY'
import json, sys
m = json.load(open(sys.argv[1] + "/metrics.json"))
t = m["train"]
print(f"{sys.argv[2]:>10}: base {m['base']['exact_match']:.1%} -> tuned {m['final']['exact_match']:.1%}, "
      f"{t['steps']} steps, {t['examples_per_second']:.1f} ex/s, trainable {t['trainable_parameters']:,}, {sys.argv[3]} s")
PY
  else
    echo "$name: FAILED, see $OUT/$name.log"; tail -5 "$OUT/$name.log"
  fi
}
mkdir -p "$OUT"
for method in lora prefix freeze full; do run "$method" "configs/arith_$method.yaml"; done
run lora_int8 configs/arith_lora.yaml quantization=int8
run lora_int4 configs/arith_lora.yaml quantization=int4
"$TASKTUNE" memory --model smollm2-135m --no-measure | sed -n '4,8p'
