"""`tasktune train CONFIG`: evaluate the base, fine-tune, evaluate again, write the run."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from tasktune.adapters import get_adapter
from tasktune.checkpoint import latest_checkpoint, load_checkpoint, save_adapter, save_checkpoint
from tasktune.config import RunConfig, config_to_dict
from tasktune.data import Datasets, build_datasets
from tasktune.recipes.common import Loaded, evaluate_examples, headline_metric, load_base, max_new_tokens_for, metric_text
from tasktune.recipes.folder import config_changes, prepare_folder, truncate_log
from tasktune.recipes.results import merge_categories, write_results
from tasktune.recipes.suites import evaluate_suites, suites_line, suites_of
from tasktune.recipes.rollouts import check_reward, make_rollout
from tasktune.recipes.start import check_start, start_figures, start_from
from tasktune.train import LoopState, NonFiniteLoss, StepInfo, TrainingStopped, make_accelerator, train_steps
from tasktune.train.rl import Reference, Source, rl_steps
from tasktune.train.shard import gather_weights, whole_weights

__all__ = ["finetune"]


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
        **info.figures,
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


@dataclass
class _Run:
    """What every step of the recipe reads: the settings, the folder, this process's
    accelerator, the data and the loaded base (its ``model`` becomes the tuned one)."""

    cfg: RunConfig
    out: Path
    accelerator: object
    data: Datasets
    loaded: Loaded
    metric: str
    found: Path | None
    """The checkpoint a resumed run continues from; None for a fresh run."""
    suites: dict = field(default_factory=dict)
    """The robustness suites, built before training (a problem space too small fails early)."""
    reference: Reference | None = None
    """RL with a KL term: the starting policy's weights (train.init_from), kept aside."""

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def say(self, text: str) -> None:
        if self.main:
            print(text)


def _evaluate_during(run: _Run, model, examples, info: StepInfo, evals: list[dict], log) -> bool:
    """Evaluate the model as it is at ``info``'s step: append the row to ``evals`` and
    train_log.jsonl, save checkpoint-best/ when its ``metric`` beats every earlier one.

    Returns:
        True when ``train.stop_at`` is reached.
    """
    metric = run.metric
    summary, _ = evaluate_examples(replace(run.loaded, model=model), examples, f"eval step {info.step}")
    summary.pop("by_category")
    summary.pop("first_wrong", None)  # the table is for the final report; the log keeps the figures
    row = {"step": info.step, "examples": info.examples, "seconds": round(info.seconds, 1), **summary}
    if all(row[metric] > e[metric] for e in evals):
        save_adapter(model, run.cfg.adapter.method, run.out / "checkpoint-best")
    evals.append(row)
    log.write(json.dumps({"step": info.step, **{f"eval_{k}": v for k, v in summary.items()}}) + "\n")
    log.flush()
    tqdm.write(f"step {info.step}: {metric} {metric_text(metric, row[metric])} on {row['n']} held-out")
    return run.cfg.train.stop_at is not None and row[metric] >= run.cfg.train.stop_at


def _advice(cfg: RunConfig) -> str:
    return (f"out of memory (train.batch_size={cfg.train.batch_size}, encoding.max_length={cfg.encoding.max_length}): "
            "lower train.batch_size and raise train.grad_accum to keep the same batch, lower encoding.max_length, "
            "set train.gradient_checkpointing: true, or load the base quantized (quantization: int8)")


def _due(every: int, info: StepInfo, cfg: RunConfig) -> bool:
    """A periodic task (evaluation, checkpoint) falls on this step; the last step has its own."""
    return bool(every) and info.step % every == 0 and info.step < cfg.train.max_steps


