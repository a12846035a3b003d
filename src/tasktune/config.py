"""Run configuration: frozen dataclasses, one per stage, loaded from YAML.

Every field's docstring is its help text (``tasktune train --help-config``).
:func:`load_config` rejects unknown keys with a did-you-mean and reports every
problem of a file at once in one :class:`ConfigError`.

Example:
    >>> cfg = load_config("configs/arith_lora.yaml", ["train.max_steps=10"])
    >>> cfg.train.max_steps
    10
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tasktune.constants import DEFAULT_MODEL

__all__ = [
    "ArithmeticConfig",
    "FileDataConfig",
    "DataConfig",
    "EncodingConfig",
    "LoraConfig",
    "AdapterConfig",
    "FreezeConfig",
    "PrefixConfig",
    "TrainConfig",
    "EvalConfig",
    "GenerateConfig",
    "RunConfig",
    "ConfigError",
    "load_config",
    "config_to_dict",
    "field_docs",
]


class ConfigError(ValueError):
    """Every problem found in one configuration, listed together."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the configuration:\n{lines}")


@dataclass(frozen=True)
class ArithmeticConfig:
    ops: dict[str, float] = field(default_factory=lambda: {"+": 0.5, "-": 0.5})
    """Operations and their share of problems, e.g. {"+": 1, "-": 1, "*": 1, "/": 1}."""
    train_ops: dict[str, float] | None = None
    """Operation weights of training problems only (e.g. more of the harder -); null: as `ops`.
    Held-out problems always follow `ops`."""
    digits: tuple[int, int] = (1, 2)
    """Range of integer-part digits for both operands, inclusive ([1, 2]: 0 to 99)."""
    digits_b: tuple[int, int] | None = None
    """Digit range of the second operand; null: the same as `digits`."""
    digit_sampling: Literal["uniform", "per_digits", "mixed", "mixed_b"] = "uniform"
    """uniform: operands uniform over the whole range; per_digits: each digit count equally likely;
    mixed: each operand drawn one way or the other at even odds; mixed_b: the first operand
    uniform, the second mixed (more one-digit divisors and factors, `87/5=`, without more
    one-digit dividends)."""
    train_digit_sampling: Literal["uniform", "per_digits", "mixed", "mixed_b"] | None = None
    """digit_sampling of training problems only (per_digits shows the rarer short operands,
    `7-363=`, far more often); null: as `digit_sampling`. Held-out problems follow `digit_sampling`."""
    train_close_share: float = 0.0
    """Share of training subtractions whose second operand is the first with its last
    digits drawn again (`673-678=`): the near-equal differences, where the sign is decided
    by the low columns and the value has leading zeros to drop, are rare among uniform
    operands (1 in 100 at 3 digits share two leading digits). Held-out problems never."""
    decimal_share: float = 0.0
    """Share of problems with decimal operands (0: integers only, 1: decimals only)."""
    decimal_places: int = 2
    """Decimal places of decimal operands (canonical form drops trailing zeros)."""
    division_places: int = 2
    """Places the exact quotient is rounded to (half up); canonical: 8.4, never 8.40."""
    prompt_format: Literal["bare", "zh_pairs"] = "bare"
    """bare: `98+83=`; zh_pairs: one of the tutorial's eight Chinese pairs, e.g. `口算: 98+83= 解:`."""
    division: Literal["decimal", "remainder"] = "decimal"
    """decimal: the exact quotient rounded to `division_places` (`17/5=3.4`); remainder: integer
    quotient and remainder (`17/5=3 R 2`), checked as the pair. Decimal operands always get decimal."""
    answer_format: Literal["value", "equation", "reversed", "spaced", "steps", "columns"] = "value"
    """value: `181`; equation: the tutorial's `98+83=181`; reversed: the model learns the digits
    least significant first (`-64` as `-46`), so each carry or borrow comes after the digits it
    depends on; spaced: one digit per word (`1 8 1`); reversed and spaced are restored to the
    normal value before anyone sees them (eval, predict, chat, server). steps: a short worked
    product for *, one partial product per digit of the second operand, as Goat does
    (`47*86=47*80+47*6=3760+282=4042`); other operations answer with the value. columns:
    worked steps, each a small fact, then the value after `####`: + and - column by column,
    units first (`196+599=` -> `6+9=15,9+9+1=19,1+5+1=7 #### 795`), decimals aligned on the
    point; integer * as partial products by digit, then their column sums; integer / with
    `division: remainder` as long division (`87/5=` -> `8-5*1=8-5=3,37-5*7=37-35=2 #### 17 R 2`)."""
    borrow: Literal["signed", "inline"] = "signed"
    """Subtraction columns (answer_format: columns): signed writes each column's signed
    difference, then adds the borrowed ten (`3-9=-6+10=4`); inline writes the ten on the
    top digit (`13-9=4`)."""
    carry_in: Literal["fused", "chained"] = "chained"
    """A column's carry or borrow in (answer_format: columns): fused into the column's fact
    (`9+9+1=19`, `4-1-6=-3`) or chained as a fact of its own (`9+9=18+1=19`, `4-6=-2-1=-3`)."""
    sign: Literal["first", "compare", "last"] = "compare"
    """Negative differences (answer_format: columns): first decides the sign before any
    column (`-(281-278):...`); compare first writes the leading columns' signed differences,
    most significant first, until one is not 0 (`2-2=0,7-8=-1:-(281-278):...`); last runs the
    columns until the top one is negative, then swaps."""
    product_steps: Literal["partials", "marked", "placed", "columns"] = "partials"
    """Integer * (answer_format: columns): partials writes one partial product per nonzero
    digit of the second factor, then restates and adds them (`47*86=` -> `7*6=42,4*6=24+4=28,
    7*8=56,4*8=32+5=37;282+3760:...`); marked writes one per digit, a zero digit too, each
    followed by its value in place, and adds the values by columns, nothing restated
    (`7*6=42,4*6=24+4=28|282,7*8=56,4*8=32+5=37|3760:2+0=2,...`); placed is marked with no
    carry added into a product: each one-digit product written whole and added in its
    place by columns (`7*6=42,4*6=24:2+0=2,4+4=8,0+2=2|282,...`); marked and placed put the
    factor with fewer digits on top (`95*6=` -> `6*95:6*5=30|30,...`: one partial per digit
    of the longer factor); columns works the
    product's columns, units first, each the sum of its one-digit products and the carry
    (`7*6=42,4*6=24,7*8=56,24+56=80+4=84,4*8=32+8=40 #### 4042`): fewer tokens, but each
    column's sum is a 2-digit addition."""
    division_steps: Literal["long", "subtract"] = "long"
    """Integer / with a remainder (answer_format: columns): long finds each quotient digit
    in one step (`37-5*7=37-35=2`: the digit, its multiple and the difference at once);
    subtract takes a divisor of two digits or more away while the leading columns say it
    fits, by signed columns, counting the rounds (`57-23:5-2=3:7-3=4,5-2=3|1;34-23:...|2;
    11-23:1-2=-1 #### 2 R 11`), and takes a one-digit divisor from each digit's stage (a
    stage for every digit of the dividend) one fact a round, counted, until a round comes
    out negative (`8-5=3|1,3-5=-2;37-5=32|1,...,7-5=2|7,2-5=-3`): every step a small fact,
    the answer longer."""
    digits_so_far: bool = False
    """+ and - columns (answer_format: columns): after each column, the value's digits up to
    it (`9+4=13|3,1+5=6+1=7|73,8+3=11|1173 #### 1173`), so the value is copied from the line
    before it instead of gathered backwards from every column."""


