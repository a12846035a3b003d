"""Score a run on bare `a+b=` / `a-b=` prompts it has never seen.

Draws N problems with operands up to the run's largest digit count (0..99 for the demo,
0..999 for arith3) from its own seed, removes every problem of the
run's held-out set and every training problem the run drew (the training stream is
reproducible from the run's config), writes them as {"prompt": ...} rows, runs
`tasktune predict` on them and checks by value the `final_answer` that predict wrote (the
last number of each reply: after `####` for worked steps).

Usage:
    python benchmarks/predict_unseen.py runs/arith_lora [-n 500] [--seed 2026]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from itertools import islice
from pathlib import Path

from tasktune.config import load_config
from tasktune.data.arithmetic import canonical, eval_problems, train_problems, training_mix
from tasktune.eval import matches_value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run")
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    run = Path(args.run)
    cfg = load_config(run / "config.yaml")
    metrics = json.loads((run / "metrics.json").read_text())
    a = cfg.data.arithmetic
    held = {p.key for p in eval_problems(a, cfg.eval.max_examples, cfg.eval.seed)}
    mix = training_mix(a)
    seen = {p.key for p in islice(train_problems(mix, cfg.seed, held), metrics["train"]["examples"])}
    known = {f"{canonical(x)}{op}{canonical(y)}=" for x, op, y in held | seen}
    top = 10 ** max(a.digits) - 1
    rng = random.Random(args.seed)
    prompts: dict[str, str] = {}
    while len(prompts) < args.n:
        x, y, op = rng.randint(0, top), rng.randint(0, top), rng.choice("+-")
        prompt = f"{x}{op}{y}="
        if prompt not in known:
            prompts[prompt] = str(x + y if op == "+" else x - y)
    src, dst = run / "unseen_prompts.jsonl", run / "unseen_predictions.jsonl"
    src.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    tasktune = str(Path(sys.executable).with_name("tasktune"))
    subprocess.run([tasktune, "predict", "--run", str(run), "--input", str(src), "--output", str(dst)], check=True)
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    # As in evaluation: an answer the token cap cut off is not credited.
    ok = {r["prompt"]: r["finish_reason"] == "stop" and matches_value(r["final_answer"], prompts[r["prompt"]]) for r in rows}
    right = sum(ok.values())
    by_op = {op: [ok[r["prompt"]] for r in rows if op in r["prompt"][1:]] for op in "+-"}
    print(f"{len(rows)} unseen prompts ({len(known)} excluded as trained on or held out): "
          f"{right / len(rows):.1%} correct by value (operands 0..{top}); " + ", ".join(f"{op} {sum(v) / len(v):.1%} of {len(v)}" for op, v in by_op.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