def _train(run: _Run, model, state: LoopState, evals: list[dict], extra: dict) -> TrainResult:
    """Run the training loop; log every ``train.log_every`` steps (and the last) to
    train_log.jsonl, save a resumable checkpoint every ``train.save_every`` steps, and
    evaluate every ``eval.every`` steps, keeping the best as checkpoint-best/ and
    stopping once ``train.stop_at`` is reached. ``evals`` holds a resumed run's earlier
    evaluations; ``extra`` is saved in every checkpoint (with ``evals``).

    Raises:
        TrainingStopped: the loss went nan/inf, or memory ran out; the message names
            the step, the last good checkpoint and what to change.
    """
    cfg, accelerator, main = run.cfg, run.accelerator, run.main
    reshard = _reshard_after_forward(accelerator)
    groups = get_adapter(cfg.adapter.method).param_groups(model, cfg.adapter)
    held_out = run.data.eval[: cfg.eval.every_examples] if cfg.eval.every_examples else run.data.eval
    last, stopped = None, False
    # Only the main process has the log open (another's "w" would truncate it).
    opened = (run.out / "train_log.jsonl").open("a" if state.step else "w", encoding="utf-8") if main else nullcontext()
    with opened as log, _stopped_as_advice(run, state):
        steps = _steps(run, model, state, groups)
        for info in steps:
            last = info
            if main and info.step % cfg.train.log_every == 0:
                log.write(json.dumps(_log_row(info)) + "\n")
                log.flush()
            if _due(cfg.eval.every, info, cfg):
                # FSDP: every process gathers the weights, the main one evaluates alone.
                with whole_weights(model, reshard):
                    if main and _evaluate_during(run, model, held_out, info, evals, log):
                        accelerator.set_trigger()
                if accelerator.check_trigger():  # every process stops at the same step
                    stopped = True
                    steps.close()
                    break
            if _due(cfg.train.save_every, info, cfg):
                if main:
                    log.flush()
                with whole_weights(model, reshard):
                    save_checkpoint(run.out, model, cfg.adapter.method, state, {**extra, "evals": evals},
                                    accelerator.process_index, accelerator.wait_for_everyone)
        if last is None:
            raise TrainingStopped(f"{run.out}: the run had already reached train.max_steps={cfg.train.max_steps} "
                                  f"at step {state.step}; nothing left to train")
        if main and last.step % cfg.train.log_every:
            log.write(json.dumps(_log_row(last)) + "\n")  # the last step, always logged
    if stopped:
        run.say(f"train.stop_at={cfg.train.stop_at} reached at step {last.step} of {cfg.train.max_steps}: {run.metric} "
                f"{metric_text(run.metric, evals[-1][run.metric])} on {evals[-1]['n']} held-out; training stops here")
    return TrainResult(last, run.metric, evals, stopped)


def _steps(run: _Run, model, state: LoopState, groups: list[dict]):
    """The training loop of ``train.objective``: SFT's, or the RL stage's (sampling from
    the model as it trains, scored by the reward)."""
    cfg = run.cfg
    if cfg.train.objective == "sft":
        return train_steps(model, run.accelerator, run.loaded.encoder, run.data.train, cfg.train, cfg.encoding, state, groups)
    cap = cfg.rl.max_completion_length or cfg.generate.max_new_tokens
    source = Source(run.data.train, make_rollout(run.loaded, model, cfg, cap), cap, cfg.seed)
    return rl_steps(model, run.accelerator, source, cfg.train, cfg.rl, state, groups, run.reference)


@contextmanager
def _stopped_as_advice(run: _Run, state: LoopState):
    """A diverged loss or a full memory becomes :class:`TrainingStopped`, whose message
    says where the run stands (its last good checkpoint) and what to change."""
    try:
        yield
    except NonFiniteLoss as exc:
        good = latest_checkpoint(run.out)
        where = (f"the last good checkpoint is {good}; continue from it with `tasktune train CONFIG --resume` "
                 "after lowering train.lr or raising train.warmup_steps" if good else
                 "no checkpoint was saved (train.save_every); lower train.lr or raise train.warmup_steps and start over")
        raise TrainingStopped(f"training stopped: {exc}; {where}") from None
    except (torch.OutOfMemoryError, MemoryError):
        raise TrainingStopped(f"training stopped at step {state.step + 1}: {_advice(run.cfg)}") from None


