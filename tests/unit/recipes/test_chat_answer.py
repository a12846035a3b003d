"""chat: a worked answer's value is shown on a line of its own under the steps."""

from __future__ import annotations

from tasktune.recipes.chat import answer_line


def test_a_worked_answer_gets_its_value_line():
    assert answer_line("3-9=-6+10=4,4-2=2-1=1,8-1=7 #### 714") == "answer: 714"
    assert answer_line("8-5*1=8-5=3,37-5*7=37-35=2 #### 17 R 2") == "answer: 17 R 2"


def test_other_replies_get_none():
    assert answer_line("714") is None  # a plain value is its own answer
    assert answer_line("Hello! How can I help?") is None
    assert answer_line("#### 5") is None  # no steps: nothing to set apart
    assert answer_line("1+1=2 ####") is None  # cut off before its value
