"""benchmarks/compare.py: both sides train with the settings it records (compare_sides.py)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def compare():
    """benchmarks/compare_sides.py, imported as compare.py imports it (its folder on the path)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        importlib.import_module("compare")  # the script's own imports hold
        yield importlib.import_module("compare_sides")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_tasktune_side_trains_with_the_recorded_settings(compare):
    from tasktune.config import load_config

    cfg = load_config(compare.CONFIG, compare.OVERRIDES)
    s = compare.SETTINGS
    assert (cfg.adapter.lora.r, cfg.adapter.lora.alpha, cfg.adapter.lora.dropout) == (s["lora_r"], s["lora_alpha"], s["lora_dropout"])
    assert (cfg.train.lr, cfg.train.batch_size) == (s["lr"], s["batch"])


def test_baseline_lora_is_built_from_the_same_config(compare, monkeypatch):
    import peft

    from tasktune.config import load_config

    seen = {}
    monkeypatch.setattr(peft, "get_peft_model", lambda model, config: seen.setdefault("config", config))
    # Values unlike the benchmark's own, so a LoraConfig that ignored the config would show.
    lora = load_config(compare.CONFIG, [*compare.OVERRIDES, "adapter.lora.r=8", "adapter.lora.alpha=4",
                                        "adapter.lora.dropout=0.1"]).adapter.lora
    config = compare.peft_lora(object(), lora)
    assert (config.r, config.lora_alpha, config.lora_dropout) == (lora.r, lora.alpha, lora.dropout)