def _reshard_after_forward(accelerator) -> bool:
    """FSDP's setting (what :func:`whole_weights` restores); True when not sharding."""
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    return bool(getattr(plugin, "reshard_after_forward", True))


def _weights_dtype(cfg: RunConfig) -> torch.dtype:
    """The dtype the base will be loaded in on this machine (GPU when there is one)."""
    from tasktune.model import pick_dtype

    return pick_dtype(cfg.dtype, torch.device("cuda" if torch.cuda.is_available() else "cpu"))


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
    run = _prepare(cfg, resume, overwrite)
    timing = {"load": time.perf_counter() - start}
    clock = time.perf_counter()
    metrics = {"metric": run.metric, **_evaluate_base(run)}
    timing["base_eval"] = time.perf_counter() - clock
    model, state, evals = _apply_adapter(run, metrics)
    result = _train(run, model, state, evals, {k: metrics[k] for k in ("base", "start_from") if k in metrics})
    run.accelerator.wait_for_everyone()
    model = run.accelerator.unwrap_model(model)
    # FSDP: the weights are gathered whole for good (every process), then the main one
    # saves and evaluates alone while the others end.
    gather_weights(model)
    if not run.main:
        return {}
    saved = save_adapter(model, cfg.adapter.method, run.out / "adapter")
    run.loaded.model = model
    timing["train"] = result.last.seconds
    clock = time.perf_counter()
    rows = _evaluate_final(run, result, state.counts, saved, metrics)
    timing["final_eval"] = time.perf_counter() - clock
    clock = time.perf_counter()
    suites, suite_rows = evaluate_suites(run.loaded, run.suites)
    if suites:
        metrics["suites"] = suites
        timing["suites_eval"] = time.perf_counter() - clock
    timing["total"] = time.perf_counter() - start
    metrics["seconds"] = {k: round(v, 1) for k, v in timing.items()}
    _write_run(run, metrics, rows, suite_rows, result.last)
    return metrics


def _prepare(cfg: RunConfig, resume: bool, overwrite: bool) -> _Run:
    """The folder checked against the flags, the data read (bad files fail here, before
    the model loads), the base loaded, the generation cap settled and config.yaml written."""
    out = Path(cfg.output_dir)
    check_start(cfg)  # train.init_from: a run of this model and method, before any folder is touched
    accelerator = make_accelerator(cfg.train, cfg.seed, _weights_dtype(cfg))
    found = prepare_folder(out, resume, overwrite, accelerator.is_main_process)
    accelerator.wait_for_everyone()
    out.mkdir(parents=True, exist_ok=True)
    # Every process reads the same stream and trains on its share of each batch.
    data = build_datasets(cfg.data, cfg.eval.max_examples, cfg.eval.seed, cfg.seed)
    if data.skipped_rows and accelerator.is_main_process:
        print(f"skipped {len(data.skipped_rows)} bad row(s) (data.file.on_bad_row: skip), first: {data.skipped_rows[0]}")
    suites = suites_of(cfg, data)  # before the model loads: a problem space too small fails here
    if cfg.train.objective != "sft":
        check_reward(cfg, data.eval)
    metric = headline_metric(cfg, data.eval)
    if metric == "exact_match" and cfg.train.stop_at is not None and cfg.train.stop_at > 1:
        raise ValueError(f"train.stop_at={cfg.train.stop_at}: this task's eval.metric is exact_match, a share "
                         "within (0, 1]; write e.g. 0.99, or set eval.metric to a ROUGE/BLEU figure")
    trains_base = get_adapter(cfg.adapter.method).TRAINS_BASE
    loaded = load_base(cfg, accelerator.device, training=True, trains_base=trains_base)
    # Resolve the generation budget once, so predict/chat/eval of this run use the same.
    budget = max_new_tokens_for(cfg, loaded.tokenizer, data.eval)
    cfg = loaded.cfg = replace(cfg, generate=replace(cfg.generate, max_new_tokens=budget))
    run = _Run(cfg, out, accelerator, data, loaded, metric, found, suites)
    if found is not None and (changes := config_changes(out, cfg)):
        run.say(f"warning: resuming with settings that differ from {out / 'config.yaml'}: " + "; ".join(changes))
    if run.main:
        (out / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True))
    return run