@dataclass(frozen=True)
class FileDataConfig:
    path: str = ""
    """Training file: a JSON array or JSON lines of alpaca rows (instruction/input/output)."""
    eval_path: str | None = None
    """Held-out file in the same shape; null: the last `eval.max_examples` rows of `path`."""
    columns: dict[str, str] = field(default_factory=dict)
    """Column mapping onto instruction/input/output/system/history, e.g. {instruction: question, output: answer}."""
    on_bad_row: Literal["error", "skip"] = "error"
    """error: stop at the first bad row with its file and row; skip: count and report skipped rows."""
    answer: Literal["auto", "text"] = "auto"
    """auto: a row whose output is one number (8.4, Math23K's ((1)/(3)), 40%), or ends with
    GSM8K's `#### N`, or has a \\boxed{...}, is checked by the value of that answer (read
    from the model's reply the same way); other rows by their text. text: every row by text.
    ROUGE/BLEU are reported for every row either way."""
    sample: int | None = None
    """Use this many rows of `path`, drawn at random (seeded by `eval.seed`) before the held-out
    split, for data sets too large for the machine; null: every row."""


@dataclass(frozen=True)
class DataConfig:
    task: Literal["arithmetic", "file"] = "arithmetic"
    """arithmetic: generated problems, checked by value; file: alpaca/JSON-lines rows."""
    arithmetic: ArithmeticConfig = field(default_factory=ArithmeticConfig)
    """Generator settings for task: arithmetic."""
    file: FileDataConfig = field(default_factory=FileDataConfig)
    """File settings for task: file."""
    train_size: int | None = None
    """Fixed number of training problems; null: a fresh problem every draw (arithmetic only)."""


