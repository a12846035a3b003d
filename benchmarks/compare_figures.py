"""The figures of benchmarks/compare.py computed from its sides' runs: ratios of
medians with their spread, the non-pad share by batch size, the GEMM peak, and the
printed tables."""

from __future__ import annotations

import statistics
import time
from itertools import islice

from compare_sides import EASIER, ROOT, TARGET

__all__ = ["nonpad_shares", "nonpad_table", "gemm_peak", "target_ratio", "target_rows", "print_tables"]

def nonpad_shares(lengths: list[int], batch: int, micro_batches: int) -> dict:
    """Share of the computed positions that are real tokens, over consecutive batches of
    rows of ``lengths``: ``padded``, each step's rows sorted by length into
    ``micro_batches`` micro-batches each as wide as its longest row (tasktune's loop
    with ``train.packing=false``); ``packed``, rows end to end (``train.packing=true``:
    nothing padded); ``hf``, each batch as wide as its longest row (the collator above).

    Example:
        >>> nonpad_shares([2, 4, 2, 4], batch=4, micro_batches=2)
        {'padded': 1.0, 'packed': 1.0, 'hf': 0.75}
    """
    real = sum(lengths[: len(lengths) // batch * batch])
    padded = hf = 0
    micro = batch // micro_batches
    for i in range(0, len(lengths) - batch + 1, batch):
        rows = lengths[i : i + batch]
        hf += batch * max(rows)
        rows = sorted(rows)
        padded += sum(micro * max(rows[j : j + micro]) for j in range(0, batch, micro))
    return {"padded": real / padded, "packed": 1.0, "hf": real / hf}


def _to_level(run: dict, key: str) -> float:
    """A run's seconds to a level; its whole training time where it never got there."""
    return run[key] if run[key] is not None else run["seconds_trained"]


def target_ratio(runs: dict, key: str, name: str) -> dict:
    """``{name}_speedup``: the median over the baseline's runs of its seconds to a level
    (``key`` in each run's figures) over tasktune's median; ``{name}_spread``: the
    smallest and largest ratio of one round's runs (round i's baseline over round i's
    tasktune). A run that never reached the level counts its whole training time, which
    makes the ratio a bound: ``{name}_bound`` says ``exact``, ``at_least`` or ``at_most``."""
    if "target_tasktune" not in runs:
        return {f"{name}_speedup": None, f"{name}_bound": "not measured"}
    t, h = runs["target_tasktune"], runs["target_hf"]
    t_reached, h_reached = all(r[key] is not None for r in t), all(r[key] is not None for r in h)
    if not any(r[key] is not None for r in t + h):
        return {f"{name}_speedup": None, f"{name}_bound": "neither side reached it"}
    ratio = statistics.median(_to_level(r, key) for r in h) / statistics.median(_to_level(r, key) for r in t)
    rounds = [_to_level(b, key) / _to_level(a, key) for a, b in zip(t, h)]
    bound = "exact" if t_reached and h_reached else "at_least" if t_reached else "at_most" if h_reached else "unknown"
    return {f"{name}_speedup": ratio, f"{name}_spread": [min(rounds), max(rounds)], f"{name}_bound": bound}


def target_rows(runs: dict, ratios: dict) -> str:
    if "target_tasktune" not in runs:
        return "| time to 95% exact match | not measured (--no-target) | | |"

    def cell(side: list[dict], key: str) -> str:
        times = [f"{r[key] / 60:.1f}" if r[key] is not None else f"not reached ({r['seconds_trained'] / 60:.1f})" for r in side]
        return f"{statistics.median(_to_level(r, key) for r in side) / 60:.1f} min (runs: {', '.join(times)})"

    rows = []
    for level, key, name in ((TARGET, "seconds_to_target", "time_to_target"), (EASIER, "seconds_to_80", "time_to_80")):
        r = ratios[f"{name}_speedup"]
        mark = {"exact": "", "at_least": ">= ", "at_most": "<= ", "unknown": "? "}.get(ratios[f"{name}_bound"], "")
        text = ratios[f"{name}_bound"]
        if r is not None:
            lo, hi = ratios[f"{name}_spread"]
            text = f"{mark}{r:.2f}x (rounds {lo:.2f}-{hi:.2f}x)"
        rows.append(f"| time to {level:.0%} exact match (training, median of {len(runs['target_tasktune'])}) | "
                    f"{cell(runs['target_tasktune'], key)} | {cell(runs['target_hf'], key)} | {text} |")
    for side in ("target_tasktune", "target_hf"):
        for i, run in enumerate(runs[side]):
            trail = " / ".join(f"{e['exact_match']:.1%} at {e['step']} ({e['seconds'] / 60:.1f} min)" for e in run["evals"])
            rows.append(f"| {side[7:]} run {i + 1}, held-out exact match by step | {trail} | | |")
    return "\n".join(rows)


def nonpad_table(n: int = 512) -> dict:
    """:func:`nonpad_shares` at batch sizes 4 to 32 on the first ``n`` training rows of
    the demo and of the worked * and / task, as tasktune encodes them."""
    from tasktune.config import load_config
    from tasktune.data import build_datasets
    from tasktune.encoding import ChatEncoder
    from tasktune.model import load_tokenizer, resolve_model

    table = {}
    for name in ("arith_lora", "arith_muldiv_lora"):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        data = build_datasets(cfg.data, 10, cfg.eval.seed, cfg.seed)
        encoder = ChatEncoder(load_tokenizer(resolve_model(cfg.model)), cfg.encoding.template, cfg.encoding.system_prompt)
        lengths = [len(encoder.encode(ex, cfg.encoding.max_length).input_ids) for ex in islice(data.train, n)]
        table[name] = {b: nonpad_shares(lengths, b, 2) for b in (4, 8, 16, 32)}
    return table


def gemm_peak() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = 0.0
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * 2048**3 / (time.perf_counter() - started))
    return best


def print_tables(result: dict) -> None:
    """The ratio table, the time-to-target rows and the non-pad shares by batch size."""
    mean, ratios, runs = result["mean"], result["ratios"], result["runs"]
    t, h, hs = mean["tasktune"], mean["hf"], mean["hf_same"]
    gen_t, gen_h = mean["gen_tasktune"]["new_tokens_per_second"], mean["gen_hf"]["new_tokens_per_second"]
    print("\n| figure | tasktune | HF Trainer + PEFT | ratio | goal |\n| --- | --- | --- | --- | --- |")
    print(f"| training examples/s, each at its defaults | {t['examples_per_second']:.2f} | {h['examples_per_second']:.2f} | "
          f"{ratios['train_speedup']:.2f}x | 3x |")
    print(f"| training examples/s, identical rows | {t['examples_per_second']:.2f} | {hs['examples_per_second']:.2f} | "
          f"{ratios['train_speedup_same_tokens']:.2f}x | 2x |")
    print(f"| non-pad tokens/s (defaults) | {t['tokens_per_second']:.0f} | {h['tokens_per_second']:.0f} | "
          f"{t['tokens_per_second'] / h['tokens_per_second']:.2f}x | |")
    print(f"| non-pad share of the computed positions (defaults) | {t['nonpad_share']:.1%} | {h['nonpad_share']:.1%} | | 95% |")
    print(f"| tokens per row (defaults) | {t['tokens_per_row']:.1f} | {h['tokens_per_row']:.1f} | | |")
    print(f"| peak RSS MiB (defaults) | {t['peak_rss_mib']:.0f} | {h['peak_rss_mib']:.0f} | {t['peak_rss_mib'] / h['peak_rss_mib']:.2f}x | |")
    print(f"| generation new tokens/s | {gen_t:.1f} | {gen_h:.1f} | {ratios['generate_speedup']:.2f}x | 3x |")
    print(f"| training FLOP/s, share of the fp32 GEMM peak | {ratios['peak_share']:.0%} | | | 70% |")
    print(target_rows(runs, ratios))
    print(f"\nfp32 GEMM peak {result['gemm_peak_gflops']:.0f} GFLOP/s; tasktune training ~{result['tasktune_train_gflops_estimate']:.0f} "
          f"GFLOP/s (4 x {result['non_embedding_weights'] / 1e6:.0f}M non-embedding weights x non-pad tokens/s)")
    print("\nnon-pad share of the computed positions by batch size (consecutive batches of 512 training rows; "
          "tasktune in 2 length-sorted micro-batches):\n| rows | batch | tasktune padded | tasktune packed | HF collator |\n"
          "| --- | --- | --- | --- | --- |")
    for name, by_batch in result["nonpad_share_by_batch"].items():
        for batch, share in by_batch.items():
            print(f"| {name} | {batch} | {share['padded']:.1%} | {share['packed']:.1%} | {share['hf']:.1%} |")
