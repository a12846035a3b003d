"""`tasktune export --run DIR --format gguf --quant f16 q8_0 ...`: the tuned model where CPU
users run models (llama.cpp, Ollama, LM Studio), with what each quantization costs measured.

The run's method is folded into the base weights (as for the Hugging Face export; a prefix
run cannot be) and written once per kind (:mod:`tasktune.checkpoint.gguf`). For each file:

* the share of the tuning change it keeps, from its own de-quantized tensors (a grid that
  snaps weights back to the base's undoes the tuning: the bundled base was de-quantized
  from Q4_1, so a Q4_1 export keeps about a third of a LoRA's change);
* where llama.cpp is installed, the run's held-out problems answered through it (greedy,
  each prompt rendered by the file's own template with the file's tokenizer, and counted
  against llama.cpp's own tokenization of the same text), scored by the task's verifier
  beside the run's own answers to the same problems;
* an Ollama ``Modelfile`` beside it.

A kind that loses more than :data:`WARN_POINTS` points of exact match warns, with the
share kept and, where the base came from a GGUF file of that kind, that cause.
``export.json`` holds every figure.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

from tasktune.checkpoint.gguf import GgufMeta, check_architecture, check_kind, gguf_tensors, write_gguf
from tasktune.checkpoint.gguf_read import dominant_type, read_tensors, tuning_kept, type_counts
from tasktune.data import build_datasets
from tasktune.encoding.templates import go_template
from tasktune.generate import llama_cpp_available
from tasktune.model import resolve_model
from tasktune.recipes.common import evaluate_examples, load_base, load_gguf, max_new_tokens_for
from tasktune.recipes.export import exported_template, fresh_folder, merged_run
from tasktune.report import read_log

__all__ = ["export_gguf", "WARN_POINTS", "modelfile"]

WARN_POINTS = 5.0
"""Exact-match points an export kind may lose against the run before it warns."""


def _source_gguf(model_spec: str) -> Path | None:
    source = resolve_model(model_spec)
    return Path(source.path) / source.gguf_file if source.gguf_file else None


def _pre_tokenizer(path: Path | None) -> str | None:
    """A GGUF base's own pre-tokenizer name (None for a Hugging Face base)."""
    if path is None:
        return None
    import gguf

    field = gguf.GGUFReader(str(path)).fields.get("tokenizer.ggml.pre")
    return field.contents() if field is not None else None


def modelfile(gguf_name: str, render, stop_text: str, system_prompt: str | None) -> str:
    """An Ollama ``Modelfile`` for the file: ``ollama create NAME -f FILE.Modelfile``."""
    lines = [f"# ollama create NAME -f {gguf_name.removesuffix('.gguf')}.Modelfile", f"FROM ./{gguf_name}"]
    template = go_template(render)
    if template is not None:
        lines.append(f'TEMPLATE """{template}"""')
    else:
        lines.append("# no TEMPLATE: Ollama reads the chat template stored in the GGUF file")
    if system_prompt is not None:
        lines.append(f'SYSTEM """{system_prompt}"""')
    lines += [f'PARAMETER stop "{stop_text}"', "PARAMETER temperature 0", "PARAMETER top_k 1"]
    return "\n".join(lines) + "\n"


def _own_answers(run_dir: Path, examples) -> list[dict] | None:
    """The run's own final answers to ``examples`` (its first held-out problems), from the
    training's predictions.jsonl; None when that file does not hold them in this order."""
    rows = read_log(run_dir / "predictions.jsonl")
    if not rows or len(rows) < len(examples) or any(r["prompt"] != e.prompt for r, e in zip(rows, examples)):
        return None
    return rows[: len(examples)]


def _check(path: Path, examples, own: list[dict] | None, budget: int) -> dict:
    """The held-out problems answered through llama.cpp from ``path`` (at most ``budget``
    new tokens each, the run's own cap), beside the run's own answers."""
    loaded = load_gguf(path)
    try:
        prompts = [loaded.encoder.render_prompt(e) for e in examples]
        same_ids = sum(loaded.model.tokenize(p) == loaded.encoder.prompt_ids(e) for p, e in zip(prompts, examples))
        summary, rows = evaluate_examples(loaded, examples, f"llama.cpp {path.name}", max_new_tokens=budget)
    finally:
        loaded.model.close()
    if same_ids < len(examples):
        print(f"warning: {path.name}: llama.cpp tokenizes {len(examples) - same_ids} of {len(examples)} rendered prompts "
              "differently from the file's tokenizer as transformers reads it; servers built on llama.cpp see "
              "llama.cpp's", file=sys.stderr)
    out = {"exact_match": summary["exact_match"], "n": summary["n"], "prompt_tokens_as_llama_cpp": same_ids}
    if own is not None:
        out["run_exact_match"] = sum(r["correct"] for r in own) / len(own)
        out["identical_answers"] = sum(a["raw_output"] == b["raw_output"] for a, b in zip(rows, own))
        out["lost_points"] = round(100 * (out["run_exact_match"] - out["exact_match"]), 2)
    return out