@dataclass(frozen=True)
class EncodingConfig:
    system_prompt: str | None = ""
    """System message of every conversation. "" (default): an empty system turn, which stops
    templates such as SmolLM2's from injecting their own default (about half the tokens of a
    short problem). null: no system message, the template's default applies."""
    template: str | None = None
    """Built-in chat template: chatglm (legacy ChatGLM-6B), chatml, or plain (prompt, newline, answer, EOS; no role
    markers: for base models without a template); null: the tokenizer's own."""
    max_length: int = 512
    """Longest example in tokens, prompt and answer together."""
    overlong: Literal["truncate", "drop", "error"] = "drop"
    """What to do with a longer example: truncate the prompt from the left, drop it (counted), or stop."""


@dataclass(frozen=True)
class LoraConfig:
    r: int = 16
    """LoRA rank."""
    alpha: float = 32.0
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.0
    """Dropout on the LoRA input."""
    target_modules: str | list[str] = "all-linear"
    """Module names to adapt, or "all-linear" (every linear layer but the output head)."""
    b_lr_ratio: float = 1.0
    """LoRA+: the B matrices learn this many times faster than the A matrices (1: plain LoRA)."""
    layers: int | list[int] | None = None
    """Blocks to adapt. null: all; n > 0: the last n blocks; a list: these block indices.
    Blocks below the lowest adapted one need no backward pass, so a step gets cheaper."""


FREEZE_EXTRA = ("norm", "lm_head")
"""Modules outside the blocks that ``adapter.freeze.extra`` can add."""


@dataclass(frozen=True)
class FreezeConfig:
    layers: int = 2
    """Blocks to train: n > 0 the last n (as the tutorial), n < 0 the first |n|."""
    modules: Literal["mlp", "attention", "all"] = "mlp"
    """Part of each chosen block that trains: mlp (the tutorial's choice), attention, or
    all (both and the block's norms)."""
    extra: list[str] = field(default_factory=list)
    """Modules outside the blocks that train too: "norm" (the final norm), "lm_head"
    (the output projection; with tied embeddings, as SmolLM2, the input embedding too)."""


@dataclass(frozen=True)
class PrefixConfig:
    pre_seq_len: int = 16
    """Virtual tokens: trained keys and values put before every sequence in every layer."""
    prefix_projection: bool = False
    """Reparameterise the prefix through an MLP (embedding -> Linear -> Tanh -> Linear to
    layers x 2 x kv width), as ChatGLM-6B's PrefixEncoder; false: train the keys and
    values directly. The saved adapter holds the computed keys and values either way."""
    encoder_hidden_size: int = 512
    """Hidden width of that MLP."""
    init: Literal["tokens", "random"] = "tokens"
    """tokens: start from the keys and values the model itself computes for pre_seq_len
    vocabulary tokens drawn at random (in-distribution, as Li & Liang's real-word init);
    random: N(0, 1) values. With prefix_projection the encoder starts at random."""


