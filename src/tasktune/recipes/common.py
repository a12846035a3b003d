"""Pieces every recipe wires the same way: load a base or a run, evaluate examples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from tasktune.checkpoint import load_adapter
from tasktune.config import RunConfig, load_config
from tasktune.data.arithmetic import learned_answer, restore_answer
from tasktune.data.example import Example
from tasktune.encoding import ChatEncoder
from tasktune.eval import is_correct, step_figures, summarize, summarize_steps, text_scores
from tasktune.generate import GgufModel, generate_completions
from tasktune.model import check_quantization, load_model, load_tokenizer, pick_dtype, resolve_model

__all__ = [
    "Loaded",
    "load_base",
    "run_config",
    "refuse_remote_code",
    "load_run",
    "load_gguf",
    "max_new_tokens_for",
    "answer_budget",
    "presented",
    "as_learned",
    "shown_differently",
    "evaluate_examples",
    "headline_metric",
    "metric_text",
]


@dataclass
class Loaded:
    """A model ready to generate, with the tokenizer and encoder that go with it."""

    cfg: RunConfig
    model: torch.nn.Module | GgufModel
    tokenizer: object
    encoder: ChatEncoder


def load_base(
    cfg: RunConfig, device: torch.device | None = None, training: bool = False, trains_base: bool = False
) -> Loaded:
    """Load the configured base model, tokenizer and chat encoder.

    Args:
        cfg: The run's configuration.
        device: Where the model runs (default: CPU).
        training: The base will be trained through; with ``trains_base``, whether the
            method updates its own weights. Both decide which quantization can work.

    Raises:
        ValueError: ``cfg.quantization`` cannot work so (raised before anything loads).
    """
    device = device or torch.device("cpu")
    check_quantization(cfg.quantization, device, training, trains_base)
    source = resolve_model(cfg.model)
    tokenizer = load_tokenizer(source, cfg.trust_remote_code)
    encoder = ChatEncoder(tokenizer, cfg.encoding.template, cfg.encoding.system_prompt)
    model = load_model(source, pick_dtype(cfg.dtype, device), cfg.trust_remote_code, cfg.quantization, device)
    model.eval()
    return Loaded(cfg, model, tokenizer, encoder)


def run_config(run_dir: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """A finished run's resolved config (config.yaml), with ``overrides`` applied.

    Raises:
        FileNotFoundError: ``run_dir`` is not a run folder.
    """
    d = Path(run_dir)
    if not (d / "config.yaml").is_file():
        raise FileNotFoundError(f"{d}: not a tasktune run folder (config.yaml missing); train one with `tasktune train CONFIG`")
    return load_config(d / "config.yaml", overrides)


def refuse_remote_code(run_dirs: list[str | Path], overrides: list[str] | None, allowed: bool) -> None:
    """Refuse run folders whose config turns ``trust_remote_code`` on, unless ``allowed``
    (the command line's ``--trust-remote-code``): a run folder may come from anyone, and
    that setting runs the Python files shipped with its model.

    Raises:
        ValueError: a run sets it and ``allowed`` is False; names the run and the flag.
    """
    if allowed:
        return
    for d in run_dirs:
        if run_config(d, overrides).trust_remote_code:
            raise ValueError(f"{Path(d) / 'config.yaml'}: trust_remote_code is true, which runs Python code shipped with "
                             "its model; pass --trust-remote-code if you trust where this run folder came from")


def load_run(run_dir: str | Path, overrides: list[str] | None = None) -> Loaded:
    """Load a finished run: its resolved config, base model and trained adapter.

    Raises:
        FileNotFoundError: ``run_dir`` is not a run folder.
    """
    cfg = run_config(run_dir, overrides)
    loaded = load_base(cfg)
    loaded.model = load_adapter(loaded.model, cfg.adapter.method, Path(run_dir) / "adapter")
    return loaded


def load_gguf(path: str | Path, overrides: list[str] | None = None) -> Loaded:
    """An exported GGUF file in llama.cpp, with the run config it carries (``tasktune.config``)
    and the file's own tokenizer and chat template: its answers are the ones llama.cpp's
    users get. Answers are greedy (``generate.do_sample`` is turned off).

    Raises:
        FileNotFoundError: no such file.
        ValueError: no llama.cpp binding, or a GGUF file tasktune did not export (no run config).
    """
    import tempfile

    from transformers import AutoTokenizer

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"GGUF file not found: {file}")
    model = GgufModel(file)
    try:
        text = model.metadata("tasktune.config")
        if not text:
            raise ValueError(f"{file}: carries no tasktune run config (tasktune.config); evaluate a file written by "
                             "`tasktune export --format gguf`")
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "config.yaml").write_text(text, encoding="utf-8")
            cfg = load_config(Path(tmp) / "config.yaml", [*(overrides or []), "generate.do_sample=false"])
        tokenizer = AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
        # The file's template already holds the run's system prompt as its default system turn.
        return Loaded(cfg, model, tokenizer, ChatEncoder(tokenizer, None, None))
    except BaseException:
        model.close()
        raise


def max_new_tokens_for(cfg: RunConfig, tokenizer, examples: list[Example]) -> int:
    """``generate.max_new_tokens``, or from the task: longest reference + 8, at most 512
    (256 when there are no references to measure). A run's config.yaml records it."""
    if cfg.generate.max_new_tokens:
        return cfg.generate.max_new_tokens
    return answer_budget(tokenizer, examples)


def answer_budget(tokenizer, examples: list[Example]) -> int:
    """Tokens the longest reference answer of ``examples`` takes, + 8, at most 512 (256
    when there are no references to measure)."""
    if not examples:
        return 256
    longest = max((len(tokenizer(e.response, add_special_tokens=False).input_ids) for e in examples), default=0)
    return min(512, longest + 8)


def presented(cfg: RunConfig, text: str) -> str:
    """A model answer as a person should see it (e.g. reversed digits put back)."""
    return restore_answer(text, cfg.data.arithmetic) if cfg.data.task == "arithmetic" else text


def as_learned(cfg: RunConfig, text: str) -> str:
    """An answer as a person saw it, back in the form the model wrote it (the inverse of
    :func:`presented`): earlier turns a chat client sends back are rendered as trained."""
    return learned_answer(text, cfg.data.arithmetic) if cfg.data.task == "arithmetic" else text


def shown_differently(cfg: RunConfig) -> bool:
    """True when the run's answers are learned in a form a person should not see
    (reversed digits, digit-spaced): they are restored whole, not streamed token by
    token (chat, the server)."""
    return cfg.data.task == "arithmetic" and cfg.data.arithmetic.answer_format in ("reversed", "spaced")


def evaluate_examples(
    loaded: Loaded, examples: list[Example], desc: str, max_new_tokens: int | None = None
) -> tuple[dict, list[dict]]:
    """The model's answers to ``examples`` (greedy unless ``generate.do_sample``), their
    exact match, and ROUGE-1/2/L and BLEU-4 against the full reference response.

    Returns:
        The summary (:func:`tasktune.eval.summarize`, plus ``cut_at_cap``: answers the
        ``max_new_tokens`` cap cut off) and one prediction row per example: prompt,
        rendered input, raw model output, prediction (as presented), reference (the
        value checked, or the response), correct (never for a by-value answer that was
        cut off), finish_reason (``stop`` or ``length``), category, and the example's
        rouge-1, rouge-2, rouge-l and bleu-4. Where the reference is a worked answer,
        every written step is checked too (:func:`tasktune.eval.step_figures`): each row
        gets ``reference_steps``, ``steps``, ``steps_right`` and ``first_wrong``, and the
        summary ``step_accuracy``, ``steps_written``, ``all_steps_right`` and
        ``first_wrong`` (``{kind: {step: count}}``). ``max_new_tokens`` overrides the
        run's cap (the robustness suites' longer problems need longer answers).
    """
    enc = loaded.encoder
    prompts = [enc.prompt_ids(e) for e in examples]
    budget = max_new_tokens or max_new_tokens_for(loaded.cfg, loaded.tokenizer, examples)
    outputs = generate_completions(
        loaded.model, loaded.tokenizer, prompts, enc.stop_id, budget, loaded.cfg.eval.batch_size, desc=desc,
        sampling=loaded.cfg.generate,
    )
    rows, scores, steps = [], [], []
    for e, done in zip(examples, outputs):
        reference = e.answer if e.answer is not None else e.response
        out = presented(loaded.cfg, done.text)
        scores.append(text_scores(out, e.response))
        numeric = e.answer is not None
        # An answer the token cap cut off never ended: whatever number happens to come
        # last in it (a loop of `2 - 3 =` ending on 3) is not credited.
        correct = is_correct(out, reference, numeric=numeric) and not (numeric and done.finish_reason == "length")
        steps.append(step_figures(done.text, e.response, correct))
        rows.append(
            {
                "prompt": e.prompt,
                **({"earlier_turns": len(e.history)} if e.history else {}),
                **({"system": e.system} if e.system is not None else {}),
                "input": enc.render_prompt(e),
                "raw_output": done.text,
                "prediction": out,
                "reference": reference,
                "correct": correct,
                "finish_reason": done.finish_reason,
                "category": e.category,
                **scores[-1],
                **({"reference_steps": e.response, **steps[-1]} if steps[-1] is not None else {}),
            }
        )
    summary = summarize([r["correct"] for r in rows], [r["category"] for r in rows], scores)
    summary["cut_at_cap"] = sum(r["finish_reason"] == "length" for r in rows)
    checked = summarize_steps(steps)
    if checked is not None:
        summary.update(checked)
    return summary, rows


def headline_metric(cfg: RunConfig, examples: list[Example]) -> str:
    """``eval.metric``, with ``auto`` resolved: exact_match when at least half of the
    held-out answers are checked by value, else rouge-l."""
    if cfg.eval.metric != "auto":
        return cfg.eval.metric
    numeric = sum(e.answer is not None for e in examples)
    return "exact_match" if examples and 2 * numeric >= len(examples) else "rouge-l"


def metric_text(name: str, value: float | None) -> str:
    """A figure as people read it: exact match in percent, ROUGE/BLEU (x 100) as is."""
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if name == "exact_match" else f"{value:.2f}"
