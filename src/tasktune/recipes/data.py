"""`tasktune data check FILE` and `tasktune data preview CONFIG`."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from tasktune.config import RunConfig
from tasktune.constants import IGNORE_INDEX
from tasktune.data import build_datasets
from tasktune.data.files import DataFileError, load_file
from tasktune.encoding import ChatEncoder
from tasktune.model import load_tokenizer, resolve_model

__all__ = ["check_data", "preview_data"]


def check_data(path: str | Path, fmt: str = "auto", columns: dict[str, str] | None = None) -> list[str]:
    """Validate every row of a data file.

    Returns:
        Every problem as ``FILE:ROW: reason``; empty when the file is good (the row
        count is printed).
    """
    try:
        result = load_file(path, columns, on_bad_row="skip", fmt=fmt)  # type: ignore[arg-type]
    except DataFileError as exc:
        return exc.problems
    if not result.bad_rows:
        print(f"{path}: {len(result.examples)} rows, all valid")
    return result.bad_rows


def preview_data(cfg: RunConfig, n: int = 3) -> None:
    """Print ``n`` training examples as the model sees them, supervised span in ⟦ ⟧."""
    source = resolve_model(cfg.model)
    encoder = ChatEncoder(load_tokenizer(source, cfg.trust_remote_code), cfg.encoding.template, cfg.encoding.system_prompt)
    data = build_datasets(cfg.data, cfg.eval.max_examples, cfg.eval.seed, cfg.seed)
    for i, example in enumerate(islice(data.train, n), start=1):
        enc = encoder.encode(example, cfg.encoding.max_length, "truncate")
        size = "dropped" if enc is None else f"{len(enc.input_ids)} tokens, {sum(x != IGNORE_INDEX for x in enc.labels)} supervised"
        print(f"--- example {i} ({size}; ⟦supervised⟧)")
        print(encoder.preview(example, cfg.encoding.max_length))