@dataclass(frozen=True)
class AdapterConfig:
    method: str = "lora"
    """Fine-tuning method, a name in ``tasktune.adapters.ADAPTERS``: lora (PEFT), prefix
    (P-Tuning v2; saved in PEFT's format), freeze (some blocks' own weights), full (every
    weight). An unknown name is refused before the model loads, listing the known ones."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """Settings for method: lora."""
    prefix: PrefixConfig = field(default_factory=PrefixConfig)
    """Settings for method: prefix."""
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    """Settings for method: freeze."""


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 300
    """Optimizer steps."""
    max_minutes: float | None = None
    """A time budget for training: when the recent pace (checked every 10% of max_steps,
    the first 10 steps left out) shows max_steps will not fit, the run is shortened to
    the steps that do and the decay still ends at its floor; a later check may give
    steps back. A projected shortfall under 5% of max_steps (less than the pace's own
    drift) keeps the schedule. Training stops at the budget in any case. A run that fits ends on
    max_steps and reproduces exactly. null: steps only."""
    batch_size: int = 16
    """Examples per optimizer step, across all processes and micro-batches (the global batch);
    N processes each train on batch_size / N of them, so the run does not depend on N."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step; batch_size is split into this many."""
    lr: float = 2e-3
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a share of the peak."""
    warmup_steps: int = 20
    """Linear warm-up steps."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warm-up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    adam_beta1: float = 0.9
    """AdamW first-moment decay (as in Hugging Face TrainingArguments)."""
    adam_beta2: float = 0.999
    """AdamW second-moment decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0: off)."""
    save_every: int = 0
    """Save a checkpoint every N steps (0: only at the end)."""
    log_every: int = 10
    """Write a line to train_log.jsonl every N steps."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward: less memory, about 45% slower on a CPU."""
    threads: int | None = None
    """CPU threads for torch; null: all cores."""
    stop_at: float | None = None
    """End training as soon as an in-training evaluation (eval.every) reaches this value of
    eval.metric: exact match as a share (0.99), ROUGE/BLEU x 100 (e.g. 40); null: train to
    max_steps / max_minutes."""
    packing: bool = False
    """Each micro-batch's rows end to end in one sequence, no padding: position ids
    restart with every row, so each row attends only to itself (transformers' packed
    rows); same loss and gradients as padded rows. Checked on the model at the first
    step; a model where packed rows would see each other (a prefix adapter) trains padded."""
    share_prefix: bool = True
    """Run the tokens every row of a batch starts with (the chat template's opening, a
    fixed system prompt) once per batch instead of once per row; same loss and
    gradients, fewer FLOPs. Used in single-process runs without gradient checkpointing."""


@dataclass(frozen=True)
class EvalConfig:
    max_examples: int = 300
    """Held-out examples evaluated before and after training."""
    batch_size: int = 64
    """Rows generated together."""
    base: bool = True
    """Evaluate the untuned base model too, on the same examples."""
    seed: int = 1234
    """Seed of the held-out arithmetic problems (disjoint from training by construction)."""
    every: int = 0
    """Also evaluate every N optimizer steps during training (0: only before and after);
    the best of these is saved as checkpoint-best/. Not counted as training time."""
    every_examples: int | None = None
    """Held-out examples used by the in-training evaluations (the first N); null: all."""
    metric: Literal["auto", "exact_match", "rouge-1", "rouge-2", "rouge-l", "bleu-4"] = "auto"
    """The figure that picks checkpoint-best/, that train.stop_at is compared with, and that
    report.md plots over steps. auto: exact_match when the held-out answers are checked by
    value (arithmetic, GSM8K, Math23K), else rouge-l. Every figure is reported either way."""


@dataclass(frozen=True)
class GenerateConfig:
    max_new_tokens: int | None = None
    """Cap on generated tokens; null: from the task (longest reference + 8, at most 512)."""
    do_sample: bool = False
    """Sample instead of greedy decoding. Off by default so that scores reproduce; when on,
    the settings below are recorded in report.md."""
    temperature: float = 0.7
    """Sampling temperature (do_sample only)."""
    top_p: float = 0.9
    """Nucleus sampling mass (do_sample only)."""
    seed: int = 0
    """Seed of the sampling (do_sample only): the same seed gives the same answers."""


@dataclass(frozen=True)
class RunConfig:
    output_dir: str = "runs/run"
    """Run folder: config, adapter, metrics, predictions and report."""
    model: str = DEFAULT_MODEL
    """Bundled name (smollm2-135m), a local Hugging Face folder, a .gguf file, or a cached hub id."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weight dtype; auto: float32 on CPU, bfloat16 (or float16) on a GPU."""
    quantization: Literal["none", "int8", "int4"] = "none"
    """Quantize the base's block linear layers. CUDA: bitsandbytes int8 or NF4 (double
    quantization), for inference and for lora/prefix training on top (QLoRA). CPU: int8
    weight-only (torchao) for eval, predict and chat; int4 and training need CUDA."""
    trust_remote_code: bool = False
    """Run Python code shipped with the model (off unless you trust the source). A run
    folder that sets it is used by eval, predict, chat, serve and export only with
    --trust-remote-code on their command line."""
    seed: int = 0
    """Seed of weights init, data order and training problems."""
    data: DataConfig = field(default_factory=DataConfig)
    """Stage 1: where examples come from (a generated task or a file) and the held-out split."""
    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    """Stage 2: the chat template, system prompt and length limits of a row."""
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    """Stage 4: the fine-tuning method and its settings."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Stage 5: the training loop (steps, batch, schedule, precision, checkpoints)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Stage 8: held-out evaluation before, during and after training."""
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    """Stage 7: decoding of answers (greedy unless sampling is asked for) and its cap."""


