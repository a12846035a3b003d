"""`tasktune predict --run DIR --input IN.jsonl --output OUT.jsonl`."""

from __future__ import annotations

import json
from pathlib import Path

from tasktune.data.example import Example
from tasktune.data.files import DataFileError, read_rows, row_to_example
from tasktune.generate import generate_batch
from tasktune.recipes.common import load_run, max_new_tokens_for

__all__ = ["predict", "read_prompts"]


def read_prompts(path: str | Path) -> list[Example]:
    """Rows ``{"prompt": ...}`` or alpaca rows (``output`` optional here).

    Raises:
        DataFileError: every bad row, as ``FILE:ROW: reason``.
    """
    rows, bad = read_rows(path)
    problems = [f"{path}:{n}: {msg}" for n, msg in bad]
    examples: list[Example] = []
    for number, row in rows:
        if isinstance(row, dict) and isinstance(row.get("prompt"), str) and row["prompt"].strip():
            examples.append(Example(prompt=row["prompt"], response=""))
            continue
        if isinstance(row, dict) and "instruction" in row:
            try:
                examples.append(row_to_example({**row, "output": row.get("output") or "-"}))
                continue
            except ValueError as exc:
                problems.append(f"{path}:{number}: {exc}")
                continue
        problems.append(f'{path}:{number}: expected {{"prompt": "..."}} or an alpaca row with "instruction"')
    if problems:
        raise DataFileError(problems)
    if not examples:
        raise DataFileError([f"{path}: no rows"])
    return examples


def predict(run_dir: str | Path, input_path: str | Path, output_path: str | Path) -> int:
    """Answer every prompt of ``input_path`` with the run's model; returns the row count.

    Each output row is the input row plus ``prediction`` and ``input`` (the fully
    rendered model input).
    """
    examples = read_prompts(input_path)
    loaded = load_run(run_dir)
    rows = [r for _, r in read_rows(input_path)[0]]
    prompts = [loaded.encoder.prompt_ids(e) for e in examples]
    budget = max_new_tokens_for(loaded.cfg, loaded.tokenizer, [])
    outputs = generate_batch(
        loaded.model, loaded.tokenizer, prompts, loaded.encoder.stop_id, budget, loaded.cfg.eval.batch_size, "predict"
    )
    out = Path(output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for row, e, text in zip(rows, examples, outputs):
            f.write(json.dumps({**row, "prediction": text, "input": loaded.encoder.render_prompt(e)}, ensure_ascii=False) + "\n")
    return len(examples)
