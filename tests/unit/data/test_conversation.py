"""Training rows inside conversations (data.context) and the robustness suites built
from the held-out set (tasktune.data.suites)."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from decimal import Decimal
from itertools import islice

import pytest

from tasktune.config import ArithmeticConfig, ContextConfig, DataConfig
from tasktune.data import Example, build_datasets
from tasktune.data.arithmetic import ZH_PAIRS, Problem, solve
from tasktune.data.conversation import (
    EVAL_OTHER_EXCHANGES,
    EVAL_SYSTEM_PROMPTS,
    OTHER_EXCHANGES,
    SYSTEM_PROMPTS,
    in_conversations,
)
from tasktune.data.suites import build_suites

DEMO = ArithmeticConfig(
    ops={"+": 0.5, "-": 0.5}, digits=(1, 2), prompt_format="bare", answer_format="columns", sign="first",
)
BARE = re.compile(r"^(\d+)([-+])(\d+)=$")


def _data(**context) -> DataConfig:
    return DataConfig(task="arithmetic", arithmetic=DEMO, context=ContextConfig(**context))


def _operands(prompt: str) -> tuple[str, str, str]:
    found = BARE.match(prompt) or re.match(r"^\S+: (\d+)([-+])(\d+)= \S+:$", prompt)
    assert found, prompt
    return found.group(1), found.group(2), found.group(3)


def test_no_context_leaves_the_stream_exactly_as_it_was():
    plain = list(islice(build_datasets(_data(), 50, 1, 0).train, 200))
    off = list(islice(build_datasets(_data(share=0.0, turns=(2, 2)), 50, 1, 0).train, 200))
    assert plain == off
    assert all(not e.history and e.system is None for e in plain)


def test_rows_in_conversations_hold_task_turns_plain_answers_other_exchanges_and_system_prompts():
    data = build_datasets(_data(share=1.0, turns=(1, 3), plain_share=0.5, other_share=0.2, system_share=0.5), 100, 1, 0)
    held_out = {e.prompt for e in data.eval}
    rows = list(islice(data.train, 400))
    kinds = {"worked": 0, "plain": 0, "other": 0}
    for row in rows:
        assert 1 <= len(row.history) <= 3
        assert row.system is None or row.system in SYSTEM_PROMPTS
        flags = row.learn_history or (False,) * len(row.history)
        assert len(flags) == len(row.history)
        for (user, answer), learned in zip(row.history, flags):
            if (user, answer) in OTHER_EXCHANGES:
                kinds["other"] += 1
                assert not learned
                continue
            assert user not in held_out, "an earlier turn is a held-out problem"
            a, op, b = _operands(user)
            value = solve(Problem(Decimal(a), op, Decimal(b)), 2)
            if " #### " in answer:  # worked: trained on
                kinds["worked"] += 1
                assert learned and answer.endswith(f" #### {value}")
            else:  # plain: the value, never trained on
                kinds["plain"] += 1
                assert answer == str(value) and not learned
    assert all(k > 50 for k in kinds.values()), kinds
    assert sum(r.system is not None for r in rows) > 100


def test_learn_earlier_off_trains_the_last_answer_only():
    rows = list(islice(build_datasets(_data(share=1.0, learn_earlier=False), 50, 1, 0).train, 100))
    assert all(r.history for r in rows)
    assert not any(any(r.learn_history) for r in rows)


def test_rows_in_conversations_are_the_same_for_the_same_seed_and_differ_for_another():
    first = list(islice(build_datasets(_data(share=0.5), 50, 1, 0).train, 100))
    again = list(islice(build_datasets(_data(share=0.5), 50, 1, 0).train, 100))
    other = list(islice(build_datasets(_data(share=0.5), 50, 1, 7).train, 100))
    assert first == again
    assert first != other


def test_training_prompt_styles_follow_their_weights():
    cfg = DataConfig(arithmetic=replace(DEMO, train_prompt_formats={"bare": 1, "zh_pairs": 1}))
    rows = list(islice(build_datasets(cfg, 50, 1, 0).train, 400))
    zh = [r for r in rows if not BARE.match(r.prompt)]
    assert 120 < len(zh) < 280
    assert {p.split(":")[0] for p in (r.prompt for r in zh)} <= {ask for ask, _ in ZH_PAIRS}
    assert all(r.prompt.endswith(":") for r in zh)


def test_the_evaluation_lists_are_never_trained_on():
    assert not set(EVAL_OTHER_EXCHANGES) & set(OTHER_EXCHANGES)
    assert not set(EVAL_SYSTEM_PROMPTS) & set(SYSTEM_PROMPTS)


def _suites(cfg: DataConfig, names=("turns_1", "turns_3", "system", "styles", "longer"), n=120):
    data = build_datasets(cfg, n, 1234, 0)
    return data, build_suites(cfg, names, data.eval, data.problems, 1234)


def test_suites_ask_every_held_out_problem_again_and_never_leak_its_answer():
    data, suites = _suites(_data())
    assert list(suites) == ["turns_1", "turns_3", "system", "style_zh_pairs", "longer"]
    held_out = {e.prompt for e in data.eval}
    for name in ("turns_1", "turns_3", "system", "style_zh_pairs"):
        assert len(suites[name]) == len(data.eval)
        for asked, original in zip(suites[name], data.eval):
            assert (asked.answer, asked.category, asked.response) == (original.answer, original.category, original.response)
    for turns, name in ((1, "turns_1"), (3, "turns_3")):
        for asked, original in zip(suites[name], data.eval):
            assert asked.prompt == original.prompt and len(asked.history) == turns
            for user, _ in asked.history:
                # Never the question itself, nor any other held-out problem.
                assert user not in held_out
    # One earlier turn: answered worked and plain in alternate rows.
    answers = [a for e in suites["turns_1"] for _, a in e.history]
    assert sum(" #### " in a for a in answers) == len(answers) // 2
    other = sum(turn in EVAL_OTHER_EXCHANGES for e in suites["turns_3"] for turn in e.history)
    assert 0.1 * 3 * len(data.eval) < other < 0.3 * 3 * len(data.eval)
    assert {e.system for e in suites["system"]} == set(EVAL_SYSTEM_PROMPTS)


def test_the_style_suite_asks_the_same_problem_in_the_tutorials_pairs():
    data, suites = _suites(_data(), ("styles",))
    for asked, original in zip(suites["style_zh_pairs"], data.eval):
        ask, rest = asked.prompt.split(": ", 1)
        problem, reply = rest.rsplit(" ", 1)
        assert (ask, reply.rstrip(":")) in ZH_PAIRS
        assert problem == original.prompt


def test_the_longer_suite_has_one_digit_more_than_any_training_operand():
    cfg = replace(_data(), arithmetic=replace(DEMO, digits=(1, 3)))
    data, suites = _suites(cfg, ("longer",))
    assert len(suites["longer"]) == len(data.eval)
    for e in suites["longer"]:
        a, op, b = _operands(e.prompt)
        assert len(a) == len(b) == 4 and a[0] != "0" and b[0] != "0"
        assert e.answer == str(solve(Problem(Decimal(a), op, Decimal(b)), 2))
        assert e.category.endswith("_4d4d")


def test_a_file_task_builds_its_turn_suites_from_its_own_rows(tmp_path):
    rows = [Example(prompt=f"question {i}", response=f"answer {i}", answer=str(i)) for i in range(5)]
    cfg = DataConfig(task="file")
    suites = build_suites(cfg, ("turns_1", "turns_3", "system", "styles", "longer"), rows, None, 1)
    assert list(suites) == ["turns_1", "turns_3", "system"]
    for asked, original in zip(suites["turns_3"], rows):
        assert all(user != original.prompt and user.startswith("question") or (user, a) in EVAL_OTHER_EXCHANGES
                   for user, a in asked.history)
    one_row = build_suites(cfg, ("turns_1", "system"), rows[:1], None, 1)
    assert list(one_row) == ["system"]


@pytest.mark.parametrize("bad", [{"share": 1.5}, {"turns": (0, 2)}, {"turns": (3, 1)}, {"plain_share": -0.1}])
def test_bad_context_settings_are_named(bad):
    problems = ContextConfig(**bad).problems()
    assert problems and all(p.startswith("data.context.") for p in problems)


def test_no_earlier_turn_is_a_held_out_problem_its_twin_or_states_the_asked_answer():
    cfg = _data()
    data = build_datasets(cfg, 300, 1234, 0)
    # Suites of the first 100 held-out: earlier turns avoid all 300 and their commutative twins.
    suites = build_suites(cfg, ("turns_1", "turns_3"), data.eval[:100], data.problems[:100], 1234, every=data.problems)
    twins = {e.prompt for e in data.eval} | {f"{b}+{a}=" for a, op, b in (_operands(e.prompt) for e in data.eval) if op == "+"}
    for rows in suites.values():
        for asked in rows:
            for user, answer in asked.history:
                assert user not in twins
                if (user, answer) not in EVAL_OTHER_EXCHANGES:
                    a, op, b = _operands(user)
                    assert str(solve(Problem(Decimal(a), op, Decimal(b)), 2)) != asked.answer


def test_a_small_problem_space_still_gets_its_suites():
    cfg = DataConfig(arithmetic=ArithmeticConfig(ops={"+": 1}, digits=(1, 1), answer_format="columns"))
    data = build_datasets(cfg, 60, 1234, 0)  # 60 of the 100 problems held out
    suites = build_suites(cfg, ("turns_1", "turns_3", "longer"), data.eval, data.problems, 1234)
    assert [len(v) for v in suites.values()] == [60, 60, 60]


def test_a_row_never_follows_its_own_question_and_a_files_own_turns_stay_before_it():
    own = Example(prompt="and in French?", response="Bonjour", history=(("Say hello", "Hello"),))
    task = Example(prompt="2+2=", response="4", answer="4")
    rows = [own, own, task, task, task]  # a small set: the next example is often the question itself
    stream = in_conversations(iter(rows * 50), ContextConfig(share=1.0, turns=(1, 1), other_share=0.0), random.Random(0))
    for row in islice(stream, 20):
        assert row.prompt not in [user for user, _ in row.history]
        if row.prompt == own.prompt:
            assert row.history[-1] == ("Say hello", "Hello")  # the row's own turn right before its question
            assert not row.learn_history or row.learn_history[-1] is False


def test_a_set_of_one_question_gets_no_earlier_turn_of_it_and_does_not_hang():
    same = Example(prompt="Say seven", response="7")
    stream = in_conversations(iter([same] * 10_000), ContextConfig(share=1.0, other_share=0.0), random.Random(0))
    rows = list(islice(stream, 5))
    assert all(not r.history for r in rows)