def field_docs(cls: type) -> dict[str, str]:
    """Map each field of a config dataclass to the docstring written under it."""
    source = inspect.getsource(cls)
    tree = ast.parse(source)
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr):
            if isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                docs[node.target.id] = " ".join(nxt.value.value.split())  # type: ignore[attr-defined]
    return docs


def _coerce(value: Any, tp: Any, where: str, problems: list[str]) -> Any:
    """Check ``value`` against type hint ``tp``; returns the converted value or None."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errs: list[str] = []
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            out = _coerce(value, arg, where, trial)
            if not trial:
                return out
            errs.extend(trial)
        problems.append(errs[0] if errs else f"{where}: invalid value {value!r}")
        return None
    if origin is Literal:
        if value not in args:
            near = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            problems.append(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}{hint}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
            return None
        return _build(tp, value, where + ".", problems)
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {value!r}")
            return None
        kt, vt = args
        return {_coerce(k, kt, f"{where}.{k}", problems): _coerce(v, vt, f"{where}.{k}", problems) for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            problems.append(f"{where}: expected a list, got {value!r}")
            return None
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                problems.append(f"{where}: expected {len(args)} values, got {list(value)!r}")
                return None
            return tuple(_coerce(v, t, f"{where}[{i}]", problems) for i, (v, t) in enumerate(zip(value, args)))
        inner = args[0]
        return origin(_coerce(v, inner, f"{where}[{i}]", problems) for i, v in enumerate(value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML reads 2e-3 as a string (it wants 2.0e-3)
            return float(value)
        except ValueError:
            pass
    if tp is Any:
        return value
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        problems.append(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return None
    return value


def _build(cls: type, raw: dict[str, Any], prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"; did you mean {prefix}{near[0]!r}?" if near else f"; valid keys: {', '.join(names)}"
            problems.append(f"unknown key {prefix}{key!r}{hint}")
            continue
        kwargs[key] = _coerce(value, hints[key], prefix + key, problems)
    return cls(**kwargs) if not problems else None


FILE_KEYS = ("data.file.path", "data.file.eval_path")
"""Settings that name a file: a relative one is read from the config file's folder (from
the current folder when given as an override) and stored absolute, so a run's saved
config.yaml finds its data from wherever `tasktune eval --run` is called."""


def _anchored(value: Any, base: Path) -> Any:
    if isinstance(value, str) and value and "\0" not in value and not Path(value).expanduser().is_absolute():
        return str((base / value).resolve())
    return value  # not a path string: the type and value checks report it


def _anchor_files(tree: dict[str, Any], base: Path) -> None:
    for dotted in FILE_KEYS:
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            node[leaf] = _anchored(node[leaf], base)


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _validate(cfg: RunConfig) -> list[str]:
    """Cross-field checks that types alone cannot express."""
    p: list[str] = []
    t, a = cfg.train, cfg.data.arithmetic
    if t.max_steps < 1:
        p.append(f"train.max_steps: must be at least 1, got {t.max_steps}")
    if t.max_minutes is not None and t.max_minutes <= 0:
        p.append(f"train.max_minutes: must be positive (or null), got {t.max_minutes}")
    if t.batch_size < 1 or t.grad_accum < 1 or t.batch_size % t.grad_accum:
        p.append(f"train.batch_size ({t.batch_size}) must be a positive multiple of train.grad_accum ({t.grad_accum})")
    if t.lr <= 0:
        p.append(f"train.lr: must be positive, got {t.lr}")
    g = cfg.generate
    if g.do_sample and not (g.temperature > 0 and 0 < g.top_p <= 1):
        p.append(f"generate: temperature must be > 0 and top_p within (0, 1], got {g.temperature} and {g.top_p}")
    for key in ("adam_beta1", "adam_beta2"):
        if not 0.0 <= getattr(t, key) < 1.0:
            p.append(f"train.{key}: must be within [0, 1), got {getattr(t, key)}")
    if cfg.adapter.prefix.pre_seq_len < 1 or cfg.adapter.prefix.encoder_hidden_size < 1:
        p.append("adapter.prefix.pre_seq_len and encoder_hidden_size must be at least 1")
    fz = cfg.adapter.freeze
    if fz.layers == 0:
        p.append("adapter.freeze.layers: the last n blocks (n > 0) or the first |n| (n < 0), not 0")
    unknown = sorted(set(fz.extra) - set(FREEZE_EXTRA))
    if unknown:
        p.append(f"adapter.freeze.extra: unknown module(s) {unknown}; valid: {', '.join(FREEZE_EXTRA)}")
    layers = cfg.adapter.lora.layers
    if isinstance(layers, int) and layers < 1 or isinstance(layers, list) and (not layers or min(layers) < 0):
        p.append(f"adapter.lora.layers: a count of last blocks >= 1 or a non-empty list of block indices >= 0, got {layers!r}")
    if t.stop_at is not None and cfg.eval.metric == "exact_match" and not 0.0 < t.stop_at <= 1.0:
        p.append(f"train.stop_at: an exact match within (0, 1], e.g. 0.99, got {t.stop_at}")
    if t.stop_at is not None and not 0.0 < t.stop_at <= 100.0:
        p.append(f"train.stop_at: exact match within (0, 1] (e.g. 0.99) or ROUGE/BLEU within (0, 100], got {t.stop_at}")
    if t.stop_at is not None and cfg.eval.every < 1:
        p.append("train.stop_at: needs evaluations during training; set eval.every (steps), e.g. eval.every=50")
    if cfg.eval.every < 0 or cfg.eval.every_examples is not None and cfg.eval.every_examples < 1:
        p.append("eval.every must be >= 0 and eval.every_examples >= 1 (or null)")
    if cfg.eval.max_examples < 1:
        p.append(f"eval.max_examples: must be at least 1 (the held-out set proves learning), got {cfg.eval.max_examples}")
    for name, ops in (("ops", a.ops), ("train_ops", a.train_ops)):
        if ops is None:
            continue
        bad_ops = [op for op in ops if op not in "+-*/" or len(op) != 1]
        if bad_ops:
            p.append(f"data.arithmetic.{name}: unknown operation(s) {bad_ops}; use +, -, * and /")
        if not ops or any(w < 0 for w in ops.values()) or sum(ops.values()) <= 0:
            p.append(f"data.arithmetic.{name}: give each operation a weight >= 0, at least one positive")
    for name, rng in (("digits", a.digits), ("digits_b", a.digits_b)):
        if rng is not None and not 1 <= rng[0] <= rng[1] <= 18:
            p.append(f"data.arithmetic.{name}: need 1 <= low <= high <= 18, got {list(rng)}")
    for name in ("decimal_share", "train_close_share"):
        if not 0.0 <= getattr(a, name) <= 1.0:
            p.append(f"data.arithmetic.{name}: must be within [0, 1], got {getattr(a, name)}")
    if cfg.data.task == "file" and not cfg.data.file.path:
        p.append("data.file.path: required when data.task is 'file'")
    if cfg.data.task == "file" and cfg.data.train_size is not None:
        p.append("data.train_size: only for data.task 'arithmetic' (a file has its own size)")
    if cfg.encoding.max_length < 8:
        p.append(f"encoding.max_length: must be at least 8, got {cfg.encoding.max_length}")
    return p


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config, apply ``key=value`` overrides, and validate it.

    Args:
        path: YAML file; None starts from the defaults.
        overrides: Dotted assignments such as ``train.lr=1e-3``; values are parsed as YAML.

    Returns:
        The frozen, validated configuration.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: unknown keys, wrong types or invalid values (all of them, at once).
    """
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise ConfigError(source, [f"not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"]) from None
        except yaml.YAMLError as exc:
            raise ConfigError(source, [f"not valid YAML: {exc}"]) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(source, ["the top level must be a mapping of keys to values"])
        raw = loaded or {}
        _anchor_files(raw, p.resolve().parent)
    problems: list[str] = []
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            problems.append(f"override {item!r}: expected key=value, e.g. train.max_steps=100")
            continue
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except (yaml.YAMLError, ValueError) as exc:  # ValueError: a YAML date or tag that does not parse
            reason = str(getattr(exc, "problem", None) or exc).strip()
            problems.append(f"override {item!r}: the value {text!r} is not valid YAML ({reason}); quote a string "
                            f"(e.g. {key.strip()}='\"{text}\"') or write a list as [a, b]")
            continue
        _set_path(raw, key.strip(), _anchored(value, Path.cwd()) if key.strip() in FILE_KEYS else value)
    if problems:
        raise ConfigError(source, problems)
    cfg = _build(RunConfig, raw, "", problems)
    if problems:
        raise ConfigError(source, problems)
    problems = _validate(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict of a config (tuples as lists), ready for YAML or JSON."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))
