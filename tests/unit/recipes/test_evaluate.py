"""evaluate_examples: how a generated answer is scored."""

from __future__ import annotations

from tasktune.config import RunConfig
from tasktune.data.example import Example
from tasktune.encoding import ChatEncoder
from tasktune.generate import Completion
from tasktune.recipes import common
from tasktune.recipes.common import Loaded, evaluate_examples


def test_an_answer_cut_off_by_the_token_cap_is_not_credited(tokenizer, monkeypatch):
    # Three by-value rows whose reference is 3, and one text row. The second answer is a
    # loop the cap cut off, which happens to end on 3 (seen on GSM8K); it must not count.
    examples = [Example(prompt=f"q{i}", response="3", answer="3", category="c") for i in range(3)]
    examples.append(Example(prompt="q3", response="the same text", answer=None, category="t"))
    done = [Completion("3", 2, "stop"), Completion("2 - 3 = 2 - 3 = 3", 9, "length"), Completion("4", 2, "stop"),
            Completion("the same text", 4, "length")]
    monkeypatch.setattr(common, "generate_completions", lambda *args, **kwargs: done)
    loaded = Loaded(RunConfig(), None, tokenizer, ChatEncoder(tokenizer, template="chatml"))
    summary, rows = evaluate_examples(loaded, examples, "eval")
    assert [r["correct"] for r in rows] == [True, False, False, True]  # text rows: compared as text
    assert [r["finish_reason"] for r in rows] == ["stop", "length", "stop", "length"]
    assert summary["cut_at_cap"] == 2 and summary["exact_match"] == 0.5