def _warning(kind: str, row: dict, base_type: str | None) -> str | None:
    """Why a kind loses more than WARN_POINTS (None when it does not)."""
    check = row.get("check", {})
    kept = (f"the file keeps {row['tuning_kept']:.0%} of the tuning change and its rounding moves the tuned weights "
            f"{row['rounding_vs_change']:.1f}x as far as the tuning did")
    if base_type is not None and base_type.lower() == kind:
        kept += (f": the base was de-quantized from a {base_type} GGUF file, so its weights lie on the {base_type} grid "
                 "and the tuned ones snap back to it")
    if check.get("lost_points", 0) > WARN_POINTS:
        return (f"{kind}: exact match {check['exact_match']:.1%} through llama.cpp against the run's "
                f"{check['run_exact_match']:.1%} ({check['lost_points']:.1f} points lost); {kept}")
    if "lost_points" not in check and row["tuning_kept"] < 0.8:
        return f"{kind}: {kept}; its answers may differ from the run's: measure with `tasktune eval --gguf`"
    return None


def export_gguf(run_dir: str | Path, out_dir: str | Path, kinds: list[str], check: bool = True,
                check_examples: int | None = None) -> list[dict]:
    """Write one GGUF file per kind, with its figures, and warn where a kind loses the tuning.

    Args:
        run_dir: The run folder.
        out_dir: A new folder for the files, their Modelfiles and ``export.json``.
        kinds: GGUF kinds (:data:`tasktune.checkpoint.gguf.GGUF_KINDS`).
        check: Answer the held-out problems through llama.cpp (where it is installed).
        check_examples: Only the first this many held-out problems (None: all).

    Returns:
        One row of figures per kind, as in ``export.json``.

    Raises:
        FileNotFoundError: not a run folder.
        ValueError: an unknown kind, a prefix run, an unsupported architecture or
            tokenizer, a K-quant without llama.cpp, or a non-empty ``out_dir``.
    """
    for kind in dict.fromkeys(kinds):
        check_kind(kind)
    run_dir = Path(run_dir)
    out = fresh_folder(out_dir)
    loaded, model = merged_run(run_dir)
    cfg, tokenizer = loaded.cfg, loaded.tokenizer
    check_architecture(model.config.model_type)
    source = _source_gguf(cfg.model)
    template = exported_template(cfg, tokenizer)
    meta = GgufMeta(run_dir.name, template, loaded.encoder.stop_id,
                    (run_dir / "config.yaml").read_text(encoding="utf-8"), _pre_tokenizer(source))
    tuned = gguf_tensors(model)
    base = gguf_tensors(load_base(cfg).model)
    gc.collect()
    checking = check and llama_cpp_available()
    if check and not checking:
        print("note: llama-cpp-python is not installed, so the files are not checked through llama.cpp; "
              "install it with: pip install 'tasktune[gguf]'", file=sys.stderr)
    examples = own = budget = None
    if checking:
        data = build_datasets(cfg.data, cfg.eval.max_examples, cfg.eval.seed, cfg.seed)
        examples = data.eval[: check_examples or len(data.eval)]
        own = _own_answers(run_dir, examples)
        budget = max_new_tokens_for(cfg, tokenizer, data.eval)  # the run's cap, from all its held-out answers
    base_type = dominant_type(source) if source is not None else None
    render = (lambda msgs, gen: tokenizer.apply_chat_template(msgs, chat_template=template, tokenize=False,
                                                             add_generation_prompt=gen))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for kind in dict.fromkeys(kinds):
        path = out / f"{run_dir.name}-{kind}.gguf"
        write_gguf(model, tokenizer, meta, path, kind, tuned)
        kept, moved = tuning_kept(base, tuned, read_tensors(path)) if kind != "f32" else (1.0, 0.0)
        row = {"kind": kind, "file": path.name, "mib": round(path.stat().st_size / 2**20, 1),
               "tuning_kept": round(kept, 4), "rounding_vs_change": round(moved, 3), "types": type_counts(path)}
        if checking:
            row["check"] = _check(path, examples, own, budget)
        warning = _warning(kind, row, base_type)
        if warning:
            row["warning"] = warning
            print(f"warning: {warning}", file=sys.stderr)
        (out / f"{path.stem}.Modelfile").write_text(
            modelfile(path.name, render, loaded.encoder.stop_text, cfg.encoding.system_prompt), encoding="utf-8")
        rows.append(row)
        print(_line(row))
    (out / "export.json").write_text(json.dumps({"run": str(run_dir), "kinds": rows}, indent=2) + "\n", encoding="utf-8")
    return rows


def _line(row: dict) -> str:
    text = (f"{row['file']}: {row['mib']} MiB, keeps {row['tuning_kept']:.1%} of the tuning change (rounding "
            f"{row['rounding_vs_change']:.2f}x the change)")
    check = row.get("check")
    if check:
        text += f"; llama.cpp exact match {check['exact_match']:.1%} on {check['n']} held-out problems"
        if "run_exact_match" in check:
            text += (f" (the run's own {check['run_exact_match']:.1%}; {check['identical_answers']}/{check['n']} "
                     "answers identical)")
    return text
