"""`tasktune train CONFIG`: evaluate the base, fine-tune, evaluate again, write the run."""

from __future__ import annotations

import json
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from tasktune.adapters import get_adapter
from tasktune.checkpoint import latest_checkpoint, load_checkpoint, save_adapter, save_checkpoint
from tasktune.config import RunConfig, config_to_dict
from tasktune.data import build_datasets
from tasktune.recipes.common import Loaded, evaluate_examples, headline_metric, load_base, max_new_tokens_for, metric_text
from tasktune.report import read_log, write_json, write_jsonl, write_report
from tasktune.train import LoopState, NonFiniteLoss, StepInfo, TrainingStopped, make_accelerator, train_steps
from tasktune.train.shard import gather_weights, whole_weights

__all__ = ["finetune", "run_summary", "merge_categories", "decoding", "RUN_FILES"]

RUN_FILES = ("config.yaml", "train_log.jsonl", "metrics.json", "predictions.jsonl", "report.md", "loss.png",
             "eval.png", "adapter", "checkpoint-best", "eval_metrics.json", "eval_predictions.jsonl")
"""What `tasktune train` writes into a run folder, besides checkpoint-STEP/ folders."""


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
        # Of the token positions the steps computed, the share that were not padding.
        "non_pad_share": round(1 - last.padding_tokens / last.computed_tokens, 4) if last.computed_tokens else None,
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
    summary.pop("first_wrong", None)  # the table is for the final report; the log keeps the figures
    row = {"step": info.step, "examples": info.examples, "seconds": round(info.seconds, 1), **summary}
    if all(row[metric] > e[metric] for e in evals):
        save_adapter(model, cfg.adapter.method, out / "checkpoint-best")
    evals.append(row)
    log.write(json.dumps({"step": info.step, **{f"eval_{k}": v for k, v in summary.items()}}) + "\n")
    log.flush()
    tqdm.write(f"step {info.step}: {metric} {metric_text(metric, row[metric])} on {row['n']} held-out")
    return cfg.train.stop_at is not None and row[metric] >= cfg.train.stop_at


def _advice(cfg: RunConfig) -> str:
    return (f"out of memory (train.batch_size={cfg.train.batch_size}, encoding.max_length={cfg.encoding.max_length}): "
            "lower train.batch_size and raise train.grad_accum to keep the same batch, lower encoding.max_length, "
            "set train.gradient_checkpointing: true, or load the base quantized (quantization: int8)")


