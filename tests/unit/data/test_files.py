"""tasktune.data.files: alpaca-shaped JSON / JSON lines, every bad row named as FILE:ROW."""

from __future__ import annotations

import json
import re

import pytest
from conftest import SHARED_DATA

from tasktune.data.example import Example
from tasktune.data.files import DataFileError, load_file

GOOD = [
    {"instruction": "1+1=", "input": "", "output": "2"},
    {"instruction": "Translate", "input": "猫", "output": "cat", "system": "Be brief."},
    {"instruction": "And 2+2?", "output": "4", "history": [["1+1=", "2"]]},
]
EXPECTED = [
    Example(prompt="1+1=", response="2", answer="2"),
    Example(prompt="Translate\n猫", response="cat", system="Be brief."),
    Example(prompt="And 2+2?", response="4", history=(("1+1=", "2"),), answer="4"),
]


def _jsonl(rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows)


def _write(tmp_path, name: str, text: str, encoding: str = "utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_json_array_and_jsonl_give_the_same_examples(tmp_path):
    arr = load_file(_write(tmp_path, "a.json", json.dumps(GOOD, ensure_ascii=False, indent=1)))
    lines = load_file(_write(tmp_path, "a.jsonl", _jsonl(GOOD)))
    assert arr.examples == lines.examples == EXPECTED
    assert arr.total_rows == lines.total_rows == 3
    assert arr.bad_rows == lines.bad_rows == []


@pytest.mark.parametrize("as_array", [True, False])
def test_utf8_bom_and_crlf_are_valid(tmp_path, as_array):
    text = json.dumps(GOOD, ensure_ascii=False, indent=1) if as_array else _jsonl(GOOD)
    text = text.replace("\n", "\r\n")
    path = _write(tmp_path, "bom.json", text, encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert load_file(path).examples == EXPECTED


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x1c"])
def test_json_lines_split_only_at_newlines(tmp_path, separator):
    """JSON writers leave these unescaped inside strings; they do not end a line (found by the fuzz tests)."""
    rows = [{"instruction": f"a{separator}b", "output": "c"}, {"instruction": "d", "output": "e"}]
    loaded = load_file(_write(tmp_path, "sep.jsonl", _jsonl(rows)))
    assert [e.prompt for e in loaded.examples] == [f"a{separator}b", "d"] and loaded.total_rows == 2


def test_numeric_output_and_number_answers(tmp_path):
    rows = [{"instruction": "q", "output": 8.4}, {"instruction": "q", "output": "8.40"}, {"instruction": "q", "output": "1,234"}]
    exs = load_file(_write(tmp_path, "n.jsonl", _jsonl(rows))).examples
    assert [e.response for e in exs] == ["8.4", "8.40", "1,234"]
    assert [e.answer for e in exs] == ["8.4", "8.4", "1234"]  # canonical value for the verifier


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"instruction": "x", "output": ', r"invalid JSON"),
        ({"instruction": "x"}, r'missing "output"'),
        ({"instruction": 5, "output": "y"}, r'"instruction" must be a string, got int'),
        ({"instruction": "x", "output": "y", "system": ["s"]}, r'"system" must be a string, got list'),
        ({"instruction": "x", "output": "y", "history": [["only one"]]}, r'"history" must be a list of \[user, assistant\] string pairs'),
        ({"instruction": "x", "output": "y", "history": "a"}, r'"history" must be a list'),
        ({"instruction": " ", "input": "", "output": "y"}, r'empty prompt: "instruction" and "input" are both blank'),
        ({"instruction": "x", "output": "  "}, r'empty "output"'),
        ('["not", "an", "object"]', r"expected a JSON object"),
    ],
    ids=["json", "missing-output", "non-string", "system-type", "history-pair", "history-type", "empty-prompt", "empty-output", "not-object"],
)
def test_bad_row_is_named_by_file_and_row(tmp_path, bad_line, message):
    path = _write(tmp_path, "d.jsonl", _jsonl([GOOD[0], GOOD[1], bad_line, GOOD[2]]))
    with pytest.raises(DataFileError) as info:
        load_file(path)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{path}:3: ")
    assert re.search(message, info.value.problems[0]), info.value.problems[0]
    assert isinstance(info.value, ValueError)


def test_json_array_rows_are_numbered_by_element(tmp_path):
    rows = [GOOD[0], GOOD[1], GOOD[2], {"instruction": "x"}]
    path = _write(tmp_path, "d.json", json.dumps(rows))
    with pytest.raises(DataFileError, match=rf'^{path}:4: missing "output"$'):
        load_file(path)


def test_all_bad_rows_are_reported_together_in_row_order(tmp_path):
    lines = [{"instruction": "x"}, GOOD[0], "{broken", GOOD[1], {"instruction": "", "output": "y"}]
    path = _write(tmp_path, "d.jsonl", _jsonl(lines))
    with pytest.raises(DataFileError) as info:
        load_file(path)
    assert [p.split(": ", 1)[0] for p in info.value.problems] == [f"{path}:1", f"{path}:3", f"{path}:5"]


def test_skip_keeps_good_rows_and_reports_skipped(tmp_path):
    lines = [GOOD[0], {"instruction": "x"}, "", GOOD[1], "{broken", GOOD[2]]  # line 3 is blank: not a row
    path = _write(tmp_path, "d.jsonl", _jsonl(lines))
    result = load_file(path, on_bad_row="skip")
    assert result.examples == EXPECTED
    assert result.total_rows == 5
    assert result.bad_rows == [f'{path}:2: missing "output"', f"{path}:5: invalid JSON (Expecting property name enclosed in double quotes, column 2)"]


