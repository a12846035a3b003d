"""`tasktune predict --run DIR --input IN.jsonl --output OUT.jsonl`."""

from __future__ import annotations

import json
from pathlib import Path

from tasktune.data.answers import final_answer
from tasktune.data.example import Example
from tasktune.data.files import DataFileError, read_rows, row_to_example
from tasktune.generate import generate_completions
from tasktune.recipes.common import load_run, max_new_tokens_for, presented

__all__ = ["predict", "read_prompts"]


def read_prompts(path: str | Path) -> list[tuple[dict, Example]]:
    """Rows ``{"prompt": ...}`` or alpaca rows (``output`` optional here), each with
    the example it renders to.

    Raises:
        DataFileError: every bad row, as ``FILE:ROW: reason``.
    """
    rows, bad = read_rows(path)
    problems = [f"{path}:{n}: {msg}" for n, msg in bad]
    out: list[tuple[dict, Example]] = []
    for number, row in rows:
        if isinstance(row, dict) and isinstance(row.get("prompt"), str) and row["prompt"].strip():
            out.append((row, Example(prompt=row["prompt"], response="")))
        elif isinstance(row, dict) and "instruction" in row:
            try:
                out.append((row, row_to_example({**row, "output": row.get("output") or "-"})))
            except ValueError as exc:
                problems.append(f"{path}:{number}: {exc}")
        else:
            problems.append(f'{path}:{number}: expected {{"prompt": "..."}} or an alpaca row with "instruction"')
    if problems:
        raise DataFileError(problems)
    if not out:
        raise DataFileError([f"{path}: no rows"])
    return out


def predict(
    run_dir: str | Path, input_path: str | Path, output_path: str | Path, overrides: list[str] | None = None
) -> int:
    """Answer every prompt of ``input_path`` with the run's model; returns the row count.

    Each output row is the input row plus ``prediction`` (as a person should see it,
    e.g. reversed digits put back), ``final_answer`` (the value the reply ends on: after
    ``####`` in a worked answer, else its last number; null when it states none), ``finish_reason`` (``stop``, or ``length`` when the
    ``max_new_tokens`` cap cut the answer off) and ``input`` (the fully rendered model input).
    ``overrides`` change the run's config for this call (e.g. ``quantization=int8``).
    """
    rows = read_prompts(input_path)
    examples = [e for _, e in rows]
    loaded = load_run(run_dir, overrides)
    prompts = [loaded.encoder.prompt_ids(e) for e in examples]
    budget = max_new_tokens_for(loaded.cfg, loaded.tokenizer, [])
    outputs = generate_completions(
        loaded.model, loaded.tokenizer, prompts, loaded.encoder.stop_id, budget, loaded.cfg.eval.batch_size, "predict",
        loaded.cfg.generate,
    )
    out = Path(output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for (row, e), done in zip(rows, outputs):
            shown = presented(loaded.cfg, done.text)
            out_row = {**row, "prediction": shown, "final_answer": final_answer(shown),
                       "finish_reason": done.finish_reason, "input": loaded.encoder.render_prompt(e)}
            f.write(json.dumps(out_row, ensure_ascii=False) + "\n")
    return len(examples)