def _train(
    cfg: RunConfig, model, accelerator, loaded: Loaded, data, state: LoopState, out: Path, metric: str,
    evals: list[dict], extra: dict,
) -> TrainResult:
    """Run the training loop; log every ``train.log_every`` steps (and the last) to
    train_log.jsonl, save a resumable checkpoint every ``train.save_every`` steps, and
    evaluate every ``eval.every`` steps, keeping the best as checkpoint-best/ and
    stopping once ``train.stop_at`` is reached. ``evals`` holds a resumed run's earlier
    evaluations; ``extra`` is saved in every checkpoint (with ``evals``).

    Raises:
        TrainingStopped: the loss went nan/inf, or memory ran out; the message names
            the step, the last good checkpoint and what to change.
    """
    main = accelerator.is_main_process
    reshard = _reshard_after_forward(accelerator)
    groups = get_adapter(cfg.adapter.method).param_groups(model, cfg.adapter)
    held_out = data.eval[: cfg.eval.every_examples] if cfg.eval.every_examples else data.eval
    last = None
    stopped = False
    # Only the main process has the log open (another's "w" would truncate it).
    opened = (out / "train_log.jsonl").open("a" if state.step else "w", encoding="utf-8") if main else nullcontext()
    with opened as log:
        steps = train_steps(model, accelerator, loaded.encoder, data.train, cfg.train, cfg.encoding, state, groups)
        try:
            for info in steps:
                last = info
                if main and info.step % cfg.train.log_every == 0:
                    log.write(json.dumps(_log_row(info)) + "\n")
                    log.flush()
                if cfg.eval.every and info.step % cfg.eval.every == 0 and info.step < cfg.train.max_steps:
                    # FSDP: every process gathers the weights, the main one evaluates alone.
                    with whole_weights(model, reshard):
                        if main and _evaluate_during(cfg, loaded, model, held_out, info, metric, evals, log, out):
                            accelerator.set_trigger()
                    if accelerator.check_trigger():  # every process stops at the same step
                        stopped = True
                        steps.close()
                        break
                if cfg.train.save_every and info.step % cfg.train.save_every == 0 and info.step < cfg.train.max_steps:
                    if main:
                        log.flush()
                    with whole_weights(model, reshard):
                        save_checkpoint(out, model, cfg.adapter.method, state, {**extra, "evals": evals},
                                        accelerator.process_index, accelerator.wait_for_everyone)
        except NonFiniteLoss as exc:
            good = latest_checkpoint(out)
            where = (f"the last good checkpoint is {good}; continue from it with `tasktune train CONFIG --resume` "
                     "after lowering train.lr or raising train.warmup_steps" if good else
                     "no checkpoint was saved (train.save_every); lower train.lr or raise train.warmup_steps and start over")
            raise TrainingStopped(f"training stopped: {exc}; {where}") from None
        except (torch.OutOfMemoryError, MemoryError):
            raise TrainingStopped(f"training stopped at step {state.step + 1}: {_advice(cfg)}") from None
        if last is None:
            raise TrainingStopped(f"{out}: the run had already reached train.max_steps={cfg.train.max_steps} "
                                  f"at step {state.step}; nothing left to train")
        if main and last.step % cfg.train.log_every:
            log.write(json.dumps(_log_row(last)) + "\n")  # the last step, always logged
    if stopped and main:
        tqdm.write(f"train.stop_at={cfg.train.stop_at} reached at step {last.step} of {cfg.train.max_steps}: "
                   f"{metric} {metric_text(metric, evals[-1][metric])} on {evals[-1]['n']} held-out; training stops here")
    return TrainResult(last, metric, evals, stopped)


def _reshard_after_forward(accelerator) -> bool:
    """FSDP's setting (what :func:`whole_weights` restores); True when not sharding."""
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    return bool(getattr(plugin, "reshard_after_forward", True))


def _prepare_folder(out: Path, resume: bool, overwrite: bool, clean: bool) -> Path | None:
    """Check the run folder against the flags; returns the checkpoint to resume from.
    ``clean`` (the main process): delete what ``overwrite`` replaces, and unfinished
    checkpoint writes.

    Raises:
        ValueError: the folder holds a run and neither flag was given, or ``resume``
            finds nothing to resume.
    """
    held = out.is_dir() and (any((out / name).exists() for name in RUN_FILES) or latest_checkpoint(out) is not None)
    if resume:
        if (out / "metrics.json").is_file():
            raise ValueError(f"{out}: this run has finished (metrics.json); nothing to resume. "
                             "Start over with --overwrite, or give another output_dir")
        found = latest_checkpoint(out)
        if found is None:
            raise ValueError(f"{out}: no complete checkpoint-STEP/ to resume from (train.save_every writes them); "
                             "start over with --overwrite")
        if clean:
            for partial in out.glob(".checkpoint-*"):  # a write the crash cut short
                shutil.rmtree(partial)
        return found
    if held and not overwrite:
        raise ValueError(f"{out} already holds a run; continue it with --resume, start over with --overwrite "
                         "(deletes that run's files), or give another output_dir=...")
    if held and clean:
        for name in RUN_FILES:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        for path in list(out.glob("checkpoint-*")) + list(out.glob(".checkpoint-*")):
            shutil.rmtree(path)
    return None