def test_skip_with_no_good_row_still_fails(tmp_path):
    path = _write(tmp_path, "d.jsonl", _jsonl([{"instruction": "x"}]))
    with pytest.raises(DataFileError, match=r":1: missing"):
        load_file(path, on_bad_row="skip")


def test_column_mapping_gsm8k_style(tmp_path):
    rows = [{"question": "How many?", "answer": "2 + 2 = <<2+2=4>>4\n#### 4"}, {"question": "Sum?", "answer": "7"}]
    path = _write(tmp_path, "g.jsonl", _jsonl(rows))
    exs = load_file(path, columns={"instruction": "question", "output": "answer"}).examples
    assert exs[0] == Example(prompt="How many?", response=rows[0]["answer"], answer="4")  # GSM8K's #### N
    assert exs[1] == Example(prompt="Sum?", response="7", answer="7")
    as_text = load_file(path, columns={"instruction": "question", "output": "answer"}, answer="text").examples
    assert [e.answer for e in as_text] == [None, None]
    # Unmapped, the same file has no "instruction": the error says which column is missing.
    with pytest.raises(DataFileError, match=r':1: missing "instruction"'):
        load_file(path)
    with pytest.raises(DataFileError, match=r':1: missing "query" \(mapped to instruction\)'):
        load_file(path, columns={"instruction": "query", "output": "answer"})


def test_whole_file_problems(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_file(tmp_path / "nope.json")
    with pytest.raises(DataFileError, match=r"b\.json:2: invalid JSON"):
        load_file(_write(tmp_path, "b.json", '[\n{"instruction": }\n]'))
    with pytest.raises(DataFileError, match="not UTF-8"):
        load_file(_write(tmp_path, "c.jsonl", '{"instruction": "é", "output": "x"}\n', encoding="latin-1"))
    with pytest.raises(DataFileError, match="no rows"):
        load_file(_write(tmp_path, "e.jsonl", "\n\n"))


needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data folder absent: {SHARED_DATA}")


@needs_shared
def test_real_alpaca_zh_sample_loads():
    path = SHARED_DATA / "alpaca_zh" / "sample.json"
    rows = json.loads(path.read_text(encoding="utf-8"))
    assert len(rows) == 1000
    # Row 285 of the real file has an empty output (nothing to learn): named, not loaded.
    with pytest.raises(DataFileError) as info:
        load_file(path)
    assert info.value.problems == [f'{path}:285: empty "output": nothing to learn from this row']
    result = load_file(path, on_bad_row="skip")
    assert result.total_rows == 1000
    assert result.bad_rows == info.value.problems
    good = [row for i, row in enumerate(rows, start=1) if i != 285]
    assert len(result.examples) == len(good) == 999
    for row, ex in zip(good, result.examples):
        want = f"{row['instruction']}\n{row['input']}" if row["input"].strip() else row["instruction"]
        assert ex.prompt == want and ex.response == row["output"]


@needs_shared
def test_real_gsm8k_loads_with_a_column_mapping():
    path = SHARED_DATA / "gsm8k" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    result = load_file(path, columns={"instruction": "question", "output": "answer"})
    assert len(result.examples) == len(rows) == 1319
    assert [e.prompt for e in result.examples] == [r["question"] for r in rows]
    assert all(e.response.rsplit("#### ", 1)[1].strip() for e in result.examples)


@needs_shared
def test_real_gsm8k_and_math23k_references_are_checked_by_value():
    """Every GSM8K answer's `#### N` and every Math23K `ans` (decimals, fractions,
    mixed numbers, percentages) becomes a value the verifier reads back; alpaca rows
    stay text."""
    from tasktune.eval import matches_value

    gsm = load_file(SHARED_DATA / "gsm8k" / "test.jsonl", columns={"instruction": "question", "output": "answer"})
    for ex in gsm.examples:
        final = ex.response.rsplit("#### ", 1)[1].strip()
        assert ex.answer == final.replace(",", ""), ex.response[-40:]
        assert matches_value(f"so the answer is {final}", ex.answer)
        assert not matches_value(f"#### {int(ex.answer) + 1}", ex.answer)
    path = SHARED_DATA / "math23k" / "trainset.sample.json"
    rows = json.loads(path.read_text(encoding="utf-8"))
    m23 = load_file(path, columns={"instruction": "original_text", "output": "ans"})
    assert all(ex.answer is not None for ex in m23.examples)
    assert all(matches_value(row["ans"], ex.answer) for row, ex in zip(rows, m23.examples))  # the reference reads as itself
    by_ans = {row["ans"]: ex.answer for row, ex in zip(rows, m23.examples)}
    assert by_ans["((31)/(2432))"] == "31/2432" and by_ans["7((1)/(3))"] == "22/3" and by_ans["8.4"] == "8.4"
    assert matches_value("0.4", by_ans["40%"]) and matches_value("7.33", by_ans["7((1)/(3))"])
    alpaca = load_file(SHARED_DATA / "alpaca_zh" / "sample.json", on_bad_row="skip")
    by_value = [ex for ex in alpaca.examples if ex.answer is not None]
    assert 0 < len(by_value) < 30  # the few rows whose whole output is a number ("865", "3.0")
    assert all(float(ex.response) == float(ex.answer) for ex in by_value)  # the rest is free text
