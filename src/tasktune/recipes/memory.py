"""`tasktune memory`: the tutorial's memory table (FP16 / INT8 / INT4 x inference /
parameter-efficient tuning) for any model config.

Every cell has an estimate from :mod:`tasktune.model.memory` (GPU overhead). Where the
model can be loaded here, the cells that can run on this machine are also measured: a
fresh process per cell loads the model in 16 bits, resets the kernel's peak-RSS mark,
does the work (greedy generation, or one P-Tuning v2 training step) and reports its peak
resident memory; the same formula with this machine's measured runtime overhead stands
beside it, so the formula is checked on every run.
"""

from __future__ import annotations

import ctypes
import gc
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tasktune.model.memory import CUDA_OVERHEAD_GIB, GIB, count_parameters, estimate_gib

__all__ = ["MemorySettings", "memory_table", "load_model_config"]

ROWS = (("FP16", "fp16"), ("INT8", "int8"), ("INT4", "int4"))


@dataclass(frozen=True)
class MemorySettings:
    """What the table assumes."""

    batch: int = 1
    tokens: int = 512
    """Inference: prompt and answer tokens per sequence."""
    tune_tokens: int = 128
    """Tuning: tokens per training sequence (the tutorial: 64 prompt + 64 answer)."""
    pre_seq_len: int = 128
    """P-Tuning v2 virtual tokens (the tutorial's PRE_SEQ_LEN)."""
    measure: bool = True
    """Measure the cells this machine can run, when the model's weights are local."""


def load_model_config(spec: str):
    """A ``transformers`` config from a model spec (bundled name, folder, .gguf, cached
    hub id) or from a ``config.json`` file, with nothing downloaded.

    Raises:
        FileNotFoundError, ValueError: as :func:`tasktune.model.resolve_model`.
    """
    from transformers import AutoConfig

    path = Path(spec)
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(f"model config not found: {path}")
        raw = {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if not k.startswith("_")}
        if "model_type" not in raw:
            raise ValueError(f"{path}: no model_type (e.g. \"glm\", \"llama\"); it names the architecture")
        return AutoConfig.for_model(**raw), False
    from tasktune.model import pretrained_args, resolve_model

    path, kwargs = pretrained_args(resolve_model(spec), convert=False)  # a config alone converts nothing
    return AutoConfig.from_pretrained(path, **{**kwargs, "local_files_only": True}), True