def _truncate_log(path: Path, step: int) -> None:
    """Drop the log lines of steps after ``step`` (a resumed run writes them again)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.is_file() else []
    path.write_text("".join(line for line in lines if json.loads(line).get("step", 0) <= step), encoding="utf-8")


def _weights_dtype(cfg: RunConfig) -> torch.dtype:
    """The dtype the base will be loaded in on this machine (GPU when there is one)."""
    from tasktune.model import pick_dtype

    return pick_dtype(cfg.dtype, torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def _config_changes(out: Path, cfg: RunConfig) -> list[str]:
    """Keys whose value differs from the run's saved config.yaml."""
    saved_path = out / "config.yaml"
    if not saved_path.is_file():
        return []

    def flat(d: dict, prefix: str = "") -> dict:
        items = {}
        for k, v in d.items():
            items.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return items

    saved = flat(yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {})
    now = flat(yaml.safe_load(yaml.safe_dump(config_to_dict(cfg), allow_unicode=True)))
    return [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]


def finetune(cfg: RunConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Run one fine-tuning job end to end and return its metrics.

    Order: data (fails fast on bad files) -> base model -> base evaluation ->
    adapter -> training (resumable checkpoints every ``train.save_every``) -> final
    adapter -> final evaluation -> metrics.json, predictions.jsonl, report.md.

    Args:
        cfg: The run's configuration.
        resume: Continue the run in ``cfg.output_dir`` from its newest complete
            checkpoint: the same steps on the same data, so it ends as an uninterrupted
            run would.
        overwrite: Delete a run already in ``cfg.output_dir`` first; without it (or
            ``resume``) such a folder is refused.

    Raises:
        ValueError: bad settings or data, a folder that holds a run, nothing to resume.
        TrainingStopped: the loss went nan/inf or memory ran out.
    """
    start = time.perf_counter()
    timing: dict[str, float] = {}
    out = Path(cfg.output_dir)
    accelerator = make_accelerator(cfg.train, cfg.seed, _weights_dtype(cfg))
    main = accelerator.is_main_process
    say = print if main else (lambda *a, **k: None)
    found = _prepare_folder(out, resume, overwrite, main)
    accelerator.wait_for_everyone()
    out.mkdir(parents=True, exist_ok=True)

    # Every process reads the same stream and trains on its share of each batch.
    data = build_datasets(cfg.data, cfg.eval.max_examples, cfg.eval.seed, cfg.seed)
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
    if found is not None:
        changes = _config_changes(out, cfg)
        if changes:
            say(f"warning: resuming with settings that differ from {out / 'config.yaml'}: " + "; ".join(changes))
    if main:
        (out / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True))
    metrics: dict = {"metric": metric}
    clock = time.perf_counter()
    if found is None and cfg.eval.base and main:
        metrics["base"], _ = evaluate_examples(loaded, data.eval, "eval base")
        say(f"base {metric}: {metric_text(metric, metrics['base'][metric])} on {metrics['base']['n']} held-out")
    timing["base_eval"] = time.perf_counter() - clock

    # A resumed run applies the adapter as the first run did (same random initialisation),
    # then the checkpoint overwrites it, and its random states take over from there.
    model = adapter.apply(loaded.model, cfg.adapter)
    state, evals = LoopState(), []
    if found is not None:
        state, saved = load_checkpoint(found, model, accelerator.process_index)
        say(f"resuming {out} from {found.name}: step {state.step} of {cfg.train.max_steps}")
        if "base" in saved:
            metrics["base"] = saved["base"]
        evals = list(saved.get("evals", []))
        if main:
            _truncate_log(out / "train_log.jsonl", state.step)
    extra = {"base": metrics["base"]} if "base" in metrics else {}
    result = _train(cfg, model, accelerator, loaded, data, state, out, metric, evals, extra)
    counts = state.counts
    last = result.last
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    # FSDP: the weights are gathered whole for good (every process), then the main one
    # saves and evaluates alone while the others end.
    gather_weights(model)
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