def _evaluate_base(run: _Run) -> dict:
    """``{"base": summary}`` for a fresh run that asks for it (main process); else empty."""
    if run.found is not None or not run.cfg.eval.base or not run.main:
        return {}
    if run.cfg.train.init_from:  # the run it starts from, as that run measured it
        return start_figures(run.cfg, run.metric, run.say)
    base, _ = evaluate_examples(run.loaded, run.data.eval, "eval base")
    run.say(f"base {run.metric}: {metric_text(run.metric, base[run.metric])} on {base['n']} held-out")
    return {"base": base}


def _apply_adapter(run: _Run, metrics: dict) -> tuple[object, LoopState, list[dict]]:
    """The base with its adapter; for a resumed run, the checkpoint's weights, loop state,
    base figures (into ``metrics``) and earlier in-training evaluations.

    A resumed run applies the adapter as the first run did (same random initialisation),
    then the checkpoint overwrites it, and its random states take over from there.
    """
    model = get_adapter(run.cfg.adapter.method).apply(run.loaded.model, run.cfg.adapter)
    if run.cfg.train.init_from:
        start_from(model, run.cfg)
        if run.cfg.train.objective != "sft" and run.cfg.rl.beta > 0:
            run.reference = Reference(model)
    if run.found is None:
        return model, LoopState(), []
    state, saved = load_checkpoint(run.found, model, run.accelerator.process_index)
    run.say(f"resuming {run.out} from {run.found.name}: step {state.step} of {run.cfg.train.max_steps}")
    metrics.update({k: saved[k] for k in ("base", "start_from") if k in saved})
    if run.main:
        truncate_log(run.out / "train_log.jsonl", state.step)
    return model, state, list(saved.get("evals", []))


def _evaluate_final(run: _Run, result: TrainResult, counts, saved: Path, metrics: dict) -> list[dict]:
    """The tuned model on the held-out set, with the training and data figures, into
    ``metrics``; returns the prediction rows."""
    metrics["final"], rows = evaluate_examples(run.loaded, run.data.eval, "eval tuned")
    metrics["by_category"] = merge_categories(metrics.get("base"), metrics["final"])
    metrics["train"] = {**_train_figures(result.last), **_footprint(run.loaded.model, saved)}
    if result.evals:
        metrics["evals"] = result.evals
        metrics["best"] = {**result.best, "checkpoint": "checkpoint-best"}
        metrics["train"]["stopped_at_target"] = result.stopped_at_target
    data = run.data
    metrics["data"] = {
        "train_size": data.train_size if data.train_size is not None else "fresh problems each step",
        "eval_size": len(data.eval),
        "skipped_rows": len(data.skipped_rows),
        "dropped_overlong": counts.dropped,
        "truncated_overlong": counts.truncated,
    }
    return rows


def _write_run(run: _Run, metrics: dict, rows: list[dict], suite_rows: list[dict], last: StepInfo) -> None:
    """metrics.json, predictions.jsonl, suite_predictions.jsonl and report.md, and the closing lines."""
    out, metric = run.out, run.metric
    write_results(out, run.cfg, metrics, rows, suite_rows)
    base = metric_text(metric, metrics["base"][metric]) if "base" in metrics else "not evaluated"
    run.say(
        f"{metric} on {metrics['final']['n']} held-out examples: base {base} -> tuned "
        f"{metric_text(metric, metrics['final'][metric])} ({last.step} steps, {last.seconds / 60:.1f} min of training, "
        f"{metrics['seconds']['total'] / 60:.1f} min in all)"
    )
    if metrics.get("suites"):
        run.say(suites_line(metric, metrics["final"], metrics["suites"]))
    run.say(f"run folder: {out}  (report.md with plots, metrics.json, predictions.jsonl, adapter/)")
