"""Loading the bundled model: from its GGUF file (transformers' reader) against the folder
tasktune converted it into once (``tasktune.model.load``), each in a fresh process,
alternating, model and tokenizer both, imports not counted.

Usage:
    python benchmarks/model_load.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = """
import json, sys, time, warnings
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging
from tasktune.model import load_model, load_tokenizer, resolve_model
logging.set_verbosity_error(); warnings.simplefilter("ignore")
source = resolve_model("smollm2-135m")
started = time.perf_counter()
if sys.argv[1] == "gguf":
    AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file, dtype=torch.float32)
    AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
else:
    load_model(source, torch.float32)
    load_tokenizer(source)
print(json.dumps(time.perf_counter() - started))
"""


def _load(way: str) -> float:
    done = subprocess.run([sys.executable, "-c", CHILD, way], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    _load("cached")  # converts once if the cache has no copy yet (not timed)
    times: dict[str, list[float]] = {"gguf": [], "cached": []}
    for r in range(args.rounds):
        for way in ("gguf", "cached") if r % 2 == 0 else ("cached", "gguf"):
            times[way].append(_load(way))
    gguf, cached = statistics.median(times["gguf"]), statistics.median(times["cached"])
    print(f"GGUF file: {gguf:.1f} s (runs {', '.join(f'{t:.1f}' for t in times['gguf'])}); converted folder: "
          f"{cached:.2f} s (runs {', '.join(f'{t:.2f}' for t in times['cached'])}); {gguf / cached:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
