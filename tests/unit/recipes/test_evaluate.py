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


def test_worked_answers_get_every_step_checked(tokenizer, monkeypatch):
    ref = "6+9=15,9+9=18+1=19,1+5=6+1=7 #### 795"
    examples = [Example(prompt="196+599=", response=ref, answer="795", category="add"),
                Example(prompt="196+599=", response=ref, answer="795", category="add"),
                Example(prompt="3+4=", response="7", answer="7", category="plain")]
    done = [Completion(ref, 30, "stop"), Completion("6+9=15,9+9=18,1+5=6+1=7 #### 785", 28, "stop"), Completion("7", 1, "stop")]
    monkeypatch.setattr(common, "generate_completions", lambda *args, **kwargs: done)
    loaded = Loaded(RunConfig(), None, tokenizer, ChatEncoder(tokenizer, template="chatml"))
    summary, rows = evaluate_examples(loaded, examples, "eval")
    assert [r["correct"] for r in rows] == [True, False, True]
    assert rows[1]["first_wrong"] == {"step": 2, "kind": "carry", "wrote": "9+9=18", "expected": "9+9=18+1=19"}
    assert (rows[0]["steps"], rows[0]["steps_right"], rows[0]["first_wrong"]) == (3, 3, None)
    assert "steps" not in rows[2]  # a plain value has no steps to check
    assert summary["step_accuracy"] == 5 / 6 and summary["all_steps_right"] == 0.5
    assert summary["first_wrong"] == {"carry": {"2": 1}}
