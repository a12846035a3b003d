"""Stage 1 settings, ``data``: a generated arithmetic task or a file of alpaca rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["ArithmeticConfig", "FileDataConfig", "ContextConfig", "DataConfig"]

PROMPT_FORMATS = ("bare", "zh_pairs")
"""The arithmetic task's prompt styles."""


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
    train_point_share: float = 0.0
    """Share of training + and - problems of integers whose operands get a decimal point at a
    random place, each keeping its digits (`351+793=` -> `3.51+79.3=`): aligned on the point,
    their columns run longer than any operand (351+7930: four), so how many columns a problem
    has is not tied to how many digits an operand has. Held-out problems never."""
    train_pad_share: float = 0.0
    """Share of the other training + and - problems of integers (those not given a point)
    written with leading zeros, each operand to its own width of up to two digits more than
    the longest operand (`351+793=` -> `0351+00793=`; restated with its zeros, `035+0079:`, the
    columns the values'): the strings a worked answer copies then run longer than any
    operand's value, so how long a copy is is not tied to how many digits an operand has.
    Trained on up to 3 digits (with points 0.5), 0.6 took 4-digit problems from 45% to 80%
    (BENCHMARKS.md, issue #29). Held-out problems never."""
    decimal_share: float = 0.0
    """Share of problems with decimal operands (0: integers only, 1: decimals only)."""
    decimal_places: int = 2
    """Decimal places of decimal operands (canonical form drops trailing zeros)."""
    division_places: int = 2
    """Places the exact quotient is rounded to (half up); canonical: 8.4, never 8.40."""
    prompt_format: Literal["bare", "zh_pairs"] = "bare"
    """bare: `98+83=`; zh_pairs: one of the tutorial's eight Chinese pairs, e.g. `口算: 98+83= 解:`.
    The held-out problems are asked this way; the robustness suites ask them in the other style too."""
    train_prompt_formats: dict[str, float] | None = None
    """Prompt styles of training problems and their shares, e.g. {bare: 0.8, zh_pairs: 0.2}, so
    the task is learned however it is asked; null: every training problem as `prompt_format`."""
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

    restate: bool = False
    """+ and - columns (answer_format: columns): before each column, what is left of both operands,
    the whole problem before the first (`3518+7937=` -> `3518+7937:8+7=15,351+793:1+3=4+1=5,
    35+79:5+9=14,3+7:3+7=10+1=11,0+0:0+0=0+1=1 #### 11455`): each column's digits sit beside a
    restatement, + runs one column past both operands (restated `0+0`) and - ends on a written
    `0-0`. Meant to carry the procedure to longer operands. Trained on up to 3 digits, 160 steps:
    alone 9-20% on 4 digits, with `train_point_share` 0.3-0.5 42-70%, the 3-digit figure 91-97%,
    with `train_pad_share` 0.6 as well 80% (3 digits 98%) (BENCHMARKS.md, issue #29). Decimals are restated aligned on the point (`12.3+4.56=` ->
    `1230+456:...`)."""

    def problems(self, where: str = "data.arithmetic") -> list[str]:
        """What the types cannot say: weights, digit ranges and shares out of range."""
        p: list[str] = []
        for name, ops in (("ops", self.ops), ("train_ops", self.train_ops)):
            if ops is None:
                continue
            bad_ops = [op for op in ops if op not in "+-*/" or len(op) != 1]
            if bad_ops:
                p.append(f"{where}.{name}: unknown operation(s) {bad_ops}; use +, -, * and /")
            if not ops or any(w < 0 for w in ops.values()) or sum(ops.values()) <= 0:
                p.append(f"{where}.{name}: give each operation a weight >= 0, at least one positive")
        for name, rng in (("digits", self.digits), ("digits_b", self.digits_b)):
            if rng is not None and not 1 <= rng[0] <= rng[1] <= 18:
                p.append(f"{where}.{name}: need 1 <= low <= high <= 18, got {list(rng)}")
        styles = self.train_prompt_formats
        if styles is not None and (set(styles) - set(PROMPT_FORMATS) or not styles or any(w < 0 for w in styles.values())
                                   or sum(styles.values()) <= 0):
            p.append(f"{where}.train_prompt_formats: weights >= 0 (at least one positive) of {', '.join(PROMPT_FORMATS)}, "
                     f"got {styles}")
        if self.restate and (self.answer_format != "columns" or self.sign == "last"):
            p.append(f"{where}.restate: for + and - columns (answer_format: columns, sign: first or compare); "
                     f"got answer_format {self.answer_format}, sign {self.sign}")
        for name in ("decimal_share", "train_close_share", "train_point_share", "train_pad_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                p.append(f"{where}.{name}: must be within [0, 1], got {getattr(self, name)}")
        return p


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
class ContextConfig:
    share: float = 0.0
    """Share of training rows asked inside a conversation (after earlier turns, under a system
    prompt), as chat clients send them: a model trained on lone questions only reads its digits
    from where a lone question puts them, and answers later questions of a chat wrongly. 0: every
    row a lone question."""
    turns: tuple[int, int] = (1, 3)
    """Earlier turns before the question of such a row, drawn uniformly within [low, high]."""
    plain_share: float = 0.5
    """Of the earlier turns of the task, the share answered with the plain value (`85`) instead of
    the trained answer (worked steps): what another assistant, or the user, wrote before."""
    other_share: float = 0.2
    """Share of earlier turns that are an exchange unrelated to the task (a greeting, a question
    about something else), from a built-in list kept apart from the evaluation's."""
    system_share: float = 0.25
    """Of the rows asked inside a conversation, the share under a system prompt (a built-in list
    of common ones, kept apart from the evaluation's)."""
    learn_earlier: bool = True
    """Train on the earlier turns of the task answered in the trained form too, not only on the
    last answer (plain values and unrelated exchanges are never trained on): each row then
    teaches several answers, each in a longer conversation, for about the tokens of that many
    lone rows. false: the loss on the last answer only (the earlier turns cost their tokens and
    teach nothing directly)."""

    def problems(self, where: str = "data.context") -> list[str]:
        p = [f"{where}.{name}: must be within [0, 1], got {getattr(self, name)}"
             for name in ("share", "plain_share", "other_share", "system_share") if not 0.0 <= getattr(self, name) <= 1.0]
        if not 1 <= self.turns[0] <= self.turns[1] <= 16:
            p.append(f"{where}.turns: need 1 <= low <= high <= 16, got {list(self.turns)}")
        return p


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
    context: ContextConfig = field(default_factory=ContextConfig)
    """Training rows inside conversations: earlier turns and system prompts (for both tasks;
    a file's earlier turns are drawn from its other rows)."""

    def problems(self) -> list[str]:
        """The generator's problems, and file settings that do not fit ``task``."""
        p = self.arithmetic.problems() + self.context.problems()
        if self.task == "file" and not self.file.path:
            p.append("data.file.path: required when data.task is 'file'")
        if self.task == "file" and self.train_size is not None:
            p.append("data.train_size: only for data.task 'arithmetic' (a file has its own size)")
        return p
