"""Turn the data config into a held-out eval set and a training stream."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterator

from tasktune.config import DataConfig
from tasktune.data import arithmetic
from tasktune.data.conversation import in_conversations
from tasktune.data.example import Example
from tasktune.data.files import load_file

__all__ = ["Datasets", "build_datasets"]


@dataclass
class Datasets:
    """What training and evaluation read.

    Attributes:
        eval: Held-out examples, never trained on.
        train: Endless stream of training examples (fresh problems, or epochs of a
            fixed set reshuffled each pass).
        train_size: Distinct training examples; None for freshly generated problems.
        skipped_rows: ``FILE:ROW: reason`` for each row skipped with ``on_bad_row: skip``.
        problems: The generated problems of ``eval`` (same order), for the suites that ask
            them another way; None for a file task.
    """

    eval: list[Example]
    train: Iterator[Example]
    train_size: int | None
    skipped_rows: list[str] = field(default_factory=list)
    problems: list[arithmetic.Problem] | None = None


def _epochs(examples: list[Example], seed: int) -> Iterator[Example]:
    rng = random.Random(f"order-{seed}")
    order = list(examples)
    while True:
        rng.shuffle(order)
        yield from order


def build_datasets(cfg: DataConfig, n_eval: int, eval_seed: int, seed: int) -> Datasets:
    """Build the eval set and the training stream.

    Args:
        cfg: The ``data`` section.
        n_eval: Held-out examples wanted (``eval.max_examples``).
        eval_seed: Seed of the held-out arithmetic problems.
        seed: Seed of training problems and order; give each data-parallel process its own.

    Raises:
        FileNotFoundError, DataFileError: a data file is missing or has bad rows.
        ValueError: the problem space is too small for the sizes asked.
    """
    if cfg.task == "arithmetic":
        data = _arithmetic(cfg, n_eval, eval_seed, seed)
    else:
        data = _file(cfg, n_eval, eval_seed, seed)
    # Rows inside conversations: their own seed, so the problems drawn stay the same.
    data.train = in_conversations(data.train, cfg.context, random.Random(f"context-{seed}"))
    return data


def _arithmetic(cfg: DataConfig, n_eval: int, eval_seed: int, seed: int) -> Datasets:
    a = cfg.arithmetic
    held_out = arithmetic.eval_problems(a, n_eval, eval_seed)
    exclude = {p.key for p in held_out}
    erng = random.Random(f"eval-format-{eval_seed}")
    eval_set = [arithmetic.to_example(p, erng, a) for p in held_out]
    trng = random.Random(f"train-format-{seed}")
    mix = arithmetic.training_mix(a)
    problems = arithmetic.train_problems(mix, seed, exclude, cfg.train_size)
    # The prompt style is drawn before the problem is rendered (nothing drawn with one style).
    examples = (arithmetic.to_example(p, trng, mix, arithmetic.prompt_style(trng, mix)) for p in problems)
    if cfg.train_size is None:
        return Datasets(eval=eval_set, train=examples, train_size=None, problems=held_out)
    fixed = list(examples)
    return Datasets(eval=eval_set, train=_epochs(fixed, seed), train_size=len(fixed), problems=held_out)


def _file(cfg: DataConfig, n_eval: int, eval_seed: int, seed: int) -> Datasets:
    f = cfg.file
    loaded = load_file(f.path, f.columns, f.on_bad_row, answer=f.answer)
    skipped = list(loaded.bad_rows)
    train = loaded.examples
    if f.sample is not None and f.sample < len(train):
        train = random.Random(f"sample-{eval_seed}").sample(train, f.sample)  # the same rows in every process
    if f.eval_path:
        held = load_file(f.eval_path, f.columns, f.on_bad_row, answer=f.answer)
        skipped += held.bad_rows
        eval_set = held.examples[:n_eval]
    else:
        if n_eval >= len(train):
            raise ValueError(
                f"{f.path}: {len(train)} usable rows cannot give {n_eval} held-out rows and leave "
                "some to train on; lower eval.max_examples or set data.file.eval_path"
            )
        eval_set, train = (train[-n_eval:], train[:-n_eval]) if n_eval else ([], train)
    return Datasets(eval=eval_set, train=_epochs(train, seed), train_size=len(train), skipped_rows=skipped)