def _probe(spec: str, weights: str, mode: str, s: MemorySettings) -> dict:
    """Run one measurement in a fresh process; returns its JSON report."""
    job = {"spec": spec, "weights": weights, "mode": mode, "batch": s.batch, "tokens": s.tokens,
           "tune_tokens": s.tune_tokens, "pre_seq_len": s.pre_seq_len}
    out = subprocess.run(
        [sys.executable, "-m", "tasktune.recipes.memory", json.dumps(job)], capture_output=True, text=True, timeout=900
    )
    if out.returncode != 0:
        raise RuntimeError(f"memory probe {weights}/{mode} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _can_measure(weights: str, mode: str) -> bool:
    """What runs on a CPU: 16-bit inference and tuning, int8 inference (torchao)."""
    return weights == "fp16" or (weights == "int8" and mode == "inference")


def memory_table(spec: str, s: MemorySettings = MemorySettings()) -> str:
    """The table as Markdown, with the assumptions and the formula check under it."""
    config, local = load_model_config(spec)
    counts = count_parameters(config)
    measured: dict[tuple[str, str], dict] = {}
    if s.measure and local:
        for _, weights in ROWS:
            for mode in ("inference", "tuning"):
                if _can_measure(weights, mode):
                    measured[weights, mode] = _probe(spec, weights, mode, s)
    lines = [
        f"{spec}: {counts.total / 1e6:.1f}M parameters, {counts.block_linear / 1e6:.1f}M of them in block linear layers "
        f"({counts.layers} layers, hidden {counts.hidden})",
        f"inference: batch {s.batch} x {s.tokens} tokens, greedy; tuning: P-Tuning v2 (pre_seq_len {s.pre_seq_len}), "
        f"batch {s.batch} x {s.tune_tokens} tokens, AdamW",
        "",
        "| quantization | inference | parameter-efficient tuning |",
        "| --- | --- | --- |",
    ]
    for label, weights in ROWS:
        cells = []
        for mode, tokens in (("inference", s.tokens), ("tuning", s.tune_tokens)):
            est = estimate_gib(counts, weights, mode, s.batch, tokens, CUDA_OVERHEAD_GIB, s.pre_seq_len)
            probe = measured.get((weights, mode))
            cells.append(f"{est:.1f} GB est. (GPU); {probe['peak_gib']:.2f} GB measured (CPU)" if probe else f"{est:.1f} GB est. (GPU)")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    if measured:
        lines += ["", "formula check on this CPU (overhead: this process after the same job on a 2-layer, 64-wide model):"]
        for (weights, mode), probe in measured.items():
            tokens = s.tokens if mode == "inference" else s.tune_tokens
            est = estimate_gib(counts, weights, mode, s.batch, tokens, probe["baseline_gib"], s.pre_seq_len)
            lines.append(
                f"  {weights} {mode}: measured {probe['peak_gib']:.3f} GiB, formula {est:.3f} GiB "
                f"({(est - probe['peak_gib']) / probe['peak_gib']:+.0%})"
            )
    lines += ["", "GB here is GiB (2**30 bytes); the formula is in src/tasktune/model/memory.py"]
    return "\n".join(lines)


def _rss(field: str) -> float:
    """VmRSS or VmHWM of this process in GiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / GIB
    raise RuntimeError(f"/proc/self/status has no {field}")


def _release() -> None:
    """Hand freed heap back to the kernel and restart the peak mark from here."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def _work(model, job: dict) -> None:
    """The measured job: greedy generation, or one P-Tuning v2 training step."""
    import torch

    from tasktune.adapters import get_adapter
    from tasktune.config import AdapterConfig, PrefixConfig

    batch, vocab = job["batch"], model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    if job["mode"] == "inference":
        model.eval()
        prompt = torch.randint(0, vocab, (batch, job["tokens"] - 16), generator=gen)
        with torch.inference_mode():
            model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=16,
                           min_new_tokens=16, do_sample=False, pad_token_id=0)
        return
    cfg = AdapterConfig(method="prefix", prefix=PrefixConfig(pre_seq_len=job["pre_seq_len"]))
    model = get_adapter("prefix").apply(model, cfg).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    ids = torch.randint(0, vocab, (batch, job["tune_tokens"]), generator=gen)
    model(input_ids=ids, labels=ids).loss.float().backward()
    optimizer.step()


def _run_probe(job: dict) -> dict:
    """One cell, measured in this (fresh) process.

    The baseline is this process after the same job on a 2-layer, 64-wide model of the
    same architecture: the interpreter, every library the job imports, and the kernels'
    workspaces, with next to no tensors. The peak is the real job's, with the weights
    loaded (their loading transients released first).
    """
    import torch
    from transformers import AutoModelForCausalLM

    from tasktune.model import load_model, resolve_model
    from tasktune.model.quantize import quantize_cpu

    torch.set_num_threads(2)
    config, _ = load_model_config(job["spec"])
    small = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 1, "head_dim": 32}
    tiny = AutoModelForCausalLM.from_config(type(config)(**{**config.to_dict(), **small})).to(torch.float16)
    _work(quantize_cpu(tiny, "int8") if job["weights"] == "int8" else tiny, job)
    del tiny
    _release()
    baseline = _rss("VmRSS")
    model = load_model(resolve_model(job["spec"]), torch.float16)
    if job["weights"] == "int8":
        model = quantize_cpu(model, "int8")
    _release()
    _work(model, job)
    return {"peak_gib": _rss("VmHWM"), "baseline_gib": baseline}


if __name__ == "__main__":
    print(json.dumps(_run_probe(json.loads(sys.argv[1]))))
