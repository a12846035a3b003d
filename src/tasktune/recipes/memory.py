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

__all__ = ["MemorySettings", "memory_table", "load_model_config", "gguf_table"]

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


def gguf_table(export_dir: str | Path, streams: int = 32, new_tokens: int = 64) -> str:
    """The tutorial's FP16/INT8/INT4 table measured on a CPU for an exported run: each GGUF
    file of ``export_dir`` in llama.cpp beside the run in tasktune (float32, torch). Each
    row is measured in a fresh process: the peak resident memory of loading the weights
    and answering, and tokens per second answering one prompt and ``streams`` prompts
    together (the run's first held-out prompts, ``new_tokens`` new tokens each, prompt
    processing included).

    Raises:
        FileNotFoundError: no ``export.json`` in ``export_dir`` (not a GGUF export).
    """
    folder = Path(export_dir)
    if not (folder / "export.json").is_file():
        raise FileNotFoundError(f"{folder / 'export.json'} not found: give a folder written by "
                                "`tasktune export --format gguf`")
    export = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    run = export["run"]
    job = {"run": run, "texts": _prompt_texts(run, streams), "new_tokens": new_tokens}
    lines = [f"{run}: greedy, {new_tokens} new tokens a prompt, 1 prompt and {streams} together (prompt processing "
             "included); resident: peak of a fresh process that loads the weights and answers (added: over the same "
             "process before loading)", "",
             "| weights | runtime | file MiB | resident MiB (added) | tokens/s, 1 stream | tokens/s, batched | exact match |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    own = _speed_probe_in_process({**job, "file": None})
    checked = [row["check"] for row in export["kinds"] if "run_exact_match" in row.get("check", {})]
    metrics = Path(run) / "metrics.json"
    if checked:  # the run's own answers to the problems the files were checked on
        figure = checked[0]["run_exact_match"]
    else:
        figure = json.loads(metrics.read_text())["final"]["exact_match"] if metrics.is_file() else None
    weights = sum(f.stat().st_size for f in (Path(run) / "adapter").glob("*.safetensors"))
    lines.append(_row("float32 base + adapter", "tasktune (torch)", {**own, "mib": _base_mib(run) + weights / 2**20},
                      figure))
    for row in export["kinds"]:
        probe = _speed_probe_in_process({**job, "file": str(folder / row["file"])})
        check = row.get("check", {})
        lines.append(_row(row["kind"], "llama.cpp", {**probe, "mib": row["mib"]}, check.get("exact_match")))
    lines += ["", "exact match: the run's own figure, and each file's through llama.cpp on the same held-out problems "
              "(export.json)"]
    return "\n".join(lines)


def _base_mib(run: str) -> float:
    """The run's base model in float32, as tasktune holds it."""
    from tasktune.recipes.common import run_config

    config, _ = load_model_config(run_config(run).model)
    return count_parameters(config).total * 4 / 2**20


def _row(label: str, runtime: str, probe: dict, exact: float | None) -> str:
    em = f"{exact:.1%}" if exact is not None else "-"
    return (f"| {label} | {runtime} | {probe['mib']:.1f} | {probe['peak_gib'] * 1024:.0f} "
            f"({probe['added_gib'] * 1024:.0f}) | {probe['one']:.1f} | {probe['batched']:.1f} | {em} |")


def _speed_probe_in_process(job: dict) -> dict:
    out = subprocess.run([sys.executable, "-m", "tasktune.recipes.memory", json.dumps({"speed": job})],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"speed probe {job.get('file') or job['run']} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _prompt_texts(run: str, streams: int) -> list[str]:
    """The run's first held-out prompts, rendered as the run renders them (and as its
    exported files' templates do: the export checks it)."""
    from tasktune.data import build_datasets
    from tasktune.encoding import ChatEncoder
    from tasktune.model import load_tokenizer, resolve_model
    from tasktune.recipes.common import run_config

    cfg = run_config(run)
    examples = build_datasets(cfg.data, streams, cfg.eval.seed, cfg.seed).eval[:streams]
    encoder = ChatEncoder(load_tokenizer(resolve_model(cfg.model)), cfg.encoding.template, cfg.encoding.system_prompt)
    return [encoder.render_prompt(e) for e in examples]


def _speed_probe(job: dict) -> dict:
    """Tokens/s of one prompt and of all ``texts`` together, and the resident memory, for a
    GGUF file in llama.cpp or (``file`` None) the run in tasktune. No stop token ends a row
    early (stop id -1), so every row makes exactly ``new_tokens`` tokens. ``added_gib``: the
    peak over this process before the weights loaded (the interpreter and libraries)."""
    import time

    import torch

    from tasktune.checkpoint.gguf import cores
    from tasktune.generate import GgufModel, generate_completions
    from tasktune.recipes.common import load_run

    torch.set_num_threads(cores())
    n, texts = job["new_tokens"], job["texts"]
    before = _rss("VmRSS")
    if job["file"]:
        model = GgufModel(job["file"])
        prompts = [model.tokenize(t) for t in texts]
        answer = lambda rows: model.greedy(rows, -1, [n] * len(rows), len(rows))  # noqa: E731
    else:
        loaded = load_run(job["run"])
        prompts = [loaded.tokenizer(t, add_special_tokens=False).input_ids for t in texts]
        answer = lambda rows: generate_completions(loaded.model, loaded.tokenizer, rows, -1, n, len(rows))  # noqa: E731
    answer(prompts[:1])  # warm-up: first-call allocations and kernel choices
    figures = {}
    for name, rows in (("one", prompts[:1]), ("batched", prompts)):
        start = time.perf_counter()
        answer(rows)
        figures[name] = n * len(rows) / (time.perf_counter() - start)
    peak = _rss("VmHWM")
    return {**figures, "peak_gib": peak, "added_gib": peak - before}


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    print(json.dumps(_speed_probe(request["speed"]) if "speed" in request else _run_probe(request)))
