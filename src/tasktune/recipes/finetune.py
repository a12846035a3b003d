"""`tasktune train CONFIG`: evaluate the base, fine-tune, evaluate again, write the run."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from tasktune.adapters import get_adapter
from tasktune.checkpoint import save_adapter
from tasktune.config import RunConfig, config_to_dict
from tasktune.data import build_datasets
from tasktune.recipes.common import Loaded, evaluate_examples, headline_metric, load_base, max_new_tokens_for, metric_text
from tasktune.report import read_log, write_json, write_jsonl, write_report
from tasktune.train import EncodeCounts, StepInfo, make_accelerator, train_steps

__all__ = ["finetune", "run_summary", "merge_categories", "decoding"]


def run_summary(cfg: RunConfig) -> dict[str, str]:
    """The settings a reader of report.md needs first."""
    t = cfg.train
    return {
        "model": cfg.model,
        "method": cfg.adapter.method,
        "task": cfg.data.task if cfg.data.task != "file" else f"file {cfg.data.file.path}",
        "system prompt": repr(cfg.encoding.system_prompt),
        "steps x batch": f"{t.max_steps} x {t.batch_size}",
        "lr": f"{t.lr:g} ({t.schedule}, warm-up {t.warmup_steps})",
        "decoding": decoding(cfg),
    }


def decoding(cfg: RunConfig) -> str:
    """How evaluation answers were generated, for the report."""
    g = cfg.generate
    how = f"sampling (temperature {g.temperature}, top_p {g.top_p}, seed {g.seed})" if g.do_sample else "greedy"
    return f"{how}, at most {g.max_new_tokens} new tokens" if g.max_new_tokens else how


def merge_categories(base: dict | None, final: dict) -> dict:
    """Pop per-category figures out of the summaries into ``{cat: {base, final, n}}``."""
    before = base.pop("by_category") if base else {}
    return {
        cat: {"base": before.get(cat, {}).get("exact_match"), "final": row["exact_match"], "n": row["n"]}
        for cat, row in final.pop("by_category").items()
    }


def _log_row(info: StepInfo) -> dict:
    """One train_log.jsonl line."""
    return {
        "step": info.step,
        "loss": round(info.loss, 6),
        "lr": info.lr,
        "grad_norm": round(info.grad_norm, 6),
        "examples": info.examples,
        "seconds": round(info.seconds, 3),
        "examples_per_second": round(info.examples / info.seconds, 3),
    }


def _train_figures(last: StepInfo) -> dict:
    """metrics.json's ``train`` block, from the last step's running totals."""
    return {
        "steps": last.step,
        "seconds": round(last.seconds, 2),
        "examples": last.examples,
        "examples_per_second": round(last.examples / last.seconds, 3),
        "tokens_per_second": round(last.tokens / last.seconds, 1),
        "supervised_tokens": last.supervised_tokens,
        "final_loss": round(last.loss, 6),
    }


def _footprint(model, saved: Path) -> dict:
    """Trainable and total parameters, the saved adapter's size, and this process's peak
    resident memory so far (the whole run: load, evaluation, training)."""
    import resource
    import sys

    params = {id(p): p for p in model.parameters()}.values()  # tied tensors once
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return {
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        "total_parameters": sum(p.numel() for p in params),
        "adapter_mib": round(sum(f.stat().st_size for f in saved.iterdir()) / 2**20, 2),
        "peak_rss_mib": round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1),
    }


@dataclass
class TrainResult:
    """What the training loop leaves: the last step, the in-training evaluations, and
    whether train.stop_at ended it."""

    last: StepInfo
    metric: str
    evals: list[dict] = field(default_factory=list)
    stopped_at_target: bool = False

    @property
    def best(self) -> dict | None:
        """The first evaluation with the highest ``metric`` (saved as checkpoint-best/)."""
        return max(self.evals, key=lambda e: e[self.metric]) if self.evals else None


def _evaluate_during(
    cfg: RunConfig, loaded: Loaded, model, examples, info: StepInfo, metric: str, evals: list[dict], log, out: Path
) -> bool:
    """Evaluate the model as it is at ``info``'s step: append the row to ``evals`` and
    train_log.jsonl, save checkpoint-best/ when its ``metric`` beats every earlier one.

    Returns:
        True when ``train.stop_at`` is reached.
    """
    summary, _ = evaluate_examples(replace(loaded, model=model), examples, f"eval step {info.step}")
    summary.pop("by_category")
    row = {"step": info.step, "examples": info.examples, "seconds": round(info.seconds, 1), **summary}
    if all(row[metric] > e[metric] for e in evals):
        save_adapter(model, cfg.adapter.method, out / "checkpoint-best")
    evals.append(row)
    log.write(json.dumps({"step": info.step, **{f"eval_{k}": v for k, v in summary.items()}}) + "\n")
    log.flush()
    tqdm.write(f"step {info.step}: {metric} {metric_text(metric, row[metric])} on {row['n']} held-out")
    return cfg.train.stop_at is not None and row[metric] >= cfg.train.stop_at


def _train(
    cfg: RunConfig, model, accelerator, loaded: Loaded, data, counts: EncodeCounts, out: Path, metric: str
) -> TrainResult:
    """Run the training loop; log every ``train.log_every`` steps (and the last) to
    train_log.jsonl, save a checkpoint every ``train.save_every`` steps, and evaluate
    every ``eval.every`` steps, keeping the best as checkpoint-best/ and stopping once
    ``train.stop_at`` is reached."""
    main = accelerator.is_main_process
    groups = get_adapter(cfg.adapter.method).param_groups(model, cfg.adapter)
    held_out = data.eval[: cfg.eval.every_examples] if cfg.eval.every_examples else data.eval
    evals: list[dict] = []
    with (out / "train_log.jsonl").open("w", encoding="utf-8") as log:
        steps = train_steps(model, accelerator, loaded.encoder, data.train, cfg.train, cfg.encoding, counts, groups)
        last = None
        stopped = False
        for info in steps:
            last = info
            if main and info.step % cfg.train.log_every == 0:
                log.write(json.dumps(_log_row(info)) + "\n")
                log.flush()
            if main and cfg.train.save_every and info.step % cfg.train.save_every == 0 and info.step < cfg.train.max_steps:
                save_adapter(model, cfg.adapter.method, out / f"checkpoint-{info.step}")
            if cfg.eval.every and info.step % cfg.eval.every == 0 and info.step < cfg.train.max_steps:
                if main and _evaluate_during(cfg, loaded, model, held_out, info, metric, evals, log, out):
                    accelerator.set_trigger()
                if accelerator.check_trigger():  # every process stops at the same step
                    stopped = True
                    steps.close()
                    break
        assert last is not None  # max_steps >= 1 is validated
        if main and last.step % cfg.train.log_every:
            log.write(json.dumps(_log_row(last)) + "\n")  # the last step, always logged
    if stopped and main:
        tqdm.write(f"train.stop_at={cfg.train.stop_at} reached at step {last.step} of {cfg.train.max_steps}: "
                   f"{metric} {metric_text(metric, evals[-1][metric])} on {evals[-1]['n']} held-out; training stops here")
    return TrainResult(last, metric, evals, stopped)


def finetune(cfg: RunConfig) -> dict:
    """Run one fine-tuning job end to end and return its metrics.

    Order: data (fails fast on bad files) -> base model -> base evaluation ->
    adapter -> training (checkpoints every ``train.save_every``) -> final adapter ->
    final evaluation -> metrics.json, predictions.jsonl, report.md.
    """
    start = time.perf_counter()
    timing: dict[str, float] = {}
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(cfg.train, cfg.seed)
    main = accelerator.is_main_process
    say = print if main else (lambda *a, **k: None)

    data = build_datasets(cfg.data, cfg.eval.max_examples, cfg.eval.seed, cfg.seed + accelerator.process_index)
    if data.skipped_rows:
        say(f"skipped {len(data.skipped_rows)} bad row(s) (data.file.on_bad_row: skip), first: {data.skipped_rows[0]}")
    metric = headline_metric(cfg, data.eval)
    if metric == "exact_match" and cfg.train.stop_at is not None and cfg.train.stop_at > 1:
        raise ValueError(f"train.stop_at={cfg.train.stop_at}: this task's eval.metric is exact_match, a share "
                         "within (0, 1]; write e.g. 0.99, or set eval.metric to a ROUGE/BLEU figure")
    adapter = get_adapter(cfg.adapter.method)
    loaded: Loaded = load_base(cfg, accelerator.device, training=True, trains_base=adapter.TRAINS_BASE)
    timing["load"] = time.perf_counter() - start
    # Resolve the generation budget once, so predict/chat/eval of this run use the same.
    budget = max_new_tokens_for(cfg, loaded.tokenizer, data.eval)
    cfg = loaded.cfg = replace(cfg, generate=replace(cfg.generate, max_new_tokens=budget))
    if main:
        (out / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True))
    metrics: dict = {"metric": metric}
    clock = time.perf_counter()
    if cfg.eval.base and main:
        metrics["base"], _ = evaluate_examples(loaded, data.eval, "eval base")
        say(f"base {metric}: {metric_text(metric, metrics['base'][metric])} on {metrics['base']['n']} held-out")
    timing["base_eval"] = time.perf_counter() - clock

    model = adapter.apply(loaded.model, cfg.adapter)
    counts = EncodeCounts()
    result = _train(cfg, model, accelerator, loaded, data, counts, out, metric)
    last = result.last
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    if not main:
        return {}
    saved = save_adapter(model, cfg.adapter.method, out / "adapter")

    timing["train"] = last.seconds
    loaded.model = model
    clock = time.perf_counter()
    metrics["final"], rows = evaluate_examples(loaded, data.eval, "eval tuned")
    metrics["by_category"] = merge_categories(metrics.get("base"), metrics["final"])
    metrics["train"] = _train_figures(last)
    metrics["train"].update(_footprint(model, saved))
    if result.evals:
        metrics["evals"] = result.evals
        metrics["best"] = {**result.best, "checkpoint": "checkpoint-best"}
        metrics["train"]["stopped_at_target"] = result.stopped_at_target
    metrics["data"] = {
        "train_size": data.train_size if data.train_size is not None else "fresh problems each step",
        "eval_size": len(data.eval),
        "skipped_rows": len(data.skipped_rows),
        "dropped_overlong": counts.dropped,
        "truncated_overlong": counts.truncated,
    }
    timing["final_eval"] = time.perf_counter() - clock
    timing["total"] = time.perf_counter() - start
    metrics["seconds"] = {k: round(v, 1) for k, v in timing.items()}
    write_json(out / "metrics.json", metrics)
    write_jsonl(out / "predictions.jsonl", rows)
    write_report(out, run_summary(cfg), metrics, rows, read_log(out / "train_log.jsonl"))
    base = metric_text(metric, metrics["base"][metric]) if "base" in metrics else "not evaluated"
    say(
        f"{metric} on {metrics['final']['n']} held-out examples: base {base} -> tuned "
        f"{metric_text(metric, metrics['final'][metric])} ({last.step} steps, {last.seconds / 60:.1f} min of training, "
        f"{timing['total'] / 60:.1f} min in all)"
    )
    say(f"run folder: {out}  (report.md with plots, metrics.json, predictions.jsonl, adapter/)")
    return metrics
